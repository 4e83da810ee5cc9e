"""Our side of BERT4Rec: export training interactions as RecBole atomic files, train in the worker
subprocess, and the ``bert4rec:<checkpoint>`` ranker that scores exactly our candidate sets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from flexrec_bench.building.splits import load_manifest
from flexrec_bench.foundation.errors import FlexRecError, MissingDataError
from flexrec_bench.foundation.io import write_json_atomic
from flexrec_bench.ranking.rankers.base import Ranker
from flexrec_bench.ranking.permutations import RankResult, scores_to_order

CONFIG = Path(__file__).with_name("config.yaml")


@dataclass
class Bert4RecSettings:
    """Options of ``train-baseline bert4rec``; ``overrides`` reach RecBole's config as is."""

    overrides: dict = field(default_factory=dict)   #: e.g. {"epochs": 1, "n_layers": 1, "hidden_size": 32}
    timeout_s: int = 6 * 3600


SAMPLES = ("prefixes", "windows")


def _train_sequences(data_dir: str | Path, dataset: str):
    root = Path(data_dir) / dataset
    inter = pq.read_table(root / "interactions.parquet", columns=["user_id", "item_id", "timestamp", "split"]).to_pandas()
    inter = inter[inter["split"] == "train"].sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    if inter.empty:
        raise MissingDataError(f"{dataset} has no training interactions (ESCI has no user sequences for BERT4Rec)")
    return inter


