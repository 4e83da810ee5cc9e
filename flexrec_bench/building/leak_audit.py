"""The leak audit: does the order in which candidates are *presented* tell a ranker anything about
their labels?

A benchmark instance shows its candidates in some order. If that order correlates with the labels
(the retrieval order does: niche and trend labels are built from the same similarity that orders a
STAR list, and an injected positive always landed last), a ranker can score well by reading the
positions, not the user. For each need and split the audit reports

- where the best candidate (highest graded relevance, ties broken at random) sits among the
  presented positions, with a chi-square test against the uniform distribution that a label-free
  order gives (each instance contributes 1/K_i to each of its K_i positions; adjacent positions are
  pooled until every expected count is at least 5);
- NDCG@10 of ranking by presented order, and by its reverse, beside the exact expectation of a
  uniformly random ranking (E[NDCG@k] = mean(rel) * sum_{r<=k} 1/log2(r+1) / IDCG@k per instance).

- NDCG@10 of ranking by each per-candidate column a ranker receives beside the texts
  (``retrieval_scores``, and the columns a need's prompt shows, e.g. trend's ``recent_count``), in
  whichever direction scores higher: a column that alone reaches ``COLUMN_SOLVES`` of the oracle's
  NDCG@10 makes the need a lookup, not a ranking task (on the earlier niche labels ranking by
  ``retrieval_scores`` scored 0.999).

A split is flagged when the chi-square p-value is below ``P_THRESHOLD``, when either order's
NDCG@10 is more than ``NDCG_MARGIN`` from random *and* the gap is beyond ``Z_THRESHOLD`` standard
errors (so that a few hundred instances of noise do not flag a tiny build), or when a column
solves the need. Instances whose labels are all 0 carry no information and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flexrec_bench.foundation.metrics import expected_random_ndcg, per_instance_scores

P_THRESHOLD = 1e-4       #: chi-square p-value below which position predicts the best candidate
NDCG_MARGIN = 0.03       #: largest |NDCG@10(order) - NDCG@10(random)| tolerated
Z_THRESHOLD = 4.0        #: ... when the gap is also this many standard errors from 0
MIN_EXPECTED = 5.0       #: pool adjacent positions until each expected count reaches this
AUDIT_K = 10             #: the NDCG cut the audit reports
COLUMN_SOLVES = 0.98     #: share of the oracle's NDCG@10 at which one shipped column "solves" a need (ours)
RULE = (f"flagged when the best candidate's presented position departs from uniform (chi-square p < {P_THRESHOLD:g}), "
        f"when ranking by presented order or its reverse moves NDCG@{AUDIT_K} more than {NDCG_MARGIN} from random "
        f"(and by more than {Z_THRESHOLD:g} standard errors), or when ranking by one per-candidate column a ranker "
        f"receives reaches {COLUMN_SOLVES:g} of the oracle's NDCG@{AUDIT_K}")


@dataclass
class SplitAudit:
    """The audit of one (need, split)."""

    instances: int                       #: instances in the split
    informative: int                     #: instances with at least one label > 0 (the ones tested)
    best_position_counts: list[int]      #: how often the best candidate sits at each presented position
    chi2: float | None                   #: chi-square statistic against uniform (None: too few instances to test)
    dof: int                             #: degrees of freedom after pooling
    p_value: float                       #: 1.0 when untestable
    ndcg_presented: float | None         #: NDCG@10 of ranking in presented order
    ndcg_reversed: float | None          #: NDCG@10 of ranking in reverse presented order
    ndcg_random: float | None            #: exact expected NDCG@10 of a uniformly random ranking
    #: NDCG@10 of ranking by each per-candidate column (the better direction), over the tested instances
    ndcg_by_column: dict[str, float] = field(default_factory=dict)
    leak: bool = False
    reasons: list[str] = field(default_factory=list)


def _pooled(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent cells until every expected count is at least MIN_EXPECTED."""
    obs, exp = [], []
    o_acc = e_acc = 0.0
    for o, e in zip(observed, expected):
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= MIN_EXPECTED:
            obs.append(o_acc)
            exp.append(e_acc)
            o_acc = e_acc = 0.0
    if e_acc > 0:
        if exp:
            obs[-1] += o_acc
            exp[-1] += e_acc
        else:
            obs.append(o_acc)
            exp.append(e_acc)
    return np.array(obs), np.array(exp)


