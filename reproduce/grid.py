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

from pathlib import Path
from typing import Any

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.foundation.io import write_json_atomic, write_text_atomic

from .cells import METRICS, MINIATURE_STEPS, Cell, cells, select_rows, slug
from .config import ReproduceConfig
from .report import compare_with_base, learning_curves, markdown, over_seeds, paper_dataset, paper_numbers, plot

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
            found.append((cell, seed, Path(cfg.out) / "runs" / cfg.dataset / needs_dir / slug(cell.label) / f"seed{seed}"))
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
                row["needs"][need] = over_seeds([r["results"][need] for r in row["runs"]], metrics)
        row["paper"] = paper_numbers(reported or [], cfg, cell.label)
        rows.append(row)
    compare_with_base(rows, cfg)
    table = {"kind": kind, "number": n, "name": cfg.name, "model": cfg.model, "dataset": cfg.dataset,
             "train_need": cfg.train_need, "test_needs": list(cfg.test_needs), "miniature": cfg.miniature,
             "preset": cfg.preset, "steps": cfg.steps, "seeds": cfg.seeds, "metrics": list(metrics), "rows": rows,
             "options": dict(cfg.options), "sets": dict(cfg.sets), "rows_selected": cfg.rows,
             "paper_dataset": paper_dataset(cfg)}
    if kind == "figure" and n in (3, 4):
        table["curves"] = {r["label"]: learning_curves([run["log"] for run in r["runs"] if run["log"]], cfg.test_needs[0])
                           for r in rows if any(run["log"] for run in r["runs"])}
    write_json_atomic(here / f"{cfg.name}.json", table)
    write_text_atomic(here / f"{cfg.name}.md", markdown(table))
    plot(table, here / f"{cfg.name}.png")
    return table
