"""Every fix the CLI suggests is a command that works.

Two layers: (1) each `flexrec-bench ...` command quoted in a message anywhere in the toolkit's source
names a real command and only options that command has (a static check of every suggestion the
CLI can print, with the f-string holes filled); (2) the suggestions a newcomer meets first are run
as printed, and the command that failed then succeeds."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from flexrec_bench.cli import app

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["flexrec_bench", "training", "baselines", "needs", "leaderboard"]
runner = CliRunner()
QUOTED = re.compile(r"`(flexrec-bench [^`]*)`")


def _suggested(text: str) -> list[str]:
    return QUOTED.findall(text)


def _message(r) -> str:
    return f"{r.output}\n{r.exception or ''}"


def _run(command: str, *extra: str):
    argv = shlex.split(command)
    assert argv[0] == "flexrec-bench", command
    return runner.invoke(app, [*argv[1:], *extra])


def _quoted_commands() -> list[tuple[str, str]]:
    """(where, command) for every backquoted `flexrec-bench ...` in a string of the source, with each
    f-string hole ({...}) filled by a placeholder word."""
    found = []
    for pkg in SOURCES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            text = path.read_text()
            for m in QUOTED.finditer(text):
                cmd = m.group(1)
                if "\n" in cmd or '"' in cmd:  # a quote split over two source strings: join the pieces
                    cmd = re.sub(r'"\s*\n\s*f?"', "", cmd)
                cmd = re.sub(r"\{[^{}]*\}", "X", cmd)
                found.append((f"{path.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}", cmd))
    return found


def _is_group(cmd) -> bool:
    return hasattr(cmd, "commands")  # typer may bring its own click: no isinstance against ours


def _resolve(argv: list[str]):
    cmd = get_command(app)
    while _is_group(cmd) and argv and argv[0] in cmd.commands:
        cmd, argv = cmd.commands[argv[0]], argv[1:]
    return cmd, argv


def test_every_quoted_command_names_a_real_command_and_real_options():
    commands = _quoted_commands()
    assert len(commands) > 25  # the scan finds the suggestions (a broken regex would pass vacuously)
    bad = []
    for where, text in commands:
        argv = [a.strip("[]") for a in shlex.split(text)[1:] if a not in ("...", "…")]
        cmd, rest = _resolve(argv)
        if _is_group(cmd):
            if rest and not rest[0].startswith("-"):
                bad.append(f"{where}: `{text}`: no command {rest[0]!r}")
            continue
        known = {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]}
        for a in rest:
            if a.startswith("--") and a.split("=", 1)[0] not in known:
                bad.append(f"{where}: `{text}`: {cmd.name} has no option {a}")
    assert not bad, "\n".join(bad)


def test_a_missing_build_suggests_the_build_that_makes_the_eval_work(tmp_path):
    data = tmp_path / "mydata"
    eval_args = ["eval", "--model", "popularity", "--data", str(data), "--out", str(tmp_path / "res"), "--bootstrap", "0"]
    r = runner.invoke(app, eval_args)
    assert r.exit_code != 0
    (fix,) = _suggested(_message(r))
    assert fix == f"flexrec-bench build-data --dataset ml-100k --out {data}"
    assert _run(fix, "--quiet").exit_code == 0
    r = runner.invoke(app, eval_args)
    assert r.exit_code == 0, _message(r)


def test_a_need_not_built_suggests_a_rebuild_that_keeps_the_other_needs_and_the_options(tmp_path):
    data = tmp_path / "d"
    made = ["build-data", "--dataset", "ml-100k", "--needs", "interest", "--candidates", "12", "--train-size", "30",
            "--test-size", "40", "--val-size", "20", "--out", str(data), "--quiet"]
    assert runner.invoke(app, made).exit_code == 0
    before = json.loads((data / "ml-100k" / "manifest.json").read_text())["config"]
    eval_args = ["eval", "--model", "popularity", "--need", "niche", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--bootstrap", "0"]
    r = runner.invoke(app, eval_args)
    (fix,) = _suggested(_message(r))
    assert "--needs interest,niche" in fix and "--candidates 12" in fix
    assert _run(fix, "--quiet").exit_code == 0
    after = json.loads((data / "ml-100k" / "manifest.json").read_text())["config"]
    assert {**before, "needs": ["interest", "niche"]} == after  # only the needs changed
    assert runner.invoke(app, eval_args).exit_code == 0
    eval_args[eval_args.index("niche")] = "interest"
    assert runner.invoke(app, eval_args).exit_code == 0  # the need built before is still there


def test_no_critic_suggests_the_training_that_the_next_run_finds(ml100k, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(ml100k, data, symlinks=True)
    dry = ["train", "--model", "m", "--data", str(data), "--dry-run"]
    r = runner.invoke(app, dry)
    assert r.exit_code == 0, _message(r)
    (fix,) = _suggested(json.loads(r.output)["reward_signal"])
    assert fix == f"flexrec-bench train-critic --dataset ml-100k --data {data}"
    assert _run(fix, "--epochs", "1", "--quiet").exit_code == 0  # as printed, one epoch to keep the test short
    assert json.loads(runner.invoke(app, dry).output)["reward_signal"].startswith("reward_signal: critic (auto: found")


def test_an_unregistered_build_suggests_commands_that_run(ml100k, tmp_path):
    """The submit refusal names verify-build on the user's own folder; it runs and says how the build
    differs (exit 1 is its answer "differs", not a failure to run)."""
    from conftest import register_build

    from leaderboard.submit import SubmissionRefused, submit

    mine = tmp_path / "mine"
    assert runner.invoke(app, ["build-data", "--dataset", "ml-100k", "--candidates", "12", "--train-size", "30",
                               "--test-size", "40", "--val-size", "20", "--out", str(mine), "--quiet"]).exit_code == 0
    res = tmp_path / "res"
    assert runner.invoke(app, ["eval", "--model", "popularity", "--data", str(mine), "--out", str(res),
                               "--bootstrap", "200"]).exit_code == 0
    board = register_build(tmp_path / "lb" / "leaderboard.json", ml100k)
    with pytest.raises(SubmissionRefused) as e:
        submit(next(res.rglob("results.json")), board, mine)
    fixes = _suggested(str(e.value))
    assert f"flexrec-bench build-data --dataset ml-100k --embeddings pinned --out {mine}" in fixes
    (verify,) = [f for f in fixes if " verify-build " in f]
    assert verify == f"flexrec-bench verify-build --dataset ml-100k --data {mine}"
    r = _run(verify, "--leaderboard", str(board))
    assert r.exit_code == 1 and "is not the registered one" in r.output, _message(r)