def rank_by(values: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Candidate positions by descending ``values`` (ties in random order), -1 on padding."""
    keys = np.where(mask, values, -np.inf)
    order = np.lexsort((rng.random(keys.shape), -keys), axis=1)
    return np.where(np.take_along_axis(mask, order, 1), order, -1)


def audit_arrays(relevance: np.ndarray, mask: np.ndarray, seed: int = 0,
                 columns: dict[str, np.ndarray] | None = None) -> SplitAudit:
    """Audit one split given its graded labels in presented order, (n, K) with ``mask`` marking real
    slots (padding, if any, after the real ones), and the per-candidate ``columns`` a ranker
    receives ((n, K) numbers aligned with the labels)."""
    from scipy.special import chdtrc  # chi-square survival function (scipy.stats takes seconds to import)

    relevance = np.where(mask, np.asarray(relevance, np.float64), 0.0)
    n, k = relevance.shape
    nvalid = mask.sum(1)
    info = (relevance > 0).any(1)
    rng = np.random.default_rng([seed, 31])
    counts = np.zeros(k, np.int64)
    expected = np.zeros(k)
    if info.any():
        rel, nv = relevance[info], nvalid[info]
        top = rel.max(1, keepdims=True)
        keys = np.where(rel == top, rng.random(rel.shape), -1.0)  # random tie-break among the best
        np.add.at(counts, keys.argmax(1), 1)
        slots = np.arange(k)[None, :] < nv[:, None]
        expected = (slots / nv[:, None]).sum(0)
    obs_p, exp_p = _pooled(counts.astype(np.float64), expected)
    if len(exp_p) >= 2:
        stat = float(((obs_p - exp_p) ** 2 / exp_p).sum())
        dof = len(exp_p) - 1
        p = float(chdtrc(dof, stat))
    else:
        stat, dof, p = None, 0, 1.0
    res = SplitAudit(instances=int(n), informative=int(info.sum()), best_position_counts=counts.tolist(),
                     chi2=stat, dof=dof, p_value=p, ndcg_presented=None, ndcg_reversed=None, ndcg_random=None)
    if not info.any():
        return res
    rel, nv = relevance[info], nvalid[info]
    ar = np.arange(k)[None, :]
    presented = np.where(ar < nv[:, None], ar, -1)
    reverse = np.where(ar < nv[:, None], nv[:, None] - 1 - ar, -1)
    name = f"ndcg@{AUDIT_K}"
    s_pres = per_instance_scores(presented, rel, rel > 0, (name,))[name]
    s_rev = per_instance_scores(reverse, rel, rel > 0, (name,))[name]
    s_rand = expected_random_ndcg(rel, nv, AUDIT_K)
    res.ndcg_presented, res.ndcg_reversed, res.ndcg_random = (float(s_pres.mean()), float(s_rev.mean()),
                                                              float(s_rand.mean()))
    if p < P_THRESHOLD:
        res.reasons.append(f"best candidate's position is not uniform (chi-square {stat:.1f}, dof {dof}, p {p:.2g})")
    for label, s in (("presented order", s_pres), ("reverse presented order", s_rev)):
        d = s - s_rand
        gap = float(d.mean())
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
        if abs(gap) > NDCG_MARGIN and abs(gap) > Z_THRESHOLD * se:
            res.reasons.append(f"ranking by {label} scores NDCG@{AUDIT_K} {float(s.mean()):.3f} against random "
                               f"{float(s_rand.mean()):.3f} (gap {gap:+.3f}, "
                               f"{f'{abs(gap) / se:.1f} s.e.' if se > 0 else 'no spread'})")
    m_info = mask[info]
    oracle = float(per_instance_scores(rank_by(rel, m_info, rng), rel, rel > 0, (name,))[name].mean())
    for col, values in sorted((columns or {}).items()):
        v = np.nan_to_num(np.asarray(values, np.float64)[info], nan=0.0, posinf=0.0, neginf=0.0)
        best = max(float(per_instance_scores(rank_by(sign * v, m_info, rng), rel, rel > 0, (name,))[name].mean())
                   for sign in (1.0, -1.0))
        res.ndcg_by_column[col] = best
        if best >= COLUMN_SOLVES * oracle:
            res.reasons.append(f"ranking by the column {col!r} alone scores NDCG@{AUDIT_K} {best:.3f}, "
                               f"{best / oracle:.3f} of the oracle's (a need one column solves)")
    res.leak = bool(res.reasons)
    return res


def _padded(lists, k: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(lists), k))
    mask = np.zeros((len(lists), k), bool)
    for i, r in enumerate(lists):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask


def label_arrays(table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(relevance, relevant, mask) of a label table (pyarrow), (n, K) in presented order."""
    rel_lists = table.column("relevance").to_pylist()
    k = max((len(r) for r in rel_lists), default=0)
    rel, mask = _padded(rel_lists, k)
    return rel, _padded(table.column("relevant").to_pylist(), k)[0] > 0, mask


def audit_table(table, seed: int = 0, columns: tuple[str, ...] = ()) -> SplitAudit:
    """Audit a label table (pyarrow): its relevance in presented order and the named per-candidate
    columns."""
    rel_lists = table.column("relevance").to_pylist()
    k = max((len(r) for r in rel_lists), default=0)
    rel, mask = _padded(rel_lists, k)
    cols = {c: _padded(table.column(c).to_pylist(), k)[0] for c in columns}
    return audit_arrays(rel, mask, seed, cols)
