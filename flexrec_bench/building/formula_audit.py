"""The formula audit: how far does a *formula of what a ranker is shown* get on a need's labels?

The leak audit (flexrec_bench.building.leak_audit) asks whether one shipped column, or the presented order,
predicts the labels. A label can also be a formula of several things a ranker reads: the paper's
trend label is 0.5 * minmax(retrieval score) + 0.5 * minmax(recent count), both shown, so ranking
by that formula scores NDCG@10 1.000 while every single column stays below the leak bar. This
audit fits small rankers on the train split, from every per-candidate feature a ranker can read:

- the shipped number columns (``retrieval_scores``) and the numbers the need's prompt shows
  (``recent_count``), raw, min-max scaled within the instance and as within-instance ranks;
- what the prompt's text gives: the candidate's topics against the shown history's (how many, how
  many seen and unseen, the unseen share, untagged), and the item's popularity among training
  interactions (log count, scaled and ranked within the instance);
- products of the similarity with the unseen-topic flag (so a linear model can express a bonus).

A linear model (ridge on standardised features) and a gradient-boosted one (scikit-learn's
HistGradientBoostingRegressor) regress the graded relevance; each is scored by NDCG@10 on the test
split (instances with some gain, as the leak audit scores columns). The better one's NDCG@10 is the
need's **formula ceiling**, reported beside random (exact expectation), popularity, the retrieval
score (STAR's retrieval stage) and the oracle. (The ceiling is the best of every shown-input ranker
tried: the two fitted ones, popularity and each shipped column.) A need whose ceiling reaches ``SOLVABLE`` of the
oracle's is *solvable from what the ranker is shown*: not a leak of order (the build is not
flagged), but a leaderboard on it rewards whoever types the formula.

When a need declares that its label reads only shown inputs (:meth:`Need.label_inputs`), the
audit also evaluates the label rule itself on the shipped inputs and reports the share of instances
it reproduces exactly (``label_formula.match``).

The **need-blind ceiling** (:func:`need_blind_audit`) is the second test a reading must pass: the
NDCG@10 on the same test instances of a ranker that knows exactly what the user likes and ignores
the need line (the order of the interest labels), scored under the need's labels. A reading where it
reaches ``NEED_BLIND`` is flagged ``need-blind``: a need-blind ranker solves it, so the reading
cannot tell a need-aware ranker from one that never reads the need. A reading that measures
need-awareness has a formula ceiling below ``SOLVABLE`` of the oracle *and* a need-blind ceiling
below ``NEED_BLIND``.

Constants marked ours: ``SOLVABLE``, ``NEED_BLIND``, ``FIT_INSTANCES``, the model settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flexrec_bench.building.leak_audit import AUDIT_K, rank_by
from flexrec_bench.building.labeling import LabelContext, Need, minmax
from flexrec_bench.foundation.metrics import expected_random_ndcg, per_instance_scores

SOLVABLE = 0.98              #: share of the oracle's NDCG@10 at which a need is "solvable from what the ranker is shown" (ours)
NEED_BLIND = 0.95            #: need-blind ceiling (NDCG@10) at which "a need-blind ranker solves it" (ours)
REFERENCE_NEED = "interest"  #: the need whose labels the need-blind ranker orders by
FIT_INSTANCES = 2000         #: train instances the rankers are fitted on, a seeded sample (ours: enough for ~30 features)
MATCH_TOLERANCE = 1e-4       #: |formula - stored label| under which an instance counts as reproduced
MODELS = ("linear", "boosted")


@dataclass
class ShownInputs:
    """What a ranker receives about one split, per candidate, plus the labels to audit against."""

    mask: np.ndarray                               #: (n, K) real candidate slots
    relevance: np.ndarray                          #: (n, K) graded labels (0 on padding)
    relevant: np.ndarray                           #: (n, K) the need's relevant set
    columns: dict[str, np.ndarray]                 #: shipped number columns, (n, K) (0 on padding)
    popularity: np.ndarray                         #: (n, K) training interactions of the candidate
    candidate_topics: list[list[frozenset[str]]]   #: per instance, per real slot
    history_topics: list[frozenset[str]]           #: per instance, topics of the shown history

    def __len__(self) -> int:
        return len(self.mask)

    def take(self, rows: np.ndarray) -> ShownInputs:
        return ShownInputs(self.mask[rows], self.relevance[rows], self.relevant[rows],
                           {k: v[rows] for k, v in self.columns.items()}, self.popularity[rows],
                           [self.candidate_topics[i] for i in rows], [self.history_topics[i] for i in rows])


def _padded(lists: Sequence, k: int, dtype=np.float64, fill=0.0) -> np.ndarray:
    out = np.full((len(lists), k), fill, dtype=dtype)
    for i, r in enumerate(lists):
        out[i, : len(r)] = r
    return out


def shown_inputs(rows: Mapping[str, Sequence], shown: Sequence[str], topics: Mapping[str, frozenset[str]],
                 train_count: Mapping[str, int]) -> ShownInputs:
    """A split's shown inputs from its label-table columns (``rows``: column name -> per-instance
    lists, as ``pyarrow.Table.to_pydict`` or a pandas frame gives them), the items' topics and
    training counts by item id, and the names of the columns the need's prompt shows."""
    cands = [list(c) for c in rows["candidates"]]
    k = max((len(c) for c in cands), default=0)
    mask = _padded([[True] * len(c) for c in cands], k, bool, False)
    empty: frozenset[str] = frozenset()
    columns = {"retrieval_scores": _padded(list(rows["retrieval_scores"]), k)}
    for name in shown:
        columns[name] = _padded(list(rows[name]), k)
    return ShownInputs(
        mask=mask, relevance=_padded(list(rows["relevance"]), k), relevant=_padded(list(rows["relevant"]), k, bool, False),
        columns=columns,
        popularity=_padded([[train_count.get(c, 0) for c in row] for row in cands], k),
        candidate_topics=[[topics.get(c, empty) for c in row] for row in cands],
        history_topics=[frozenset().union(*(topics.get(h, empty) for h in hist)) for hist in rows["history"]])


