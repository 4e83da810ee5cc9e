"""The grids of the paper's tables and figures, run and written in the paper's layout.

A *cell* is a training run (``training/configs/<algo>.yaml`` + the cell's axis values + the user's
``--set``), a baseline to train first (BERT4Rec, TALLRec) or an evaluation-only ranker (STAR, the
base model, GPT-4o). Every cell is scored on the test split by the one evaluator; trained cells run
``--seeds`` times (seeds 0, 1, ...), and the table gives the mean over seeds with a 95% interval
(t over the seeds' means when there are several; the bootstrap over instances for one), the
paper-comparable mean over all instances beside it, and the paper's number. Trained cells are also
compared with the base model (the grid's step-0 policy) on the same instances: a paired Wilcoxon
test on NDCG@5, pooled over seeds by Fisher's method. Figures 3 and 4 add learning curves
(validation NDCG@5 and NDCG@10 against step, mean over seeds with the seeds' range), Figure 2 a bar
chart of one model trained jointly on all needs beside one trained per need.

Training runs live under ``<out>/runs/<dataset>/<training needs>/<row>/seed<k>`` and are shared by
every table and figure that needs the same run (Tables 1, 2 and 6 train the same models on interest
and test them on three needs); a finished run or result is reused, so an interrupted grid resumes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.foundation.io import write_json_atomic, write_text_atomic

from .config import JOINT_NEEDS, ReproduceConfig

_FIVE = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "mrr@5")
METRICS = {("table", 1): (*_FIVE, "precision@5"), ("table", 2): _FIVE, ("table", 6): _FIVE,
           ("table", 3): ("ndcg@5", "ndcg@10", "ndcg@30", "precision@5", "recall@5"),
           ("table", 7): _FIVE, ("table", 8): _FIVE, ("table", 9): _FIVE,
           ("figure", 2): ("ndcg@5", "ndcg@10"), ("figure", 3): ("ndcg@5", "ndcg@10"),
           ("figure", 4): ("ndcg@5", "ndcg@10")}
_HEAD = {"ndcg@5": "N@5", "ndcg@10": "N@10", "ndcg@30": "N@30", "recall@5": "R@5", "precision@5": "P@5",
         "mrr@5": "MRR@5"}
#: the paper's dataset names, for looking its numbers up
PAPER_DATASET = {"kuairec": "KuaiRec", "ml-1m": "MovieLens-1M", "esci": "ESCI"}
PPO_MISSING = "PPO runs on the verl backend only (GPUs; TRL 1.x has no PPO trainer)"
#: --miniature trains each cell with the smoke preset for this many steps (which also caps validation)
MINIATURE_STEPS = 2


@dataclass
class Cell:
    """One row of a table or one line of a figure: how to get a ranker for it."""

    label: str                                  #: the row as the paper prints it
    algo: str | None = None                     #: a training run of this algorithm...
    sets: dict[str, Any] = field(default_factory=dict)
    ranker: str | None = None                   #: ...or an evaluation-only ranker ("star", "hf:<model>", ...)
    baseline: str | None = None                 #: ...or a baseline to train first (bert4rec, tallrec)
    missing: str | None = None                  #: why it cannot run here
    train_needs: tuple[str, ...] | None = None  #: the needs a trained cell learns (default: the grid's)
    base: bool = False                          #: the base model: the step-0 policy trained rows are tested against


def _llm_rows(cfg: ReproduceConfig, base_label: str = "Qwen2.5-3B-Instruct", sft: str = "TALLRec",
              flexrec: bool = True) -> list[Cell]:
    gpt = (Cell("GPT-4o", ranker=f"openai:{cfg.openai_model}") if cfg.openai_model else
           Cell("GPT-4o", missing="needs --openai-model (an OpenAI-compatible endpoint and key)"))
    plus = "Qwen2.5-3B-Instruct + " if base_label == "Qwen2.5-3B-Instruct" else f"{base_label} + "
    rows = [gpt, Cell(base_label, ranker=f"hf:{cfg.model}", base=True), Cell(f"{plus}{sft}", baseline="tallrec")]
    if sft == "SFT":  # Table 9 lists PPO among its post-trained rows
        rows.append(Cell(f"{plus}PPO", "flexrec", {"estimator": "ppo", "item_reward": "sequence"},
                         missing=PPO_MISSING if cfg.backend == "local" else None))
    rows += [Cell(f"{plus}Rec-R1", "rec-r1"), Cell(f"{plus}Rank-GRPO", "rank-grpo")]
    if flexrec:
        rows.append(Cell(f"{plus}FlexRec", "flexrec"))
    return rows


def cells(cfg: ReproduceConfig) -> list[Cell]:
    """The rows of a table or the lines of a figure, as the paper prints them."""
    kind, n = cfg.kind
    if kind == "table" and n in (1, 2, 6):
        return [Cell("BERT4Rec", baseline="bert4rec"), Cell("STAR", ranker="star"), *_llm_rows(cfg)]
    if kind == "table" and n == 3:
        return [Cell("BERT4Rec", missing="the paper's row is empty: BERT4Rec models users' sequences and ESCI has none"),
                Cell("STAR", ranker="star"), *_llm_rows(cfg)]
    if kind == "table" and n == 9:
        return [Cell("BERT4Rec", baseline="bert4rec"), Cell("STAR (retriever)", ranker="star"),
                *_llm_rows(cfg, "Qwen2.5-3B", "SFT", flexrec=False)]
    if kind == "table" and n == 7:
        out = []
        for est in ("GRPO", "PPO"):
            for variant, label in (("independent", "Independent contribution"),
                                   ("noncausal_swap", "Swap-based contribution (non-causal)"),
                                   ("causal_swap", "CausalSwap reward (ours)")):
                missing = PPO_MISSING if est == "PPO" and cfg.backend == "local" else None
                out.append(Cell(f"{est} / {label}", "flexrec", {"item_reward": variant, "estimator": est.lower()},
                                missing=missing))
        return out
    if kind == "table" and n == 8 or kind == "figure" and n == 4:
        no_cf = _no_interactions(cfg)
        rows = [Cell(OBSERVED_ROW, "flexrec", {"reward_signal": "observed", "uncertainty": False}),
                Cell("User-KNN CF", "flexrec", {"reward_signal": "user_knn"}, missing=no_cf),
                Cell("Item-KNN CF", "flexrec", {"reward_signal": "item_knn"}, missing=no_cf),
                Cell("Raw critic", "flexrec", {"reward_signal": "critic", "uncertainty": False}),
                Cell("FlexRec: Uncertainty-aware Critic", "flexrec", {"reward_signal": "critic", "uncertainty": True})]
        return rows + ([Cell("Base model (step 0)", ranker=f"hf:{cfg.model}", base=True)] if kind == "figure" else [])
    if kind == "figure" and n == 3:
        return [Cell("Sequence-level GRPO (Rec-R1)", "rec-r1"),
                Cell("Rank-level (Rank-GRPO)", "rank-grpo"),
                Cell("Independent contribution", "flexrec", {"item_reward": "independent"}),
                Cell("Swap-based (non-causal)", "flexrec", {"item_reward": "noncausal_swap"}),
                Cell("CausalSwap (FlexRec)", "flexrec", {"item_reward": "causal_swap"}),
                Cell("Base model (step 0)", ranker=f"hf:{cfg.model}", base=True)]
    if kind == "figure" and n == 2:
        return [Cell("FlexRec, trained jointly on all needs", "flexrec", train_needs=JOINT_NEEDS),
                *[Cell(f"FlexRec, trained on {need}", "flexrec", train_needs=(need,)) for need in JOINT_NEEDS],
                Cell("Base model (step 0)", ranker=f"hf:{cfg.model}", base=True)]
    raise AssertionError((kind, n))  # pragma: no cover - checked by cfg.kind


#: Table 8's and Figure 4's reference row (ours, not in the paper): no imputation, unobserved pairs count 0
OBSERVED_ROW = "Observed labels only (ours: no imputation)"


def _no_interactions(cfg: ReproduceConfig) -> str | None:
    """Why the KNN rows cannot run on this build (it has no interactions to find neighbours in), or None."""
    import pyarrow.parquet as pq

    path = Path(cfg.data) / cfg.dataset / "interactions.parquet"
    if path.exists() and pq.read_metadata(path).num_rows == 0:
        return f"collaborative filtering needs interactions; {path} has none"
    return None


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def select_rows(grid: list[Cell], spec: str | None) -> list[Cell]:
    """The rows ``--rows`` names, in the grid's order. A name picks the one row whose slug is it or
    holds it as whole words (``rec-r1`` → "Sequence-level GRPO (Rec-R1)", ``causalswap`` → "CausalSwap
    (FlexRec)"); the base model is kept whenever a trained row runs, since trained rows are tested
    against it. A name that picks no row or several is an error that lists the rows."""
    if not spec:
        return grid
    slugs = [_slug(c.label) for c in grid]
    chosen: set[int] = set()
    for name in (n.strip() for n in spec.split(",")):
        key = _slug(name)
        if not key:
            continue
        hits = [i for i, s in enumerate(slugs) if s == key] or \
            [i for i, s in enumerate(slugs) if re.search(rf"(^|-){re.escape(key)}(-|$)", s)]
        if len(hits) != 1:
            import difflib

            words = {"-".join(w[i:j]) for w in (s.split("-") for s in slugs)
                     for i in range(len(w)) for j in range(i + 1, len(w) + 1)}
            near = difflib.get_close_matches(key, sorted(words), n=1, cutoff=0.6) if not hits else []
            what = (f"matches {len(hits)} rows ({', '.join(slugs[i] for i in hits)}); name one" if hits else
                    "matches no row" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise FlexRecError(f"--rows {name!r} {what}. The rows: {', '.join(slugs)}")
        chosen |= set(hits)
    if any(grid[i].algo or grid[i].baseline for i in chosen):
        chosen |= {i for i, c in enumerate(grid) if c.base}
    return [c for i, c in enumerate(grid) if i in chosen]


def _eval_options(cfg: ReproduceConfig, model: str) -> dict[str, str]:
    """--option for the LLM cells (hf:, openai:; the base model, the trained rows, TALLRec); the
    others (STAR, BERT4Rec) take no LLM options. --miniature caps the answer at 16 new tokens."""
    if not model.startswith(("hf:", "openai:")):
        return {}
    return {**({"max_new_tokens": "16"} if cfg.miniature and model.startswith("hf:") else {}), **cfg.options}


def _check_options(cfg: ReproduceConfig, grid: list[Cell]) -> None:
    """-o is checked against every kind of LLM ranker the grid will score, before anything trains."""
    from flexrec_bench.ranking.rankers.base import check_options

    kinds = {"hf" if (c.algo or c.baseline == "tallrec" or c.base) else (c.ranker or "").partition(":")[0]
             for c in grid if c.missing is None}
    for kind in sorted(kinds & {"hf", "openai"}):
        check_options(kind, _eval_options(cfg, f"{kind}:"))


def eval_config(cfg: ReproduceConfig, model: str, need: str, seed: int):
    """How the grid scores a cell's ranker on a need (the run of training seed ``seed``)."""
    from flexrec_bench.scoring.eval_config import EvalConfig

    kind, n = cfg.kind
    return EvalConfig(model=model, dataset=cfg.dataset, need=need, data=cfg.data,
                      out=str(Path(cfg.out) / "results" / f"seed{seed}"), limit=cfg.test_limit,
                      bootstrap=cfg.bootstrap, seed=cfg.seed, metrics=METRICS[(kind, n)],
                      options=_eval_options(cfg, model))


def evaluate_cell(ecfg, progress: bool = True):
    """``run_eval``, or the results file an earlier run wrote with the same configuration on the same
    build, written after the model's files last changed: a resumed or grown grid ranks no cell twice,
    and a retrained cell is scored again. Returns (ResultsFile, path of results.json)."""
    import json
    from dataclasses import asdict

    from flexrec_bench.scoring.evaluator import results_dir, run_eval
    from flexrec_bench.scoring.results import ResultsFile
    from flexrec_bench.foundation.secrets import redact
    from flexrec_bench.building.splits import load_split

    path = results_dir(ecfg) / "results.json"
    if path.exists():
        res = ResultsFile.model_validate_json(path.read_text())
        want = json.loads(json.dumps(redact({**asdict(ecfg), "metrics": list(ecfg.metrics)})))
        kind, colon, where = ecfg.model.partition(":")
        folder = Path(where) if colon and where else None  # hf:<folder>, bert4rec:<run>; star, popularity: none
        newest = max((f.stat().st_mtime for f in folder.iterdir()), default=0.0) if folder and folder.is_dir() else 0.0
        if (res.config == want and path.stat().st_mtime > newest and res.dataset.fingerprint ==
                load_split(ecfg.data, ecfg.dataset, ecfg.need, ecfg.split).head(ecfg.limit).fingerprint):
            return res, path
    res, _, path = run_eval(ecfg, progress=progress)
    return res, path


def _check_build(cfg: ReproduceConfig) -> None:
    from flexrec_bench.building.splits import load_manifest

    m = load_manifest(cfg.data, cfg.dataset)
    if cfg.kind == ("table", 9) and float((m.get("config") or {}).get("observed_fraction", 1.0)) < 1.0:
        raise FlexRecError(f"Table 9 is the dense setting: build {cfg.dataset} with every interaction observed "
                           f"(`flexrec-bench build-data --dataset {cfg.dataset} --observed-fraction 1.0 --out DIR`) "
                           f"and pass --data DIR")
    missing = [n for n in (*cfg.test_needs, cfg.train_need) if n not in m.get("needs", {})]
    if missing:
        raise FlexRecError(f"{cfg.name} needs the need(s) {', '.join(missing)}, which the {cfg.dataset} build in "
                           f"{cfg.data} does not have (built: {', '.join(m.get('needs', {}))})")


def _train_cell(cell: Cell, cfg: ReproduceConfig, run_dir: Path, seed: int, critic: str | None,
                progress: bool) -> Path:
    from training.config import algo_config, layered_config
    from training.local import train_local

    final = run_dir / "final"
    if (final / "config.json").exists() or (final / "adapter_config.json").exists():
        return final  # done in an earlier run (a full model, or a LoRA adapter)
    sets = {**cell.sets, **cfg.sets, "seed": str(seed)}
    if sets.get("reward_signal") == "critic":
        sets["critic"] = critic
    steps = cfg.steps if cfg.steps is not None else (MINIATURE_STEPS if cfg.miniature else None)
    needs = cell.train_needs or (cfg.train_need,)
    overrides = {"model": cfg.model, "dataset": cfg.dataset, "data": cfg.data, "needs": ",".join(needs),
                 "eval_needs": ",".join(dict.fromkeys((*needs, *cfg.test_needs))), "output_dir": str(run_dir),
                 "max_steps": steps}
    preset = cfg.preset or ("smoke" if cfg.miniature else None)
    train_cfg, _ = layered_config(algo_config(cell.algo), preset, overrides,
                                  {k: v for k, v in sets.items() if v is not None})
    return train_local(train_cfg, progress=progress)


def _critic(cfg: ReproduceConfig, out: Path, progress: bool) -> str:
    if cfg.critic:
        return cfg.critic
    from training.critic import CriticConfig, train_critic

    dest = out / "critic" / cfg.dataset
    if not (dest / "critic.pt").exists():
        ccfg = CriticConfig(epochs=1, max_pairs=500, seed=cfg.seed) if cfg.miniature else CriticConfig(seed=cfg.seed)
        train_critic(cfg.data, cfg.dataset, ccfg, dest, progress=progress)
    return str(dest)


def _baseline(name: str, cfg: ReproduceConfig, run_dir: Path, progress: bool) -> str:
    """Train BERT4Rec or TALLRec for a cell (reusing a finished checkpoint); the ranker to evaluate."""
    if name == "bert4rec":
        from baselines.bert4rec.runner import Bert4RecSettings, train_bert4rec

        #: the --miniature BERT4Rec (ours): one small layer, one epoch
        tiny = {"epochs": 1, "n_layers": 1, "hidden_size": 16, "inner_size": 32, "MAX_ITEM_LIST_LENGTH": 10}
        if not (run_dir / "bert4rec.json").exists():
            train_bert4rec(cfg.data, cfg.dataset, run_dir, Bert4RecSettings(overrides=tiny if cfg.miniature else {}))
        return f"bert4rec:{run_dir}"
    from baselines.tallrec import tallrec_settings, train_tallrec

    final = run_dir / "final"
    if not (final / "adapter_config.json").exists() and not (final / "config.json").exists():
        train_tallrec(cfg.model, cfg.data, cfg.dataset, [cfg.train_need], run_dir,
                      tallrec_settings(**({"max_steps": 2} if cfg.miniature else {})),
                      limit=8 if cfg.miniature else None, progress=progress)
    return f"hf:{final}"


def _runs(cfg: ReproduceConfig, grid: list[Cell]) -> list[tuple[Cell, int, Path]]:
    """Every (cell, seed, run folder) the grid runs: a trained cell once per seed, the others once."""
    found = []
    for cell in grid:
        if cell.missing is not None:
            continue
        needs_dir = "+".join(cell.train_needs or (cfg.train_need,))
        for seed in (range(cfg.seed, cfg.seed + cfg.seeds) if cell.algo else [cfg.seed]):
            found.append((cell, seed, Path(cfg.out) / "runs" / cfg.dataset / needs_dir / _slug(cell.label) / f"seed{seed}"))
    return found


def _cell_model(cell: Cell, cfg: ReproduceConfig, run_dir: Path, seed: int, critic: str | None, progress: bool) -> str:
    """The ranker a cell scores: its trained model (trained here, or reused), a baseline's, or a fixed one."""
    if cell.algo:
        return f"hf:{_train_cell(cell, cfg, run_dir, seed, critic, progress)}"
    if cell.baseline:
        return _baseline(cell.baseline, cfg, run_dir, progress)
    return cell.ranker


def _cell_work(cfg: ReproduceConfig, cell: Cell, seed: int, run_dir: Path, critic: str | None) -> None:
    """One cell's run in a worker process: train (or reuse) and score it on every test need; the
    table is assembled afterwards from what this leaves on disk (the reuse rules of a resumed grid)."""
    model = _cell_model(cell, cfg, run_dir, seed, critic, False)
    for need in cfg.test_needs:
        evaluate_cell(eval_config(cfg, model, need, seed), progress=False)


def in_parallel(tasks: list[tuple[Any, tuple]], jobs: int, progress: bool = True) -> list[Any]:
    """Run ``fn(*args)`` for each task in ``jobs`` fresh processes (spawned, so each may hold CUDA;
    ``jobs`` 1: here, one after another); returns the results in order. At the first failure the tasks
    not yet started are cancelled, those running finish (what they write is reused by a rerun), and
    the failure is raised, naming its task."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    if not tasks:
        return []
    if jobs == 1:  # in this process, as before --jobs
        return [fn(*args) for fn, args in tasks]
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *args) for fn, args in tasks]
        bar = tqdm(total=len(futures), desc=f"cells ({jobs} at once)", disable=not progress)
        for f in futures:
            f.add_done_callback(lambda _: bar.update())
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        bar.close()
        for i, f in enumerate(futures):
            if f.done() and f.exception() is not None:
                for g in futures:
                    g.cancel()
                fn, args = tasks[i]
                raise FlexRecError(f"{fn.__name__}{_describe(args)} failed in its worker: {f.exception()}") from f.exception()
        return [f.result() for f in futures]


def _describe(args: tuple) -> str:
    cells = [a.label for a in args if isinstance(a, Cell)]
    seeds = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
    return f" ({', '.join(cells)}{f', seed {seeds[0]}' if cells and seeds else ''})" if cells else ""


def run_grid(cfg: ReproduceConfig, reported: list[dict] | None = None, progress: bool = True) -> dict:
    """Run (or resume) every cell; return and write the table or figure (JSON, markdown, PNG).
    ``reported``: the paper's numbers (leaderboard/paper_results.json's reported_in_paper)."""
    if cfg.backend != "local":
        raise FlexRecError("reproduce runs the local backend; on verl, train each cell with `flexrec-bench train "
                           "--backend verl` and evaluate its exported checkpoint with `flexrec-bench eval`")
    kind, n = cfg.kind
    grid = select_rows(cells(cfg), cfg.rows)
    _check_options(cfg, grid)
    _check_build(cfg)
    out = Path(cfg.out)
    here = out / cfg.name
    here.mkdir(parents=True, exist_ok=True)
    critic = (_critic(cfg, out, progress) if any(c.sets.get("reward_signal") == "critic" for c in grid
                                                   if not c.missing) else None)
    metrics = METRICS[(kind, n)]
    if cfg.jobs > 1:
        in_parallel([(_cell_work, (cfg, cell, seed, run_dir, critic)) for cell, seed, run_dir in _runs(cfg, grid)],
                    cfg.jobs, progress)
    rows = []
    for cell in grid:
        row: dict[str, Any] = {"label": cell.label, "axes": cell.sets, "missing": cell.missing, "base": cell.base,
                               "train_needs": list(cell.train_needs or (cfg.train_need,)) if cell.algo else None,
                               "runs": [], "needs": {}}
        if cell.missing is None:
            for _, seed, run_dir in _runs(cfg, [cell]):
                model = _cell_model(cell, cfg, run_dir, seed, critic, progress)
                run = {"seed": seed, "model": model, "results": {},
                       "log": str(run_dir / "train_log.jsonl") if cell.algo else None}
                for need in cfg.test_needs:
                    res, path = evaluate_cell(eval_config(cfg, model, need, seed), progress)
                    run["results"][need] = {"path": str(path), "instances": res.dataset.instances,
                                            "echo_share": res.parse.echo_share if res.parse else None,
                                            "fingerprint": res.dataset.fingerprint,
                                            "metrics": {m: res.metrics[m].model_dump() for m in metrics},
                                            "metrics_over_all": {m: res.metrics_over_all[m].model_dump() for m in metrics}}
                row["runs"].append(run)
            for need in cfg.test_needs:
                row["needs"][need] = _over_seeds([r["results"][need] for r in row["runs"]], metrics)
        row["paper"] = paper_numbers(reported or [], cfg, cell.label)
        rows.append(row)
    _test_against_base(rows, cfg)
    table = {"kind": kind, "number": n, "name": cfg.name, "model": cfg.model, "dataset": cfg.dataset,
             "train_need": cfg.train_need, "test_needs": list(cfg.test_needs), "miniature": cfg.miniature,
             "preset": cfg.preset, "steps": cfg.steps, "seeds": cfg.seeds, "metrics": list(metrics), "rows": rows,
             "options": dict(cfg.options), "sets": dict(cfg.sets), "rows_selected": cfg.rows,
             "paper_dataset": _paper_dataset(cfg)}
    if kind == "figure" and n in (3, 4):
        table["curves"] = {r["label"]: _curves([run["log"] for run in r["runs"] if run["log"]], cfg.test_needs[0])
                           for r in rows if any(run["log"] for run in r["runs"])}
    write_json_atomic(here / f"{cfg.name}.json", table)
    write_text_atomic(here / f"{cfg.name}.md", markdown(table))
    plot(table, here / f"{cfg.name}.png")
    return table


def t_interval(values: list[float]) -> tuple[float, list[float] | None]:
    """Mean and t 95% interval over seeds' values (None for one value)."""
    from scipy import stats

    mu = sum(values) / len(values)
    if len(values) < 2:
        return mu, None
    sd = math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1))
    h = float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))
    return mu, [mu - h, mu + h]


