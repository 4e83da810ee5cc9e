"""Imports flow one way: the core imports none of needs/, baselines/, training/, leaderboard/;
needs/ imports only the core; leaderboard/ imports only the core; reproduce/ (orchestration) sits on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "flexrec_bench": set(),
    "needs": {"flexrec_bench"},
    "baselines": {"flexrec_bench", "needs", "training"},
    "training": {"flexrec_bench", "needs"},
    "leaderboard": {"flexrec_bench"},
    # orchestration on top of the layers it orchestrates
    "reproduce": {"flexrec_bench", "needs", "training", "baselines", "leaderboard"},
}
PROJECT = set(ALLOWED)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & PROJECT


#: the composition root: the one place outside training/baselines/leaderboard/reproduce that reaches them
CLI = ROOT / "flexrec_bench" / "cli"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_direction(package):
    for path in (ROOT / package).rglob("*.py"):
        allowed = PROJECT if CLI in path.parents else ALLOWED[package]  # the CLI package, and nothing else
        bad = _imports(path) - allowed - {package}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_cli_imports_other_packages_only_inside_commands():
    """At module level the CLI reaches into the layers above the core only for their config modules
    (``training.config``, ``reproduce.config``: dataclasses the options are derived from); trainers,
    baselines and the board are imported inside the commands that run them."""
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    top = name.split(".")[0]
                    if top in PROJECT - {"flexrec_bench"}:
                        assert name == f"{top}.config", (path.name, name)
                    assert top not in {"torch", "transformers", "trl", "recbole", "verl", "vllm", "peft"}, (path.name, name)


def test_importing_the_cli_loads_no_trainer_and_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys\nimport flexrec_bench.cli\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'trl', 'recbole', "
            "'verl', 'vllm', 'peft', 'baselines', 'leaderboard'} or m in {'training.local', 'training.env', "
            "'training.critic'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_source_checkout_lists_the_needs_without_installing(tmp_path):
    """`python -m flexrec_bench.cli ls` from the repository, with no installed distribution of the
    project (no entry points): the needs and rankers shipped here are still found."""
    import os
    import subprocess
    import sys

    code = ("import sys, importlib.metadata as md\n"
            "md.entry_points = lambda **k: []  # no installed entry points\n"
            "sys.argv = ['flexrec-bench', 'ls']\n"
            "from flexrec_bench.cli import main\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    for name in ("interest", "niche", "trend", "search", "bert4rec"):
        assert name in r.stdout
    r = subprocess.run([sys.executable, "-m", "flexrec_bench.cli", "ls"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "niche" in r.stdout


def test_a_registry_refuses_a_second_registration_unless_replaced():
    from flexrec_bench.foundation.errors import FlexRecError
    from flexrec_bench.foundation.registry import Registry

    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(FlexRecError, match="thing 'a' is already registered .*replace=True"):
        reg.register("a", 2)
    with pytest.raises(FlexRecError, match="already registered"):
        reg.register("a", lazy="os:sep")
    reg.register("a", 3, replace=True)
    assert reg.get("a") == 3
    reg.register("b", lazy="os:sep")
    with pytest.raises(FlexRecError, match="'b' is already registered \\(os:sep\\)"):
        reg.register("b")(4)
