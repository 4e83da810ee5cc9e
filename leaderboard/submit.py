"""``flexrec-bench submit``: validate, re-score and record a results file, atomically."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pydantic import ValidationError

from flexrec_bench import __version__
from flexrec_bench.building.splits import SPLITS, load_split
from flexrec_bench.datasets import DATASETS
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.scoring.eval_config import MIN_BOOTSTRAP
from flexrec_bench.scoring.evaluator import evaluate
from flexrec_bench.ranking.parsing import parse_ranking, short_id, to_permutation
from flexrec_bench.ranking.permutations import ParseStats
from flexrec_bench.foundation.io import remove_stale_tmp, sha256_file, write_json_atomic, writing
from flexrec_bench.building.labeling import NEEDS
from flexrec_bench.foundation.lockfile import LockTimeout, acquire, release
from flexrec_bench.foundation.paths import data_flag
from flexrec_bench.ranking.rankers import RANKERS
from flexrec_bench.scoring.results import ResultsFile

from .builds import REGISTERED_SPLITS, check_labels
from .schema import DEFAULT_PATH, PRIMARY_METRIC, Entry, Leaderboard, Verification, load  # noqa: F401  (load: the board's reader)

TOLERANCE = 1e-9


class SubmissionRefused(FlexRecError):
    pass


def _read_results(path: Path) -> ResultsFile:
    try:
        return ResultsFile.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SubmissionRefused(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SubmissionRefused(f"{path}: cannot read ({exc})") from None


def _rankings_path(results_path: Path, name: str) -> Path:
    """The rankings file named inside a submission, only if it lies in the results folder itself."""
    folder = results_path.resolve().parent
    if not name or Path(name).name != name or name in (".", ".."):
        raise SubmissionRefused(f"{results_path}: rankings.file must be a plain file name beside results.json, got {name!r}")
    p = (folder / name).resolve()
    if p.parent != folder or p.is_symlink() or (folder / name).is_symlink():
        raise SubmissionRefused(f"{results_path}: rankings file {name!r} resolves outside {folder}")
    if not p.is_file():
        raise SubmissionRefused(f"{results_path}: rankings file {p} is missing")
    return p


def verify(results_path: str | Path, data_dir: str | Path, board: Leaderboard,
           board_dir: str | Path = DEFAULT_PATH.parent) -> Entry:
    """All the checks; returns the entry to record. Raises SubmissionRefused with the reason.
    ``board_dir``: the folder of the leaderboard file (its registered builds' digests lie there)."""
    rp = Path(results_path)
    res = _read_results(rp)
    ds, need, split = res.dataset.name, res.dataset.need, res.dataset.split
    if ds not in DATASETS:
        raise SubmissionRefused(f"{rp}: unknown dataset {ds!r}")
    if need not in NEEDS:
        raise SubmissionRefused(f"{rp}: unknown need {need!r}")
    if split not in SPLITS:
        raise SubmissionRefused(f"{rp}: unknown split {split!r}")
    if res.bootstrap.samples < MIN_BOOTSTRAP:
        raise SubmissionRefused(f"{rp}: bootstrap.samples is {res.bootstrap.samples}; entries need confidence intervals "
                                f"from at least {MIN_BOOTSTRAP} resamples (eval --bootstrap)")
    if split not in REGISTERED_SPLITS:
        raise SubmissionRefused(f"{rp}: a {split}-split result; entries are scored on the "
                                f"{' or '.join(REGISTERED_SPLITS)} split only (eval --split test)")
    registered = board.registered_builds.get(ds)
    if registered is None:
        raise SubmissionRefused(f"{rp}: no build of {ds} is registered; the registered builds are a reviewed list "
                                f"(registered_builds in leaderboard/leaderboard.json), changed only by a reviewed edit, "
                                f"never by a submit")
    if res.dataset.fingerprint != registered.fingerprint:
        raise SubmissionRefused(_not_registered(rp, ds, res.dataset.fingerprint, registered.fingerprint, data_dir))
    local = load_split(data_dir, ds, need, split)  # every file it reads is checked against the manifest's sha256
    if local.fingerprint != res.dataset.fingerprint:
        raise SubmissionRefused(f"{rp}: scored on build {res.dataset.fingerprint}, but the local {ds} build is "
                                f"{local.fingerprint}: rebuild with `{registered.command}{data_flag(data_dir, '--out')}`")
    try:  # the labels re-scored against are the registered build's, instance by instance
        check_labels(local, registered, board_dir)
    except FlexRecError as exc:
        raise SubmissionRefused(f"{rp}: {exc}") from None
    names = [n for n in (res.model.name, res.model.display_name) if n is not None]
    for n in names:
        check_name(n, rp, [e.label() for e in board.entries if e.key[0] != res.model.name] +
                   [e.results.model.name for e in board.entries if e.key[0] != res.model.name])
    res = res.model_copy(update={"model": res.model.model_copy(update={
        "name": unicodedata.normalize("NFKC", res.model.name),
        "display_name": unicodedata.normalize("NFKC", res.model.display_name) if res.model.display_name else None})})
    kind = res.model.name.partition(":")[0]
    if kind not in RANKERS:
        raise SubmissionRefused(f"{rp}: model {res.model.name!r}: {kind!r} is no model kind this version knows "
                                f"({', '.join(RANKERS.names())})")
    ranker_cls = RANKERS.get(kind)
    rk = _rankings_path(rp, res.rankings.file)
    digest = sha256_file(rk)
    if digest != res.rankings.sha256:
        raise SubmissionRefused(f"{rk}: sha256 {digest[:12]}… does not match the results file's {res.rankings.sha256[:12]}…")
    try:
        table = pq.read_table(rk)
        ids = table.column("instance_id").to_pylist()
        ranked = table.column("ranked").to_pylist()
    except Exception as exc:  # pyarrow raises several kinds for a corrupt file
        raise SubmissionRefused(f"{rk}: unreadable rankings ({type(exc).__name__})") from None
    seen: set[str] = set()
    for row, (iid, r) in enumerate(zip(ids, ranked)):
        if iid is None or r is None:
            raise SubmissionRefused(f"{rk}: row {row}: {'instance_id' if iid is None else 'ranked'} is null; every row "
                                    f"names an instance and its ranked candidates")
        if iid in seen:
            raise SubmissionRefused(f"{rk}: row {row}: instance {iid!r} appears twice; one row per instance")
        seen.add(iid)
    rankings = dict(zip(ids, ranked))
    extra = [i for i in rankings if i not in set(local.instance_ids)]
    if extra:
        raise SubmissionRefused(f"{rk}: {len(extra)} instance(s) this build does not have (e.g. {extra[0]!r}): the "
                                f"rankings were made on another build or split")
    if len(rankings) != len(local):
        missing = [i for i in local.instance_ids if i not in rankings]
        raise SubmissionRefused(f"{rk}: {len(missing)} instance(s) missing (e.g. {missing[:1]}); "
                                f"entries must rank the whole {split} split (no --limit)")
    if ranker_cls.produces_text and "output" not in table.column_names:
        raise SubmissionRefused(f"{rk}: no 'output' column: an LLM ranker's entry keeps the raw outputs its rankings "
                                f"were parsed from (eval writes them)")
    try:
        report = evaluate(rankings, local, tuple(res.metrics), res.bootstrap.samples, res.bootstrap.seed, beyond=True)
    except FlexRecError as exc:
        raise SubmissionRefused(f"{rk}: {exc}") from None
    for block, claimed_block, got_block in (("metrics", res.metrics, report.metrics),
                                            ("metrics_over_all", res.metrics_over_all, report.metrics_over_all)):
        for name, claimed in claimed_block.items():  # the tamper check: every claimed mean, to 1e-9
            got = got_block.get(name)
            if got is None or not _same(claimed.mean, got.mean):
                raise SubmissionRefused(f"{rp}: {block}.{name}.mean: claimed {_fmt(claimed.mean)}, re-scored "
                                        f"{_fmt(got.mean if got else None)}")
    if ranker_cls.deterministic:  # a built-in ranker: its rankings must be what it produces here
        _check_reproduced(res, local, rankings, rk)
    parse = _parse_stats(table, local, rankings, rk) if "output" in table.column_names else None
    # every count and statistic on the entry is the re-derived one: CIs, n, the undefined counts,
    # the instance count, beyond-accuracy metrics, parse statistics (None without raw outputs)
    # what cannot be re-derived and would read as a fact is dropped: the claimed git state
    checked = res.model_copy(update={
        "metrics": report.metrics, "metrics_over_all": report.metrics_over_all,
        "n_no_relevant": report.n_no_relevant, "n_no_gain": report.n_no_gain,
        "beyond": report.beyond, "parse": parse,
        "dataset": res.dataset.model_copy(update={"instances": len(local)}),
        "provenance": res.provenance.model_copy(update={"git_commit": None, "git_dirty": None})})
    per_instance = {}
    if PRIMARY_METRIC in report.per_instance:
        per_instance[PRIMARY_METRIC] = [None if not np.isfinite(v) else round(float(v), 6)
                                        for v in report.per_instance[PRIMARY_METRIC]]
    return Entry(results=checked, verification=Verification(
        rescored=True, rankings_sha256=digest, instances=len(local), rankings_file=rankings_file_name(digest),
        rerun=bool(ranker_cls.deterministic),
        submitted_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        flexrec_bench_version=__version__, per_instance=per_instance))


#: letters that look like Latin ones (Cyrillic and Greek), for spotting a look-alike of a name
_CONFUSABLE = str.maketrans("аеорсухіјѕԁɡѵԝкмнтвαοορτυνιεκμηχ", "aeopcyxijsdgvwkmhtbaooptuvieknnx")


def _skeleton(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold().translate(_CONFUSABLE)


def check_name(name: str, path, existing: list[str]) -> None:
    """A name shown on the board: printable (no control or format characters), not blank, and not a
    look-alike of a name already there (``stаr`` with a Cyrillic a beside ``star``)."""
    if not name.strip():
        raise SubmissionRefused(f"{path}: the model name is blank")
    bad = [c for c in name if unicodedata.category(c)[0] == "C"]
    if bad:
        raise SubmissionRefused(f"{path}: the model name holds a control character ({ascii(bad[0])}); names are printable")
    norm = unicodedata.normalize("NFKC", name)
    for other in existing:
        if other != norm and _skeleton(other) == _skeleton(norm):
            raise SubmissionRefused(f"{path}: the name {ascii(name)} looks like the entry {ascii(other)}; use a "
                                    f"distinct name (eval --name)")


def rankings_file_name(sha256: str) -> str:
    """Where the board keeps an entry's rankings, relative to the leaderboard file's folder."""
    return f"rankings/{sha256[:16]}.parquet"


def _check_reproduced(res: ResultsFile, split, rankings: dict[str, list[str]], path: Path) -> None:
    """Rank the split again with the named built-in ranker (seeded, offline) and refuse rankings it
    does not produce: for these models a verified entry proves the model made them."""
    from flexrec_bench.ranking.rankers import make_ranker

    opts = {k: v for k, v in ((res.config or {}).get("options") or {}).items() if k != "progress"}
    try:
        ranker = make_ranker(res.model.name, seed=int((res.config or {}).get("seed", 0)), **opts)
        order = ranker.rank(split).order
    except FlexRecError as exc:
        raise SubmissionRefused(f"{path}: cannot rerun {res.model.name} to check its rankings ({exc})") from None
    for i, (iid, cands) in enumerate(zip(split.instance_ids, split.frame["candidates"])):
        mine = [cands[j] for j in order[i] if j >= 0]
        if list(rankings[iid]) != mine:
            raise SubmissionRefused(f"{path}: instance {iid!r}: these are not the rankings {res.model.name} produces on "
                                    f"this build (it is rerun for built-in models); submit a model's own rankings")


def _not_registered(path, dataset: str, got: str, want: str, data_dir=None) -> str:
    return (f"{path}: dataset fingerprint {got} is not the registered {dataset} build {want}; fix: rebuild with pinned "
            f"embeddings (`flexrec-bench build-data --dataset {dataset} --embeddings pinned{data_flag(data_dir, '--out')}`) "
            f"and eval again (`flexrec-bench verify-build --dataset {dataset}{data_flag(data_dir)}` says how your build "
            f"differs)")


def _parse_stats(table, split, rankings: dict[str, list[str]], path: Path) -> ParseStats:
    """Re-parse every raw output with the evaluator's parser; the ranked list must start with what
    the output names (the rest is padding), so rankings cannot be swapped under their outputs."""
    outputs = dict(zip(table.column("instance_id").to_pylist(), table.column("output").to_pylist()))
    stats = ParseStats()
    rng = np.random.default_rng(0)  # padding order does not change the counts
    for iid, cands in zip(split.instance_ids, split.frame["candidates"]):
        parsed = parse_ranking(outputs.get(iid) or "", [short_id(j) for j in range(len(cands))])
        to_permutation(parsed, len(cands), rng, stats)
        named = [cands[j] for j in parsed.positions]
        if list(rankings[iid][: len(named)]) != named:
            raise SubmissionRefused(f"{path}: instance {iid!r}: the ranked list does not start with the items its "
                                    f"output names ({', '.join(parsed.order[:3])}…)")
    return stats


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.all(np.abs(np.atleast_1d(np.asarray(a, float)) - np.atleast_1d(np.asarray(b, float))) <= TOLERANCE))


def _fmt(x) -> str:
    """Enough digits that two values that differ beyond TOLERANCE never print alike."""
    if x is None:
        return "null"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, (tuple, list)):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return repr(float(x))