def _over_seeds(results: list[dict], metrics: tuple[str, ...]) -> dict:
    """Mean over the seeds' runs with a 95% interval: t over the seeds' means (several seeds) or
    the run's own bootstrap interval (one)."""
    out: dict[str, Any] = {"seeds": len(results)}
    for block in ("metrics", "metrics_over_all"):
        agg = {}
        for m in metrics:
            means = [r[block][m]["mean"] for r in results if r[block][m]["mean"] is not None]
            if not means:
                agg[m] = {"mean": None, "ci95": None, "per_seed": []}
                continue
            mu, ci = t_interval(means)
            if ci is None:
                ci = results[0][block][m]["ci95"]
            agg[m] = {"mean": mu, "ci95": ci, "per_seed": means}
        out[block] = agg
    return out


def _test_against_base(rows: list[dict], cfg: ReproduceConfig) -> None:
    """Each trained row against the base model (its step-0 policy), on the same test instances: a
    paired Wilcoxon test per seed on NDCG@5 and @10, pooled over seeds with Fisher's method."""
    from scipy import stats

    from flexrec_bench.scoring.compare import compare_runs

    base = next((r for r in rows if r["base"] and r["runs"]), None)
    if base is None:
        return
    for row in rows:
        if row["base"] or not row["runs"] or row["train_needs"] is None:
            continue
        row["vs_base"] = {}
        for need in cfg.test_needs:
            per_metric: dict[str, dict] = {}
            for run in row["runs"]:
                pair = compare_runs([base["runs"][0]["results"][need]["path"], run["results"][need]["path"]],
                                    cfg.data, ("ndcg@5", "ndcg@10"), "wilcoxon", bootstrap=0)[0]
                for mc in pair.metrics:
                    d = per_metric.setdefault(mc.metric, {"diff": [], "p": []})
                    d["diff"].append(mc.diff)
                    d["p"].append(mc.p)
            for m, d in per_metric.items():
                ps = [p for p in d["p"] if p is not None]
                pooled = float(stats.combine_pvalues([max(p, 1e-300) for p in ps], method="fisher").pvalue) \
                    if len(ps) > 1 else (ps[0] if ps else None)
                diffs = [x for x in d["diff"] if x is not None]  # None: the metric is defined on no shared instance
                d.update(mean_diff=sum(diffs) / len(diffs) if diffs else None, p_fisher=pooled)
            row["vs_base"][need] = per_metric


