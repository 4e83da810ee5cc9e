"""The foundation every stage stands on: errors, files and locks, secrets, paths, registries, options, digests, the device, the OpenAI client and the one definition of each metric."""
