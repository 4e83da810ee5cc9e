from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.building.splits import load_split
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import evaluate, read_rankings, run_eval
from flexrec_bench.scoring.results import ResultsFile

runner = CliRunner()


def _run(*args):
    return subprocess.run([sys.executable, "-c", "from flexrec_bench.cli import main; main()", *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("model", ["random", "popularity", "oracle", "star"])
def test_reference_rankers_write_valid_results(ml100k, tmp_path, model):
    res, report, path = run_eval(EvalConfig(model=model, data=str(ml100k), out=str(tmp_path), need="interest",
                                            bootstrap=200), progress=False)
    data = json.loads(path.read_text())
    ResultsFile.model_validate(data)
    assert data["dataset"]["fingerprint"] == json.loads((ml100k / "ml-100k" / "manifest.json").read_text())["fingerprint"]
    assert path == tmp_path / model / "ml-100k" / "interest" / "test" / "results.json"
    # the rankings file re-scores to the same numbers
    split = load_split(ml100k, "ml-100k", "interest")
    again = evaluate(read_rankings(path.parent / "rankings.parquet"), split, bootstrap=200)
    for name, m in report.metrics.items():
        assert again.metrics[name].mean == pytest.approx(m.mean)
    lo, hi = data["metrics"]["ndcg@10"]["ci95"]
    assert lo <= data["metrics"]["ndcg@10"]["mean"] <= hi


def test_ranker_ordering_is_sane(ml100k, tmp_path):
    means = {}
    for model in ("random", "star", "oracle"):
        _, rep, _ = run_eval(EvalConfig(model=model, data=str(ml100k), out=str(tmp_path), bootstrap=0), progress=False)
        means[model] = rep.metrics["ndcg@10"].mean
    assert means["random"] < means["star"] < means["oracle"]


def test_cli_eval_prints_table(ml100k, tmp_path):
    r = runner.invoke(app, ["eval", "--model", "star", "--data", str(ml100k), "--out", str(tmp_path), "--need", "trend",
                            "--limit", "50", "--quiet", "--metrics", "ndcg@5,mrr@3"])
    assert r.exit_code == 0, r.output
    assert "ndcg@5" in r.output and "mrr@3" in r.output and "(50 instances" in r.output


def test_cli_errors_are_one_line_with_hints(ml100k, tmp_path):
    r = _run("eval", "--model", "popularty", "--data", str(ml100k))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: unknown model 'popularty'; known: ") and "did you mean 'popularity'" in r.stderr
    r = _run("eval", "--model", "star", "--dataset", "ml-1m", "--data", str(tmp_path))
    assert r.returncode == 2 and "run `flexrec-bench build-data --dataset ml-1m" in r.stderr
    r = _run("eval", "--model", "star", "--need", "intrest", "--data", str(ml100k))
    assert r.returncode == 2 and "did you mean 'interest'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_ls_lists_registries():
    r = runner.invoke(app, ["ls"])
    assert r.exit_code == 0
    for name in ("ml-100k", "kuairec", "esci", "interest", "niche", "trend", "search", "star", "hf", "openai"):
        assert name in r.output


def test_results_file_rejects_non_finite(ml100k, tmp_path):
    _, _, path = run_eval(EvalConfig(model="random", data=str(ml100k), out=str(tmp_path), bootstrap=0), progress=False)
    data = json.loads(path.read_text())
    data["metrics"]["ndcg@5"]["mean"] = float("nan")
    with pytest.raises(ValueError):
        ResultsFile.model_validate(data)


def test_star_does_not_import_heavy_packages(ml100k, tmp_path):
    code = ("import sys; from flexrec_bench.cli import main; sys.argv=['x','eval','--model','star','--data',%r,"
            "'--out',%r,'--quiet','--limit','5']\ntry: main()\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('transformers','trl','recbole','verl','vllm','peft','sentence_transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy)") % (str(ml100k), str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_val_split_results_go_to_their_own_folder(ml100k, tmp_path):
    _, _, path = run_eval(EvalConfig(model="random", data=str(ml100k), out=str(tmp_path), split="val", bootstrap=0),
                          progress=False)
    assert path == tmp_path / "random" / "ml-100k" / "interest" / "val" / "results.json"
    assert json.loads(path.read_text())["dataset"]["split"] == "val"


def test_a_need_missing_from_a_build_suggests_a_command_that_works(ml100k, tmp_path):
    """The CLI's suggestion for a need the build lacks is a command that works; for a need that can
    never label the dataset it suggests no build at all."""
    import shlex

    from flexrec_bench.building.build import build
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.foundation.errors import MissingDataError
    from flexrec_bench.building.splits import load_split

    build(BuildConfig(out=str(tmp_path), needs=("interest",), train_size=50, test_size=20, val_size=20), progress=False)
    with pytest.raises(MissingDataError) as exc:
        load_split(tmp_path, "ml-100k", "niche")
    cmd = str(exc.value).split("`")[1]
    assert cmd.startswith("flexrec-bench build-data")
    r = CliRunner().invoke(app, [*shlex.split(cmd)[1:], "--train-size", "50", "--test-size", "20", "--val-size", "20",
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    assert len(load_split(tmp_path, "ml-100k", "niche")) == 20
    with pytest.raises(MissingDataError, match=r"need 'search' cannot label ml-100k \(rating signal\); ml-100k's needs") as e:
        load_split(tmp_path, "ml-100k", "search")
    assert "build-data" not in str(e.value)