def _within_rank(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each value's rank within its instance, scaled to [0, 1] (ties share the lower rank)."""
    keys = np.where(mask, x, -np.inf)
    order = np.argsort(keys, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(x.shape[1])[None, :].repeat(len(x), 0), axis=1)
    pad = (~mask).sum(1, keepdims=True)
    span = np.maximum(mask.sum(1, keepdims=True) - 1, 1)
    return np.where(mask, (ranks - pad) / span, 0.0)


def features(inp: ShownInputs) -> tuple[np.ndarray, list[str]]:
    """(n, K, F) features of every candidate and their names."""
    n, k = inp.mask.shape
    n_topics = np.zeros((n, k))
    seen = np.zeros((n, k))
    for i, (row, hist) in enumerate(zip(inp.candidate_topics, inp.history_topics)):
        for j, t in enumerate(row):
            n_topics[i, j] = len(t)
            seen[i, j] = len(t & hist)
    unseen = n_topics - seen
    share_unseen = np.divide(unseen, n_topics, out=np.zeros_like(unseen), where=n_topics > 0)
    some_unseen = (unseen > 0).astype(np.float64)
    numeric = {**inp.columns, "log_popularity": np.log1p(inp.popularity)}
    feats: dict[str, np.ndarray] = {}
    for name, x in numeric.items():
        x = np.where(inp.mask, np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        feats[name] = x
        feats[f"{name}:minmax"] = minmax(x, inp.mask)
        feats[f"{name}:rank"] = _within_rank(x, inp.mask)
    sim = feats["retrieval_scores"]
    feats.update({
        "topics": n_topics, "topics_seen": seen, "topics_unseen": unseen, "share_unseen": share_unseen,
        "some_unseen": some_unseen, "none_seen": ((unseen == n_topics) & (n_topics > 0)).astype(np.float64),
        "untagged": (n_topics == 0).astype(np.float64) * inp.mask,
        "history_topics": np.repeat(np.array([len(h) for h in inp.history_topics], np.float64)[:, None], k, 1),
        "retrieval_scores*some_unseen": sim * some_unseen,
        "relu(retrieval_scores)*some_unseen": np.clip(sim, 0.0, None) * some_unseen,
        "retrieval_scores:minmax*some_unseen": feats["retrieval_scores:minmax"] * some_unseen,
    })
    names = list(feats)
    return np.stack([feats[f] for f in names], axis=-1), names


def _ndcg(scores: np.ndarray, inp: ShownInputs, rng: np.random.Generator) -> float:
    return _ndcg_of(scores, inp.mask, inp.relevance, inp.relevant, rng)


def _ndcg_of(scores: np.ndarray, mask: np.ndarray, relevance: np.ndarray, relevant: np.ndarray,
             rng: np.random.Generator) -> float:
    """Mean NDCG@AUDIT_K of ranking by ``scores`` (ties in random order) under the given labels."""
    name = f"ndcg@{AUDIT_K}"
    order = rank_by(scores, mask, rng)
    return float(np.nanmean(per_instance_scores(order, relevance, relevant, (name,))[name]))


def shown_label_context(inp: ShownInputs, signal_kind: str, topic_name: str = "Topics") -> LabelContext:
    """A labelling context built from shown inputs only: the user's later signal is unknown (NaN),
    the similarity is the shipped retrieval score, a window count is the shown ``recent_count``."""
    zeros = np.zeros(inp.mask.shape)
    recent = inp.columns.get("recent_count", zeros)
    return LabelContext(signal_kind=signal_kind, candidates=np.where(inp.mask, 0, -1), mask=inp.mask,
                        known_signal=np.full(inp.mask.shape, np.nan),
                        similarity=np.where(inp.mask, inp.columns["retrieval_scores"], 0.0),
                        candidate_topics=inp.candidate_topics, history_topics=inp.history_topics,
                        query_time=np.zeros(len(inp), np.int64), window_counts=lambda _w: recent,
                        topic_name=topic_name)


def _fit(model: str, x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = (make_pipeline(StandardScaler(), Ridge(alpha=1.0)) if model == "linear" else
           HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False,
                                         random_state=seed))
    return est.fit(x, y)


def formula_audit(train: ShownInputs, test: ShownInputs, need: Need | None = None, signal_kind: str = "rating",
                  topic_name: str = "Topics", seed: int = 0, sample: int = FIT_INSTANCES) -> dict:
    """The formula audit of one need: fit on at most ``sample`` instances of ``train`` (a seeded
    sample, so the cost is bounded on any size of build), score on ``test`` (see the module doc)."""
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValueError(f"the formula audit's sample must be an integer >= 1 (train instances to fit on), got {sample!r}")
    rng = np.random.default_rng([seed, 36])
    out: dict = {"fit_on": "train", "scored_on": "test", "ndcg": f"ndcg@{AUDIT_K}", "solvable_at": SOLVABLE}
    fit_rows = np.flatnonzero(train.mask.any(1))
    if len(fit_rows) > sample:
        fit_rows = np.sort(rng.choice(fit_rows, sample, replace=False))
    informative = np.flatnonzero((test.relevance > 0).any(1))
    out.update(fit_instances=int(len(fit_rows)), instances=int(len(informative)))
    if not len(fit_rows) or not len(informative):
        out.update(formula_ceiling=None, solvable=False, why="no instance with a gain to fit or to score")
        return out
    fit, ev = train.take(fit_rows), test.take(informative)
    x_fit, names = features(fit)
    x_ev, _ = features(ev)
    y = fit.relevance[fit.mask]
    scores = {"random": float(np.nanmean(expected_random_ndcg(ev.relevance, ev.mask.sum(1), AUDIT_K))), "popularity": _ndcg(ev.popularity, ev, rng),
              "retrieval_scores": _ndcg(ev.columns["retrieval_scores"], ev, rng)}
    for name in sorted(set(ev.columns) - {"retrieval_scores"}):
        scores[name] = _ndcg(ev.columns[name], ev, rng)
    for model in MODELS:
        est = _fit(model, x_fit[fit.mask], y, seed)
        pred = np.zeros(ev.mask.shape)
        pred[ev.mask] = est.predict(x_ev[ev.mask])
        scores[model] = _ndcg(pred, ev, rng)
    candidates = [m for m in scores if m != "random"]  # every formula of shown inputs, fitted or single
    scores["oracle"] = _ndcg(ev.relevance, ev, rng)
    best = max(candidates, key=lambda m: scores[m])
    ceiling = scores[best]
    out.update(features=names, scores=scores, formula_ceiling=ceiling, ceiling_model=best,
               share_of_oracle=ceiling / scores["oracle"] if scores["oracle"] > 0 else None)
    out["solvable"] = bool(out["share_of_oracle"] is not None and out["share_of_oracle"] >= SOLVABLE)
    if need is not None:
        out["label_formula"] = label_formula(need, test, signal_kind, topic_name, rng)
    return out


def label_formula(need: Need, inp: ShownInputs, signal_kind: str, topic_name: str,
                  rng: np.random.Generator) -> dict:
    """The need's own label rule evaluated on the shown inputs, when it reads nothing else."""
    res: dict = {"declared": need.describe(), "inputs": list(need.label_inputs()),
                 "evaluated": bool(need.label_inputs())}
    if not res["evaluated"]:
        res["why"] = "the label reads what the user did after the query time, which no ranker is shown"
        return res
    rel = need.label(shown_label_context(inp, signal_kind, topic_name)).relevance
    err = np.where(inp.mask, np.abs(np.asarray(rel, np.float64) - inp.relevance), 0.0).max(1) if len(inp) else np.zeros(0)
    informative = (inp.relevance > 0).any(1)
    res["match"] = float((err <= MATCH_TOLERANCE).mean()) if len(err) else None
    res["max_abs_error"] = float(err.max()) if len(err) else None
    if informative.any():
        sub = inp.take(np.flatnonzero(informative))
        res[f"ndcg@{AUDIT_K}"] = _ndcg(np.asarray(rel, np.float64)[informative], sub, rng)
    return res


def need_blind_audit(interest: np.ndarray, relevance: np.ndarray, relevant: np.ndarray, mask: np.ndarray,
                     seed: int = 0, reference: bool = False) -> dict:
    """One need's need-blind ceiling: NDCG@10 on test of ranking by the ``interest`` labels (the same
    instances, (n, K) in presented order; ties in seeded random order), scored under the need's
    ``relevance``/``relevant``, over the instances with a gain (as the formula audit scores).
    ``reference``: the need is the interest need itself (its ceiling is the oracle; never flagged)."""
    rng = np.random.default_rng([seed, 47])
    rows = np.flatnonzero((np.where(mask, relevance, 0) > 0).any(1))
    if not len(rows):
        return {"need_blind_ceiling": None, "need_blind": False, "need_blind_why": "no test instance with a gain"}
    value = _ndcg_of(np.asarray(interest, np.float64)[rows], mask[rows], relevance[rows], relevant[rows], rng)
    return {"need_blind_ceiling": value, "need_blind": bool(not reference and value >= NEED_BLIND),
            "need_blind_instances": int(len(rows)), **({"need_blind_reference": True} if reference else {})}


def add_need_blind(formula: dict[str, dict], labels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                   seed: int = 0) -> dict[str, dict]:
    """Each need's need-blind ceiling into its formula audit entry, in place. ``labels``: need ->
    (relevance, relevant, mask) of the test split, (n, K), every need on the same instances."""
    ref = labels.get(REFERENCE_NEED)
    for need, entry in formula.items():
        if need not in labels:
            continue
        if ref is None:
            entry.update(need_blind_ceiling=None, need_blind=False,
                         need_blind_why=f"the build has no {REFERENCE_NEED} need to rank by")
            continue
        rel, relevant, mask = labels[need]
        if rel.shape != ref[0].shape:
            entry.update(need_blind_ceiling=None, need_blind=False,
                         need_blind_why=f"its test instances are not the {REFERENCE_NEED} need's")
            continue
        entry.update(need_blind_audit(ref[0], rel, relevant, mask, seed, reference=need == REFERENCE_NEED))
    return formula


def solvable_line(formula: Mapping[str, dict]) -> str:
    """One line of every need's formula ceiling and need-blind ceiling (the build's and the audit's
    summary)."""
    parts = []
    for need, f in formula.items():
        c = f.get("formula_ceiling")
        blind = f.get("need_blind_ceiling")
        tail = ("" if blind is None or f.get("need_blind_reference") else f", need-blind {blind:.3f}"
                + (": a need-blind ranker solves it" if f.get("need_blind") else ""))
        if c is None:
            parts.append(f"{need} -{tail}")
            continue
        parts.append(f"{need} {c:.3f} ({f['share_of_oracle']:.2f} of the oracle"
                     + (", solvable from what the ranker is shown" if f["solvable"] else "") + f"{tail})")
    return "; ".join(parts)
