"""``flexrec_bench.evaluate``: the public entry point of the one evaluator, and ``run_eval``, the
job behind ``flexrec-bench eval``."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flexrec_bench.building.splits import DatasetSplit, load_split
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.foundation.io import sha256_file, write_json_atomic, write_parquet_atomic
from flexrec_bench.foundation.publish import locked, new_tmp_dir, publish, recover
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.foundation.metrics import DEFAULT_METRICS, per_instance_scores
from flexrec_bench.scoring.summary import Report, summarize
from flexrec_bench.ranking.permutations import RankResult, check_permutations


def order_from_item_ids(rankings: dict[str, list[str]], split: DatasetSplit, where: str = "rankings") -> np.ndarray:
    """Candidate-position orders from {instance_id: ranked item ids}; every instance must be present
    and every list must be a permutation of that instance's candidates."""
    n, k = split.mask.shape
    order = np.full((n, k), -1, np.int64)
    for i, (iid, cands) in enumerate(zip(split.instance_ids, split.frame["candidates"])):
        if iid not in rankings:
            raise FlexRecError(f"{where}: instance {iid!r} is missing")
        pos = {c: j for j, c in enumerate(cands)}
        ranked = list(rankings[iid])
        if len(ranked) != len(cands) or set(ranked) != set(pos):
            raise FlexRecError(f"{where}: instance {iid!r} is not a permutation of its {len(cands)} candidates")
        order[i, : len(ranked)] = [pos[c] for c in ranked]
    extra = set(rankings) - set(split.instance_ids)
    if extra:
        raise FlexRecError(f"{where}: {len(extra)} unknown instance id(s), e.g. {sorted(extra)[0]!r}")
    return order


def evaluate(rankings, split: DatasetSplit, metrics: tuple[str, ...] = DEFAULT_METRICS, bootstrap: int = 1000,
             seed: int = 0, beyond: bool = False) -> Report:
    """Score ``rankings`` on ``split``. ``rankings``: a :class:`RankResult`, an (n, K) array of
    candidate positions (best first, -1 padding), or {instance_id: [item ids, best first]}.
    ``beyond`` adds the beyond-accuracy metrics (coverage, novelty, diversity, Gini, need shares)."""
    if isinstance(rankings, RankResult):
        order = rankings.order
    elif isinstance(rankings, dict):
        order = order_from_item_ids(rankings, split)
    else:
        order = np.asarray(rankings)
    check_permutations(order, split.mask)
    per = per_instance_scores(order, split.relevance, split.relevant, tuple(metrics))
    report = summarize(per, split.relevant, bootstrap, seed, relevance=split.relevance)
    if beyond:
        from flexrec_bench.scoring.beyond import beyond_accuracy

        b = beyond_accuracy(order, split)
        report.beyond, report.beyond_per_instance = b.values, b.per_instance
    return report


def rankings_table(split: DatasetSplit, result: RankResult) -> pa.Table:
    cands = split.frame["candidates"]
    ranked = [[cands.iloc[i][j] for j in row if j >= 0] for i, row in enumerate(result.order)]
    cols = {"instance_id": pa.array(split.instance_ids, pa.string()), "ranked": pa.array(ranked, pa.list_(pa.string()))}
    if result.outputs is not None:
        from flexrec_bench.ranking.parsing import reasoning_text

        cols["output"] = pa.array(result.outputs, pa.string())
        cols["reasoning"] = pa.array([reasoning_text(o or "") for o in result.outputs], pa.string())
    return pa.table(cols)


def read_rankings(path: Path) -> dict[str, list[str]]:
    t = pq.read_table(path, columns=["instance_id", "ranked"]).to_pydict()
    return dict(zip(t["instance_id"], t["ranked"]))


def model_slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model.replace(":", "__")).strip("_") or "model"