def export_atomic(data_dir: str | Path, dataset: str, dest: Path, samples: str = "prefixes",
                  max_len: int = 50, stride: int = 25) -> Path:
    """Training users' interactions for RecBole, in ``<dest>/flexrec/``.

    ``prefixes`` (RecBole's own way): one ``flexrec.inter`` file; RecBole splits each user's last two
    items off for validation and test (``LS: valid_and_test``) and makes one training sample per
    interaction (every prefix of every sequence), about a million samples per epoch on ML-1M.

    ``windows`` (ours): RecBole's benchmark files, made here. Validation and test are the same
    leave-last-out rows (the history before the user's second-last / last item, as the target); the
    training part of each sequence (all but its last two items) is cut into windows of ``max_len``
    items, ending at its last item and stepping back by ``stride``: BERT4Rec's cloze task masks
    random positions of each window, so a prefix of a window is no new sample. Full-size ML-1M:
    29,104 samples per epoch instead of about 786,000 (benchmarks/README.md)."""
    if samples not in SAMPLES:
        raise FlexRecError(f"bert4rec samples={samples!r}: expected one of {', '.join(SAMPLES)}")
    if not 0 < stride <= max_len:
        raise FlexRecError(f"bert4rec window_stride={stride}: expected 1..MAX_ITEM_LIST_LENGTH ({max_len})")
    inter = _train_sequences(data_dir, dataset)
    name = "flexrec"
    d = dest / name
    d.mkdir(parents=True, exist_ok=True)
    if samples == "prefixes":
        with open(d / f"{name}.inter", "w") as f:
            f.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for u, i, t in zip(inter["user_id"], inter["item_id"], inter["timestamp"]):
                f.write(f"{u}\t{i}\t{int(t)}\n")
        return d
    items = inter["item_id"].astype(str).to_numpy()
    bad = next((x for x in items if not x or any(c.isspace() for c in x)), None)
    if bad is not None:
        raise FlexRecError(f"bert4rec samples=windows: item id {bad!r} holds white space, which RecBole's sequence "
                           f"fields split on; use samples=prefixes")
    users = inter["user_id"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    files = {part: open(d / f"{name}.{part}.inter", "w") for part in ("train", "valid", "test")}
    try:
        for f in files.values():
            f.write(header)
        for a, b in zip(starts, ends):
            seq, u = items[a:b], users[a]
            for part, cut in (("test", len(seq) - 1), ("valid", len(seq) - 2)):
                if cut >= 1:
                    files[part].write(f"{u}\t{' '.join(seq[max(0, cut - max_len + 1):cut])}\t{seq[cut]}\n")
            train = seq[:max(len(seq) - 2, 0)]
            for end in range(len(train), 1, -stride):  # windows of at least two items, the newest first
                win = train[max(0, end - max_len):end]
                files["train"].write(f"{u}\t{' '.join(win)}\t{win[-1]}\n")
                if end <= max_len:
                    break
    finally:
        for f in files.values():
            f.close()
    return d


#: RecBole's per-epoch log lines, streamed to the user as they come
_EPOCH = re.compile(r"epoch (\d+) (training|evaluating) \[(.*?)\]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run_worker(cmd: str, spec: dict, work: Path, timeout: int, progress: bool = False) -> dict:
    """Run the RecBole worker in its own process, in ``work`` (RecBole writes log/ and
    log_tensorboard/ into its working directory: they stay in the run's folder, never the repo).
    Its output goes to ``<work>/<cmd>.log``; with ``progress``, each epoch's line is echoed."""
    import threading
    import time

    work = Path(work).resolve()  # the worker runs inside it: every path it is given must be absolute
    _PATH_KEYS = ("data_path", "checkpoint_dir", "config_file", "model_file", "instances", "scores_out", "resume_file")
    spec = {k: (str(Path(v).resolve()) if k in _PATH_KEYS and isinstance(v, str) else v) for k, v in spec.items()}
    spec_path = work / f"{cmd}_spec.json"
    spec["result_out"] = str(work / f"{cmd}_result.json")
    Path(spec["result_out"] + ".error").unlink(missing_ok=True)  # an earlier run's cause is not this one's
    spec_path.write_text(json.dumps(spec))
    log = work / f"{cmd}.log"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "baselines.bert4rec.worker", cmd, str(spec_path)], cwd=work,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        timed_out = threading.Event()
        timer = threading.Timer(timeout, lambda: (timed_out.set(), proc.kill()))
        timer.start()
        try:
            for line in proc.stdout:
                fh.write(line)
                m = _EPOCH.search(_ANSI.sub("", line))
                if progress and m:
                    print(f"bert4rec {cmd}: epoch {int(m.group(1)) + 1} {m.group(2)} [{m.group(3)}] "
                          f"({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
            proc.wait()
        finally:
            timer.cancel()
    if proc.returncode != 0:
        raise FlexRecError(f"RecBole {cmd} failed: {_cause(proc.returncode, timed_out.is_set(), timeout, spec)} "
                           f"(full log: {log})")
    return json.loads(Path(spec["result_out"]).read_text())


def _cause(returncode: int, timed_out: bool, timeout: int, spec: dict) -> str:
    """Why the worker stopped: its exception (the worker records it), the timeout, or the signal;
    never the log's last line (a warning's, as often as not)."""
    import signal

    err = Path(spec["result_out"] + ".error")
    if err.is_file():
        e = json.loads(err.read_text())
        return f"{e['type']}: {e['message']}" + (f" (at {e['where']})" if e.get("where") else "")
    if timed_out:
        return f"stopped after its timeout of {timeout} s (timeout_s)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with code {returncode} before starting (no exception recorded)"


def _resume_file(out: Path, tmp: Path) -> Path:
    """The checkpoint a --resume continues from: an interrupted run's newest RecBole checkpoint
    (``<tmp>/saved/*.pth``, RecBole saves the best epoch so far), else the finished run's
    ``model.pth`` (training goes on to the new ``epochs``)."""
    saved = sorted((tmp / "saved").glob("*.pth"), key=lambda p: p.stat().st_mtime) if tmp.exists() else []
    if saved:
        return saved[-1]
    if (out / "model.pth").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "saved").mkdir(parents=True)
        target = tmp / "saved" / "resume.pth"  # RecBole saves over the file it resumed from: a copy
        shutil.copyfile(out / "model.pth", target)
        return target
    raise FlexRecError(f"--resume: neither an interrupted run ({tmp}/saved/*.pth) nor a checkpoint ({out}/model.pth)")


def train_bert4rec(data_dir: str | Path, dataset: str, out_dir: str | Path, settings: Bert4RecSettings,
                   progress: bool = True, resume: bool = False) -> Path:
    """Train BERT4Rec on the training users' sequences; returns the checkpoint directory. RecBole
    keeps the best-validation epoch's checkpoint; ``resume`` continues from it (see _resume_file)."""
    manifest = load_manifest(data_dir, dataset)
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    resume_file = _resume_file(out, tmp) if resume else None
    if resume_file is None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    import yaml

    conf = {**yaml.safe_load(CONFIG.read_text()), **settings.overrides}
    samples, max_len = conf.get("samples", "prefixes"), int(conf["MAX_ITEM_LIST_LENGTH"])
    if not (tmp / "atomic").exists():
        export_atomic(data_dir, dataset, tmp / "atomic", samples, max_len, int(conf.get("window_stride", max_len // 2)))
    overrides = dict(settings.overrides)
    if samples == "windows":  # RecBole reads the three files made here instead of splitting and augmenting
        overrides.update(benchmark_filename=["train", "valid", "test"],
                         load_col={"inter": ["user_id", "item_id_list", "item_id"]},
                         alias_of_item_id=["item_id_list"])  # one vocabulary for both fields
    spec = {"name": "flexrec", "data_path": str(tmp / "atomic"), "checkpoint_dir": str(tmp / "saved"),
            "config_file": str(CONFIG), "overrides": overrides}
    if resume_file is not None:
        spec["resume_file"] = str(resume_file)
    res = _run_worker("train", spec, tmp, settings.timeout_s, progress)
    model_file = Path(res["model_file"])
    final_model = tmp / "model.pth"
    model_file.rename(final_model)
    shutil.rmtree(tmp / "saved", ignore_errors=True)
    write_json_atomic(tmp / "bert4rec.json", {"dataset": dataset, "fingerprint": manifest["fingerprint"],
                                              "data_dir": str(data_dir), "overrides": settings.overrides,
                                              "train_result": {**res, "model_file": "model.pth"}})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


class Bert4RecRanker(Ranker):
    """``bert4rec:<checkpoint dir>``: BERT4Rec scores of each instance's own candidates, given its history."""

    kind = "bert4rec"
    needs_arg = True
    reads = ("history", "train_interactions")
    order_invariant = True

    def __init__(self, arg=None, seed: int = 0, timeout_s: int = 3600):
        super().__init__(arg, seed)
        self.dir = Path(arg)
        meta = self.dir / "bert4rec.json"
        if not meta.exists():
            raise MissingDataError(f"{self.dir} is not a BERT4Rec checkpoint: run `flexrec-bench train-baseline bert4rec`")
        self.meta = json.loads(meta.read_text())
        self.timeout = int(timeout_s)

    def info(self) -> dict:
        d = super().info()
        d["revision"] = f"build-{self.meta['fingerprint']}"
        d["config"].update(overrides=self.meta["overrides"])
        return d

    def rank(self, split) -> RankResult:
        if split.fingerprint != self.meta["fingerprint"]:
            raise FlexRecError(f"{self.dir} was trained on build {self.meta['fingerprint']}, the split is build "
                               f"{split.fingerprint}")
        work = self.dir / "scoring"
        work.mkdir(exist_ok=True)
        inst = [{"history": list(h), "candidates": list(c)} for h, c in zip(split.frame["history"], split.frame["candidates"])]
        (work / "instances.json").write_text(json.dumps(inst))
        _run_worker("score", {"model_file": str(self.dir / "model.pth"), "data_path": str(self.dir / "atomic" / "flexrec"),
                              "instances": str(work / "instances.json"), "scores_out": str(work / "scores.npy")},
                    work, self.timeout)
        scores = np.load(work / "scores.npy")
        full = np.full(split.mask.shape, -np.inf)
        full[:, : scores.shape[1]] = scores
        return RankResult(scores_to_order(full, split.mask, self.seed))
