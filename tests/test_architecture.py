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


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_direction(package):
    for path in (ROOT / package).rglob("*.py"):
        if path == ROOT / "flexrec_bench" / "cli.py":
            continue  # the CLI may reach every part, lazily: see below
        bad = _imports(path) - ALLOWED[package] - {package}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_cli_imports_other_packages_only_inside_commands():
    tree = ast.parse((ROOT / "flexrec_bench" / "cli.py").read_text())
    for node in tree.body:  # module level only
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = {a.name.split(".")[0] for a in node.names} if isinstance(node, ast.Import) else \
                {(node.module or "").split(".")[0]}
            assert not mods & (PROJECT - {"flexrec_bench"}), ast.dump(node)
            assert not mods & {"torch", "transformers", "trl", "recbole", "verl", "vllm", "peft"}, ast.dump(node)


def test_a_registry_refuses_a_second_registration_unless_replaced():
    from flexrec_bench.errors import FlexRecError
    from flexrec_bench.registry import Registry

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