def _paper_dataset(cfg: ReproduceConfig) -> str | None:
    """The paper's dataset whose numbers sit beside ours: Tables 7 and 8 and the figures name none
    (or none was transcribed); Table 9 is KuaiRec's dense setting; another dataset has no column."""
    kind, n = cfg.kind
    if kind == "figure" or n in (7, 8):
        return ""
    if n == 9:
        return "KuaiRec-dense" if cfg.dataset == "kuairec" else None
    return PAPER_DATASET.get(cfg.dataset)


def paper_numbers(reported: list[dict], cfg: ReproduceConfig, label: str) -> dict[str, float]:
    """The paper's values for a row, from paper_results.json (their one home)."""
    kind, n = cfg.kind
    ds = _paper_dataset(cfg)
    if kind == "figure" or ds is None:
        return {}
    src = f"Pan et al. (FlexRec), Table {n}"
    return {r["metric"]: r["value"] for r in reported
            if r["source"] == src and r["method"] == label and r["dataset"] == ds}


#: the validation measures read from train_log.jsonl: NDCG, the complete answers and the share
#: of answers that repeat the presented order (a model that echoes the prompt ranks nothing)
CURVES = ("ndcg@5", "ndcg@10", "format_ok", "echo")
_CURVE_NAME = {"ndcg@5": "validation N@5", "ndcg@10": "validation N@10", "format_ok": "complete answers (share)",
               "echo": "echo of the presented order (share)"}


