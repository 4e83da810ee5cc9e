"""Building a dataset from its raw files: splits, kinds of instance, retrieval and embeddings, need labels, the audits, the card and publishing."""
