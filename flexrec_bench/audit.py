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

from dataclasses import asdict, dataclass, field

import numpy as np

from .metrics import expected_random_ndcg, per_instance_scores

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


def summarize_audit(results: dict[str, dict[str, SplitAudit]], formula: dict[str, dict] | None = None) -> dict:
    """The manifest's ``audit`` entry: the verdict, the rule, every split's figures, and each need's
    formula audit (flexrec_bench.formula_audit; a need solvable from what the ranker is shown is
    listed, not flagged as a leak)."""
    from .formula_audit import NEED_BLIND, REFERENCE_NEED, SOLVABLE

    flagged = [f"{need}/{split}" for need, by in results.items() for split, a in by.items() if a.leak]
    formula = formula or {}
    return {"leak_free": not flagged, "flagged": flagged, "rule": RULE,
            "solvable_from_shown": [n for n, f in formula.items() if f.get("solvable")],
            "formula_rule": f"a need is solvable from what the ranker is shown when a ranker fitted on the train split "
                            f"from shown features reaches {SOLVABLE:g} of the oracle's NDCG@{AUDIT_K} on test "
                            f"(not a leak of order)",
            "need_blind": [n for n, f in formula.items() if f.get("need_blind")],
            "need_blind_rule": f"a need is need-blind (a need-blind ranker solves it) when ranking by the "
                               f"{REFERENCE_NEED} labels, scored under the need's labels, reaches NDCG@{AUDIT_K} "
                               f"{NEED_BLIND:g} on test",
            "needs": {need: {split: asdict(a) for split, a in by.items()} for need, by in results.items()},
            "formula": formula}


def audit_build(data_dir, dataset: str, seed: int = 0) -> dict:
    """Audit every need and split of a built dataset (what ``flexrec-bench audit`` runs), with each
    need's formula audit."""
    from .formula_audit import add_need_blind, formula_audit, shown_inputs
    from .labeling import make_need
    from .splits import SPLITS, load_manifest, load_split

    manifest = load_manifest(data_dir, dataset)
    out: dict[str, dict[str, SplitAudit]] = {}
    formula: dict[str, dict] = {}
    test_labels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for need in manifest["needs"]:
        out[need] = {}
        loaded = {}
        for split in SPLITS:
            s = loaded[split] = load_split(data_dir, dataset, need, split)
            cols = {c: s.candidate_column(c) for c in s.ranker_columns}
            out[need][split] = audit_arrays(s.relevance, s.mask, seed, cols)
        items = loaded["train"].items
        topics = dict(zip(items["item_id"], map(frozenset, items["topics"]))) if "topics" in items else {}
        counts = dict(zip(items["item_id"], items["train_count"])) if "train_count" in items else {}
        shown = [c for c in loaded["train"].ranker_columns if c != "retrieval_scores"]
        inputs = {split: shown_inputs(loaded[split].frame, shown, topics, counts) for split in ("train", "test")}
        spec = manifest["needs"][need]
        try:
            obj = make_need(need, spec.get("config") or {})
        except Exception:  # a need this install does not know (a plugin's): the ceiling without its formula
            obj = None
        formula[need] = formula_audit(inputs["train"], inputs["test"], obj, loaded["train"].signal_kind,
                                      seed=seed)
        t = loaded["test"]
        test_labels[need] = (t.relevance, t.relevant, t.mask)
    return summarize_audit(out, add_need_blind(formula, test_labels, seed))


def format_audit(summary: dict) -> str:
    """A terminal table of an audit summary."""
    lines = [f"{'need':<9} {'split':<5} {'tested':>6} {'chi2 p':>9} {'ndcg@10 order':>13} {'reverse':>8} "
             f"{'random':>7}  {'best column':>22}  verdict"]
    for need, by in summary["needs"].items():
        for split, a in by.items():
            def f(x):
                return f"{x:.3f}" if x is not None else "-"

            cols = a.get("ndcg_by_column") or {}
            top = max(cols, key=cols.get) if cols else None
            best = f"{top} {cols[top]:.3f}" if top else "-"
            lines.append(f"{need:<9} {split:<5} {a['informative']:>6} {a['p_value']:>9.2g} {f(a['ndcg_presented']):>13} "
                         f"{f(a['ndcg_reversed']):>8} {f(a['ndcg_random']):>7}  {best:>22}  "
                         f"{'LEAK: ' + '; '.join(a['reasons']) if a['leak'] else 'ok'}")
    lines.append("leak-free" if summary["leak_free"] else f"LEAKS in {', '.join(summary['flagged'])}")
    lines += format_formula(summary.get("formula") or {})
    return "\n".join(lines)


def format_formula(formula: dict[str, dict]) -> list[str]:
    """The formula audit's table: NDCG@10 on test of random, popularity, the retrieval score, the
    shown columns, the fitted rankers (the ceiling is the better) and the oracle."""
    if not formula:
        return []
    from .formula_audit import SOLVABLE

    lines = ["", f"formula audit (rankers fitted on train from what a ranker is shown, NDCG@{AUDIT_K} on test; "
                 f"solvable at {SOLVABLE:g} of the oracle):",
             f"{'need':<9} {'tested':>6} {'random':>7} {'popular':>7} {'retr.':>7} {'linear':>7} {'boosted':>7} "
             f"{'oracle':>7} {'ceiling':>8} {'blind':>6}  label formula on shown inputs"]
    for need, f in formula.items():
        sc = f.get("scores")
        if not sc:
            lines.append(f"{need:<9} {f.get('instances', 0):>6}  - ({f.get('why', 'not run')})")
            continue
        lf = f.get("label_formula") or {}
        lab = (f"reproduces {lf['match']:.3f} of instances, NDCG@{AUDIT_K} {lf.get(f'ndcg@{AUDIT_K}', float('nan')):.3f}"
               if lf.get("evaluated") else "not a formula of shown inputs" if lf else "-")
        lines.append(f"{need:<9} {f['instances']:>6} {sc['random']:>7.3f} {sc['popularity']:>7.3f} "
                     f"{sc['retrieval_scores']:>7.3f} {sc['linear']:>7.3f} {sc['boosted']:>7.3f} {sc['oracle']:>7.3f} "
                     f"{f['formula_ceiling']:>8.3f} {_blind(f):>6}  {lab}"
                     + ("  SOLVABLE from what the ranker is shown" if f["solvable"] else "")
                     + ("  NEED-BLIND: a need-blind ranker solves it" if f.get("need_blind") else ""))
    from .formula_audit import NEED_BLIND, REFERENCE_NEED

    if any(f.get("need_blind_ceiling") is not None for f in formula.values()):
        lines.append(f"blind: the need-blind ceiling, ranking by the {REFERENCE_NEED} labels scored under the need's "
                     f"(flagged need-blind at {NEED_BLIND:g}; {REFERENCE_NEED}: the reference itself)")
    return lines


def _blind(f: dict) -> str:
    v = f.get("need_blind_ceiling")
    return "-" if v is None else "ref" if f.get("need_blind_reference") else f"{v:.3f}"