def submit(results_path: str | Path, leaderboard: str | Path = DEFAULT_PATH, data_dir: str | Path = "data",
           replace: bool = False, lock_timeout: float = 60.0, reviewer: bool = False) -> tuple[Entry, bool]:
    """Verify, then record: the (slow) verification runs without the lock against the board as it is;
    the lock is held only to re-read the board, merge and write it (temp file, renamed)."""
    lb_path = Path(leaderboard)
    lb_path.parent.mkdir(parents=True, exist_ok=True)
    entry = verify(results_path, data_dir, load(lb_path), lb_path.parent)
    lock_path = Path(str(lb_path) + ".lock")
    try:
        with writing(lock_path):
            fd = acquire(lock_path, lock_timeout)
    except LockTimeout:
        raise SubmissionRefused(f"{lb_path}: another submit has held {lock_path} for {lock_timeout:.0f} s; try again "
                                f"when it finishes (or remove the lock file if no submit is running)") from None
    try:
        remove_stale_tmp(lb_path)  # left by a submit killed mid-write; nobody else writes without the lock
        board = load(lb_path)
        registered = board.registered_builds.get(entry.results.dataset.name)
        if registered and registered.fingerprint != entry.results.dataset.fingerprint:  # registered while we verified
            raise SubmissionRefused(_not_registered(results_path, entry.results.dataset.name,
                                                    entry.results.dataset.fingerprint, registered.fingerprint, data_dir))
        same = [e for e in board.entries if e.key == entry.key]
        if same and not replace:
            raise SubmissionRefused(f"{results_path}: an entry for {entry.label()} on {entry.results.dataset.need}/"
                                    f"{entry.results.dataset.split} of build {entry.results.dataset.fingerprint} exists; "
                                    f"pass --replace")
        if same and not reviewer and _declared(same[0]) != _declared(entry):
            raise SubmissionRefused(f"{results_path}: --replace replaces an entry only with a run of the same declared "
                                    f"model (id, revision, options, configuration); this one declares another: a "
                                    f"reviewer replaces it with --reviewer")
        replaced = bool(same)
        stored = lb_path.parent / entry.verification.rankings_file
        with writing(stored):
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_rankings_path(Path(results_path), entry.results.rankings.file), stored)
        board.entries = [e for e in board.entries if e.key != entry.key] + [entry]
        board.entries.sort(key=lambda e: (e.results.dataset.name, e.results.dataset.need, e.results.dataset.split,
                                          e.results.model.name))
        write_json_atomic(lb_path, json.loads(board.model_dump_json()))
        kept = {e.verification.rankings_file for e in board.entries if e.verification.rankings_file}
        for old in same:  # a replaced entry's rankings go with it
            if old.verification.rankings_file and old.verification.rankings_file not in kept:
                (lb_path.parent / old.verification.rankings_file).unlink(missing_ok=True)
    finally:
        release(lock_path, fd)
    return entry, replaced