def _curves(logs: list[str], need: str) -> dict:
    """Validation NDCG@5/@10, format_ok and the echo share by step from each seed's train_log.jsonl:
    mean and range over seeds (a measure missing from a log is left out)."""
    import json

    per_seed = []
    for log in logs:
        pts: dict[int, dict] = {}
        p = Path(log)
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            r = json.loads(line)
            if r.get("kind") == "eval":
                pts[int(r["step"])] = {m: r.get(f"val/{need}/{m}") for m in CURVES}
        per_seed.append(pts)
    steps = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    out = {"steps": steps}
    for m in CURVES:
        vals = [[s[t][m] for s in per_seed] for t in steps]
        if any(v is None for vs in vals for v in vs):  # logs written before a measure was logged
            continue
        out[m] = {"mean": [sum(v) / len(v) for v in vals], "min": [min(v) for v in vals],
                  "max": [max(v) for v in vals]}
    return out


def _fmt(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    ci = m.get("ci95")
    return f"{m['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m['mean']:.3f}"


def _p(p: float | None) -> str:
    return "" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def row_name(label: str, model: str) -> str:
    """A row as the page shows it: the paper's rows name its model (Qwen2.5-3B-Instruct); run with
    another --model, the row names the model run and keeps the paper's row in brackets (the paper's
    numbers beside it are that row's)."""
    if "Qwen2.5-3B" not in label or "qwen2.5-3b" in model.lower():
        return label
    name = Path(model.partition(":")[2] if model.startswith(("hf:", "openai:")) else model).name or model
    return f"{re.sub(r'Qwen2[.]5-3B(-Instruct)?', name, label)} (paper: {label})"


def markdown(table: dict) -> str:
    """The table in the paper's layout: per row and metric, ours (mean over seeds, 95% CI), the
    paper-comparable mean over all instances, then the paper's value; trained rows also say how
    they differ from the base model."""
    metrics = table["metrics"]
    pd = table["paper_dataset"]
    title = ("Table" if table["kind"] == "table" else "Figure") + f" {table['number']}"
    paper_note = ("the paper's numbers (Tables 7 and 8 name no dataset)" if pd == "" and table["kind"] == "table" else
                  "no paper column (the figure's values are not in the text)" if table["kind"] == "figure" else
                  f"the paper's {pd} numbers" if pd else
                  f"no paper column: the paper reports no {table['dataset']} numbers in {title}")
    lines = [f"# {title} reproduced: {table['dataset']}, trained on {table['train_need']}, tested on "
             f"{', '.join(table['test_needs'])}; base model {table['model']}", "",
             f"Ours: mean [95% CI] over the instances where a metric is defined; with {table['seeds']} seed(s) per "
             f"trained row, the mean over seeds and a t interval over the seeds' means (one seed: the bootstrap "
             f"interval over instances). 'all': over all instances with undefined ones scored 0, the convention the "
             f"paper's tables appear to use (docs/metrics.md); beside them, {paper_note}. 'vs base': the mean "
             f"difference in NDCG@5 from the base model (its step-0 policy) on the same instances, and the paired "
             f"Wilcoxon p-value (Fisher-pooled over seeds). 'echo': the share of LLM rankings that repeat the "
             f"presented order (C1, C2, ...), mean over seeds."
             + (" Miniature run (the CPU smoke preset): the numbers only show that every cell runs."
                if table["miniature"] else "")]
    from flexrec_bench.foundation.secrets import redact

    if table.get("rows_selected"):
        lines += ["", f"Rows run: `--rows {table['rows_selected']}` (the base model runs with any trained row)."]
    for key, flag in (("sets", "--set"), ("options", "-o")):
        if table.get(key):
            lines += ["", f"`{flag}` for every {'trained' if key == 'sets' else 'LLM'} cell: "
                      + ", ".join(f"`{k}={v}`" for k, v in sorted(redact(table[key]).items()))]
    for need in table["test_needs"]:
        lines += ["", f"## test need: {need}", "",
                  "| Row | " + " | ".join(f"{_HEAD[m]} ours | {_HEAD[m]} all | {_HEAD[m]} paper" for m in metrics)
                  + " | vs base (N@5) | echo |", "|---|" + "---|---|---|" * len(metrics) + "---|---|"]
        for row in table["rows"]:
            cells = []
            got = row["needs"].get(need)
            for m in metrics:
                ours = "not run" if row["missing"] else _fmt(got["metrics"][m]) if got else "—"
                over_all = _fmt(got["metrics_over_all"][m]) if got else ""
                paper = row["paper"].get(m) if len(table["test_needs"]) == 1 else None
                cells.append(f"{ours} | {over_all} | {'' if paper is None else f'{paper:.3f}'}")
            vs = (row.get("vs_base") or {}).get(need, {}).get("ndcg@5")
            vs_text = f"{vs['mean_diff']:+.3f} (p {_p(vs['p_fisher'])})" if vs and vs["mean_diff"] is not None else ""
            echoes = [r["results"][need].get("echo_share") for r in row.get("runs", []) if need in r["results"]]
            echoes = [e for e in echoes if e is not None]
            echo = f"{sum(echoes) / len(echoes):.2f}" if echoes else ""
            lines.append(f"| {row_name(row['label'], table['model'])} | " + " | ".join(cells) + f" | {vs_text} | {echo} |")
    missing = [r for r in table["rows"] if r["missing"]]
    if missing:
        lines += ["", "Not run here:"] + [f"- {row_name(r['label'], table['model'])}: {r['missing']}" for r in missing]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    """Tables: grouped bars of our paper-comparable means with 95% whiskers and the paper's values as
    black ticks. Figures 3 and 4: the learning curves (validation NDCG@5 and NDCG@10 by step, the
    band spanning the seeds). Figure 2: bars per need for the joint and the single-need models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.get("curves"):
        shown = [m for m in CURVES if any(m in c for c in table["curves"].values())]
        fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4), squeeze=False)
        for ax, m in zip(axes[0], shown):
            for label, c in table["curves"].items():
                if not c["steps"] or m not in c:
                    continue
                ax.plot(c["steps"], c[m]["mean"], label=label)
                ax.fill_between(c["steps"], c[m]["min"], c[m]["max"], alpha=0.15)
            ax.set_xlabel("step")
            ax.set_ylabel(_CURVE_NAME[m])
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"Figure {table['number']} ({table['dataset']}, {table['seeds']} seed(s); band: range over seeds)")
    else:
        needs = table["test_needs"]
        metric = table["metrics"][0] if table["kind"] == "figure" else None
        rows = table["rows"]
        groups = [(need, m) for need in needs for m in ([metric] if metric else table["metrics"])]
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups)), 4))
        width = 0.8 / max(1, len(rows))
        for j, row in enumerate(rows):
            xs, ys, err = [], [], [[], []]
            for i, (need, m) in enumerate(groups):
                v = ((row["needs"].get(need) or {}).get("metrics_over_all") or {}).get(m) or {}
                if v.get("mean") is None:
                    continue
                ci = v.get("ci95") or (v["mean"], v["mean"])
                xs.append(i + (j - len(rows) / 2 + 0.5) * width)
                ys.append(v["mean"])
                err[0].append(max(0.0, v["mean"] - ci[0]))
                err[1].append(max(0.0, ci[1] - v["mean"]))
            ax.bar(xs, ys, width, yerr=err, capsize=2,
                   label=row_name(row["label"], table["model"]) + (" (not run)" if row["missing"] else ""))
            if len(needs) == 1:
                px = [i + (j - len(rows) / 2 + 0.5) * width for i, (_, m) in enumerate(groups) if m in row["paper"]]
                py = [row["paper"][m] for _, m in groups if m in row["paper"]]
                ax.scatter(px, py, marker="_", s=120, color="black", zorder=3)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{need}\n{_HEAD[m]}" if len(needs) > 1 else _HEAD[m] for need, m in groups], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("over all instances (the paper's convention)")
        ax.set_title(f"{'Table' if table['kind'] == 'table' else 'Figure'} {table['number']}: {table['dataset']}"
                     + (" (miniature)" if table["miniature"] else "") + "; black ticks: the paper")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