def _refuse_other_build(existing: Path, fingerprint: str) -> None:
    """A results folder holds one build's result: a rerun on the same build replaces it, a run on
    another build is refused (before ranking) instead of silently overwriting it."""
    import json as _json

    if not existing.exists():
        return
    try:
        old = _json.loads(existing.read_text())["dataset"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # unreadable: publish replaces it as a whole
    if old != fingerprint:
        raise FlexRecError(f"{existing} holds a result scored on build {old}; this build is {fingerprint}: pass another "
                           f"--out (or remove that folder) so neither overwrites the other")


def results_dir(cfg: EvalConfig) -> Path:
    """``<out>/<model>/<dataset>/<need>/<split>/``: results.json and rankings.parquet, published together."""
    slug = model_slug(cfg.model) + (f"@{cfg.variant}" if cfg.variant else "")
    return Path(cfg.out) / slug / cfg.dataset / cfg.need / cfg.split


def run_eval(cfg: EvalConfig, progress: bool = True, ranker=None):
    """Rank, score and write results.json + rankings.parquet; returns (ResultsFile, Report, path)."""
    from flexrec_bench.ranking.rankers import make_ranker
    from flexrec_bench.scoring.results import BootstrapInfo, DatasetInfo, ModelInfo, RankingsInfo, ResultsFile, provenance

    t0 = time.perf_counter()
    cfg.validate()
    split = load_split(cfg.data, cfg.dataset, cfg.need, cfg.split).head(cfg.limit)
    if len(split) == 0:
        raise FlexRecError(f"{cfg.dataset}/{cfg.need}/{cfg.split} has no instances")
    if ranker is None:
        from flexrec_bench.ranking.rankers import RANKERS

        opts = dict(cfg.options)
        if RANKERS.get(cfg.model.partition(":")[0]).shows_progress:
            opts.setdefault("progress", progress)
        ranker = make_ranker(cfg.model, seed=cfg.seed, **opts)
    out_dir = results_dir(cfg)
    _refuse_other_build(out_dir / "results.json", split.fingerprint)
    partial = out_dir.parent / f".{out_dir.name}.partial.jsonl"
    if hasattr(ranker, "resume_path"):  # an LLM ranker keeps finished batches beside the results: a killed run resumes
        ranker.resume_path = partial
    result = ranker.rank(split)
    bias = None
    if cfg.shuffles:
        from flexrec_bench.scoring.position_bias import probe

        if hasattr(ranker, "resume_path"):  # the side file holds the build order's outputs: shuffles rank anew
            ranker.resume_path = None
        bias = probe(ranker, split, result.order, cfg.shuffles, cfg.seed, progress)
    report = evaluate(result, split, cfg.metrics, cfg.bootstrap, cfg.seed, beyond=True)
    table = rankings_table(split, result)
    # results.json and rankings.parquet appear together or not at all (publish.py)
    with locked(out_dir, what="results"):
        recover(out_dir)
        tmp = new_tmp_dir(out_dir)
        try:
            write_parquet_atomic(tmp / "rankings.parquet", table)
            res = ResultsFile(
                model=ModelInfo(**ranker.info(), variant=cfg.variant, display_name=cfg.name,
                                reads=ranker.inputs_read(split)),
                dataset=DatasetInfo(name=cfg.dataset, fingerprint=split.fingerprint, split=cfg.split, need=cfg.need,
                                    instances=len(split)),
                metrics=report.metrics,
                metrics_over_all=report.metrics_over_all,
                n_no_relevant=report.n_no_relevant,
                n_no_gain=report.n_no_gain,
                beyond=report.beyond,
                bootstrap=BootstrapInfo(samples=cfg.bootstrap, seed=cfg.seed),
                parse=result.parse,
                position_bias=bias,
                usage=result.usage,
                rankings=RankingsInfo(file="rankings.parquet", sha256=sha256_file(tmp / "rankings.parquet")),
                config={**asdict(cfg), "metrics": list(cfg.metrics)},
                provenance=provenance(time.perf_counter() - t0),
            )
            write_json_atomic(tmp / "results.json", res.model_dump(mode="json"))
            publish(tmp, out_dir)
            partial.unlink(missing_ok=True)  # the published results are whole: the side file has served
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return res, report, out_dir / "results.json"