def _declared(e: Entry) -> tuple:
    m = e.results.model
    return (m.name, m.id, m.revision, m.variant, json.dumps(m.config, sort_keys=True))


def verify_board(leaderboard: str | Path = DEFAULT_PATH, data_dir: str | Path = "data") -> list[str]:
    """Re-score every entry from the rankings the board keeps, against the registered build: the
    problems found (an empty list: every entry holds). A hand-edited mean, CI, count or per-instance
    value, a missing or changed rankings file, or labels that are not the registered build's, fail."""
    lb_path = Path(leaderboard)
    board = load(lb_path)
    problems: list[str] = []
    for e in board.entries:
        r, v = e.results, e.verification
        where = f"{e.label()} on {r.dataset.name}/{r.dataset.need}/{r.dataset.split}"
        if not v.rankings_file:
            problems.append(f"{where}: the board keeps no rankings for it (submitted by an older version)")
            continue
        path = lb_path.parent / v.rankings_file
        if not path.is_file() or sha256_file(path) != v.rankings_sha256:
            problems.append(f"{where}: {path} is missing or is not the rankings the entry names (sha256)")
            continue
        reg = board.registered_builds.get(r.dataset.name)
        if reg is None or reg.fingerprint != r.dataset.fingerprint:
            problems.append(f"{where}: scored on {r.dataset.fingerprint}, not the registered build")
            continue
        try:
            split = load_split(data_dir, r.dataset.name, r.dataset.need, r.dataset.split)
            check_labels(split, reg, lb_path.parent)
            table = pq.read_table(path)
            rankings = dict(zip(table.column("instance_id").to_pylist(), table.column("ranked").to_pylist()))
            rep = evaluate(rankings, split, tuple(r.metrics), r.bootstrap.samples, r.bootstrap.seed, beyond=True)
        except FlexRecError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for block, stored, got in (("metrics", r.metrics, rep.metrics), ("metrics_over_all", r.metrics_over_all,
                                                                           rep.metrics_over_all)):
            for name, mv in stored.items():
                g = got.get(name)
                if g is None or not (_same(mv.mean, g.mean) and _same(mv.ci95, g.ci95) and mv.n == g.n):
                    problems.append(f"{where}: {block}.{name} on the board ({_fmt(mv.mean)}, n {mv.n}) is not the "
                                    f"re-scored {_fmt(g.mean if g else None)}")
        for name, value in r.beyond.items():
            if not _same(value, rep.beyond.get(name)):
                problems.append(f"{where}: beyond.{name} on the board is not the re-scored value")
        for name, values in v.per_instance.items():
            fresh = [None if not np.isfinite(x) else round(float(x), 6) for x in rep.per_instance.get(name, [])]
            if fresh != values:
                problems.append(f"{where}: per-instance {name} on the board is not the re-scored one")
        if (r.n_no_relevant, r.n_no_gain, v.instances) != (rep.n_no_relevant, rep.n_no_gain, len(split)):
            problems.append(f"{where}: the board's counts are not the re-scored ones")
    return problems


