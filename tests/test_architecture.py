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
            "'verl', 'vllm', 'peft', 'baselines', 'leaderboard'} or m in {'training.local', 'training.trl_trainer', 'training.monitor', 'training.env', "
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


# --- the core by stage (issue 48) -------------------------------------------------------------------

#: the core's stages, lowest first: a stage imports only the stages below it; the CLI sits on top
STAGES = ("foundation", "datasets", "building", "ranking", "scoring", "cli")
#: modules allowed loose at the top of flexrec_bench/ (the public facade: evaluate, load_split)
MAX_LOOSE = 12
MAX_LINES = 450
#: everything the project imports from itself: the packages and the scripts beside them
SOURCES = (*ALLOWED, "benchmarks", "scripts", "tests")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Every project module -> the project modules it imports, at any depth (inside functions too);
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    files = {_module(p): p for top in SOURCES for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module or ""
                for a in node.names:
                    out.add(known(f"{base}.{a.name}") if f"{base}.{a.name}" in files else known(base))
        graph[mod] = {m for m in out if m and m != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _stage(mod: str) -> int | None:
    parts = mod.split(".")
    if parts[0] != "flexrec_bench":
        return None
    return len(STAGES) if len(parts) == 1 else STAGES.index(parts[1]) if parts[1] in STAGES else -1


def test_the_core_is_cut_by_stage_and_each_stage_says_what_it_holds():
    core = ROOT / "flexrec_bench"
    loose = sorted(p.stem for p in core.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE, loose
    packages = sorted(p.name for p in core.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(STAGES), packages
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((core / stage / "__init__.py").read_text()))
        assert doc and len(doc.strip().splitlines()) == 1, f"flexrec_bench/{stage}/__init__.py: one-line docstring"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a core module from a stage above its importer's (or from a loose module)."""
    bad = []
    for mod, deps in graph.items():
        s = _stage(mod)
        if s is None:
            continue
        if s < 0:
            bad.append(f"{mod}: a loose module of flexrec_bench/ belongs to a stage")
            continue
        bad += [f"{mod} ({STAGES[s] if s < len(STAGES) else 'flexrec_bench'}) imports {d}" for d in deps
                if (_stage(d) or 0) > s]
    return bad


def test_a_stage_imports_only_the_stages_below_it():
    graph = _graph()
    assert not _upward(graph), "\n".join(_upward(graph))
    # the check can fail: the foundation reaching up into scoring is caught
    assert _upward({**graph, "flexrec_bench.foundation.errors": {"flexrec_bench.scoring.evaluator"}})


def test_no_import_circle_anywhere_in_the_project():
    graph = _graph()
    assert "flexrec_bench.building.build" in graph and "flexrec_bench.foundation.errors" in graph["flexrec_bench.building.build"]
    assert not _cycles(graph), _cycles(graph)
    # the check can fail: a planted circle is found
    assert _cycles({**graph, "flexrec_bench.foundation.errors": {"flexrec_bench.building.build"}})


def test_no_source_file_is_over_450_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for top in SOURCES for p in (ROOT / top).rglob("*.py")
            if ".venv" not in p.parts and (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, long