def _printable(text: str) -> str:
    """A name as a terminal shows it safely: control characters (escape sequences) as \\x.. escapes."""
    return "".join(c if unicodedata.category(c)[0] != "C" else ascii(c)[1:-1] for c in text)


def table(board: Leaderboard, dataset: str | None = None, need: str | None = None,
          metrics: tuple[str, ...] = ("ndcg@5", "ndcg@10", "recall@5", "mrr@5")) -> str:
    rows = [e for e in board.entries if (dataset is None or e.results.dataset.name == dataset)
            and (need is None or e.results.dataset.need == need)]
    if not rows:
        return "(no entries)"
    out = []
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for e in rows:
        groups.setdefault((e.results.dataset.name, e.results.dataset.need, e.results.dataset.split), []).append(e)
    for (ds, nd, sp), es in groups.items():
        out.append(f"{ds} / {nd} / {sp}")
        width = max(len(_printable(e.label())) for e in es)
        out.append(f"  {'model':<{width}}  " + "  ".join(f"{m:>22}" for m in metrics))
        def first(e: Entry) -> float:
            v = e.results.metrics.get(metrics[0])
            return -(v.mean if v is not None and v.mean is not None else -1.0)

        for e in sorted(es, key=first):
            cells = []
            for m in metrics:
                v = e.results.metrics.get(m)
                cells.append(f"{v.mean:.4f} [{v.ci95[0]:.3f},{v.ci95[1]:.3f}]" if v is not None and v.mean is not None
                             else f"{'-':>22}")
            out.append(f"  {_printable(e.label()):<{width}}  " + "  ".join(f"{c:>22}" for c in cells))
        out.append("")
    return "\n".join(out).rstrip()
