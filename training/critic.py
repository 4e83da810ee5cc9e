"""The uncertainty-aware critic: predicts a user's label for an item *and its variance*, for the
unobserved user-item pairs a rollout's reward depends on.

Two towers over fixed item-text embeddings: a history encoder (MLP over the STAR profile of the
user's recent items) and an item encoder, joined by an MLP with a mean head and a log-variance
head; trained with beta-NLL (Seitzer et al. 2022, beta = 0.5) on an 8:1:1 split of observed
interactions (the paper: of all interactions; ours: of the training users' only, so that no
validation or test user's behaviour reaches the rewards a policy is trained on); the checkpoint with
the best validation MSE is kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from tqdm.auto import tqdm

from flexrec_bench.building.splits import DatasetSplit, load_manifest
from flexrec_bench.datasets import DATASETS
from flexrec_bench.foundation.errors import FlexRecError, MissingDataError
from flexrec_bench.foundation.io import atomic_path, write_json_atomic, write_text_atomic
from flexrec_bench.building.labeling import LabelContext, make_need
from flexrec_bench.building.retrieval import profile_vectors

from .config import CriticConfig


def _block(i: int, o: int, p: float) -> nn.Sequential:
    """Linear, LayerNorm, ReLU, dropout: Appendix G's MLP (ReLU activations, LayerNorm, dropout 0.05)."""
    return nn.Sequential(nn.Linear(i, o), nn.LayerNorm(o), nn.ReLU(), nn.Dropout(p))


class CriticNet(nn.Module):
    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.05):
        super().__init__()
        self.user = nn.Sequential(_block(dim, hidden, dropout), nn.Linear(hidden, hidden))
        self.item = nn.Sequential(_block(dim, hidden, dropout), nn.Linear(hidden, hidden))
        self.joint = nn.Sequential(_block(3 * hidden, hidden, dropout), nn.Linear(hidden, 2))

    def forward(self, profile: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, i = self.user(profile), self.item(item)
        out = self.joint(torch.cat([u, i, u * i], dim=-1))
        return out[..., 0], out[..., 1].clamp(-10.0, 5.0)


def beta_nll(mean: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """beta-NLL: the Gaussian NLL of each sample weighted by stop-gradient(variance)^beta."""
    var = logvar.exp()
    nll = 0.5 * (logvar + (y - mean) ** 2 / var)
    return (nll * var.detach() ** beta).mean() if beta > 0 else nll.mean()


def interest_targets(signals: np.ndarray, signal_kind: str, options: dict | None = None) -> np.ndarray:
    """Map raw signals to the interest need's relevance (the critic predicts labels, not signals),
    with the interest need's label options as the build recorded them (``options``: the manifest's
    ``needs.interest.config``; the need's defaults where the build has no interest need)."""
    sig = np.asarray(signals, np.float64)[:, None]
    ctx = LabelContext(signal_kind=signal_kind, candidates=np.zeros_like(sig, dtype=np.int64),
                       mask=np.ones(sig.shape, bool), known_signal=sig, similarity=np.zeros(sig.shape),
                       candidate_topics=[[frozenset()]] * len(sig), history_topics=[frozenset()] * len(sig),
                       query_time=np.zeros(len(sig), np.int64), window_counts=lambda w: np.zeros(sig.shape))
    return make_need("interest", dict(options or {})).label(ctx).relevance[:, 0].astype(np.float32)


def build_interest_options(manifest: dict) -> dict:
    """The interest need's label options of a build (empty: the need's defaults)."""
    return dict(((manifest.get("needs") or {}).get("interest") or {}).get("config") or {})


def training_pairs(data_dir: str | Path, dataset: str, cfg: CriticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(profiles (N, d), item indices (N,), targets (N,)) from observed interactions of training
    users: each observed interaction with its user's preceding history."""
    spec = DATASETS.get(dataset)
    if spec.signal_kind == "esci":
        raise FlexRecError("the critic models user-item interest; esci has no users (its labels are all observed)")
    root = Path(data_dir) / dataset
    manifest = load_manifest(data_dir, dataset)
    inter = pq.read_table(root / "interactions.parquet").to_pandas()
    items = pq.read_table(root / "items.parquet", columns=["item_id"]).to_pandas()
    emb = np.load(root / "embeddings.npy")
    index = {iid: i for i, iid in enumerate(items["item_id"])}
    inter = inter[inter["split"] == "train"].copy()
    inter["idx"] = inter["item_id"].map(index)
    inter = inter.sort_values(["user_id", "timestamp", "idx"], kind="mergesort")
    hists, sigs, targets_idx, targets_sig = [], [], [], []
    for _, g in inter.groupby("user_id", sort=True):
        idx, sig, obs = g["idx"].to_numpy(), g["signal"].to_numpy(), g["observed"].to_numpy()
        for c in np.flatnonzero(obs):
            if c == 0:
                continue
            lo = max(0, c - cfg.history)
            hists.append(idx[lo:c])
            sigs.append(sig[lo:c])
            targets_idx.append(idx[c])
            targets_sig.append(sig[c])
    if not targets_idx:
        raise MissingDataError(f"{dataset}: no observed interactions with a history among training users")
    order = np.arange(len(targets_idx))
    if cfg.max_pairs and len(order) > cfg.max_pairs:
        order = np.sort(np.random.default_rng([cfg.seed, 5]).choice(len(order), cfg.max_pairs, replace=False))
    prof = profile_vectors([hists[i] for i in order], [sigs[i] for i in order], emb, cfg.lam, spec.signal_scale)
    y = interest_targets(np.array(targets_sig)[order], spec.signal_kind, build_interest_options(manifest))
    return prof, np.array(targets_idx)[order], y, {"fingerprint": manifest["fingerprint"], "emb": emb}


#: Table 4's columns and the metrics.json keys that fill them
TABLE4_COLUMNS = {"MSE": "test_mse", "MAE": "test_mae", "Pearson (Mean)": "test_pearson_mean",
                  "Pearson (Var)": "test_pearson_var_sqerr"}


def table4_markdown(report: dict, dataset: str) -> str:
    """The critic's test metrics in the layout of the paper's Table 4 (one dataset's columns)."""
    head = "| Method | " + " | ".join(TABLE4_COLUMNS) + " |"
    row = "| Critic | " + " | ".join(f"{report[k]:.3f}" for k in TABLE4_COLUMNS.values()) + " |"
    return f"Critic on {dataset} (held-out 10% of observed pairs)\n\n{head}\n|---|---|---|---|---|\n{row}\n"


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


class Critic:
    """A trained critic with the item embeddings it was trained on."""

    def __init__(self, net: CriticNet, cfg: CriticConfig, emb: np.ndarray, meta: dict):
        self.net, self.cfg, self.emb, self.meta = net.eval(), cfg, emb, meta

    @torch.no_grad()
    def predict_pairs(self, profiles: np.ndarray, items: np.ndarray, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        means, vars_ = [], []
        for s in range(0, len(items), batch):
            p = torch.from_numpy(np.ascontiguousarray(profiles[s:s + batch], np.float32))
            e = torch.from_numpy(np.ascontiguousarray(self.emb[items[s:s + batch]], np.float32))
            m, lv = self.net(p, e)
            means.append(m.numpy())
            vars_.append(lv.exp().numpy())
        if not means:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(means).astype(np.float64), np.concatenate(vars_).astype(np.float64)

    def fill(self, split: DatasetSplit) -> tuple[np.ndarray, np.ndarray]:
        """(gains, variances) (n, K) for a split: observed labels as they are (variance 0);
        unobserved pairs from the critic (mean clipped to [0, the largest training label], its
        variance): KuaiRec's interest gain is the raw watch ratio, which exceeds 1."""
        spec = DATASETS.get(split.dataset)
        index = {iid: i for i, iid in enumerate(split.items["item_id"])}
        hist = [np.array([index[h] for h in row[-self.cfg.history:]], np.int64) for row in split.frame["history"]]
        sig = [np.asarray(s[-self.cfg.history:], np.float64) for s in split.frame["history_signals"]]
        prof = profile_vectors(hist, sig, self.emb, self.cfg.lam, spec.signal_scale)
        gains, var = split.relevance.copy(), np.zeros_like(split.relevance)
        rows, cols = np.nonzero(split.mask & ~split.observed)
        if len(rows):
            cands = [list(c) for c in split.frame["candidates"]]
            items = np.array([index[cands[r][c]] for r, c in zip(rows, cols)], np.int64)
            m, v = self.predict_pairs(prof[rows], items)
            gains[rows, cols] = np.clip(m, 0.0, float(self.meta.get("target_max", 1.0)))
            var[rows, cols] = v
        return gains, var

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "critic.pt") as tmp:
            torch.save({"state_dict": self.net.state_dict(), "config": asdict(self.cfg), "dim": self.emb.shape[1],
                        "meta": self.meta}, tmp)

    @classmethod
    def load(cls, path: str | Path, data_dir: str | Path | None = None) -> Critic:
        path = Path(path)
        file = path / "critic.pt" if path.is_dir() else path
        if not file.exists():
            raise MissingDataError(f"no critic at {file}: run `flexrec-bench train-critic`")
        blob = torch.load(file, map_location="cpu", weights_only=True)
        cfg = CriticConfig(**{**blob["config"], "split": tuple(blob["config"]["split"])})
        net = CriticNet(blob["dim"], cfg.hidden, cfg.dropout)
        net.load_state_dict(blob["state_dict"])
        meta = blob["meta"]
        root = Path(data_dir or meta["data_dir"]) / meta["dataset"]
        emb = np.load(root / "embeddings.npy")
        fp = json.loads((root / "manifest.json").read_text())["fingerprint"]
        if fp != meta["fingerprint"]:
            raise FlexRecError(f"critic {file} was trained on build {meta['fingerprint']}, but {root} is build {fp}")
        return cls(net, cfg, emb, meta)


def train_critic(data_dir: str | Path, dataset: str, cfg: CriticConfig, out_dir: str | Path | None = None,
                 progress: bool = True, resume: bool = False) -> tuple[Critic, dict]:
    """Train, keep the best-validation-MSE state, report test metrics, and publish ``critic.pt``,
    ``metrics.json`` and ``table4.md`` together (a folder swapped in whole: a kill never leaves one
    run's weights beside another's metrics). The state a stopped run resumes from is kept beside
    the folder, in ``.<name>.state/critic_state.pt``."""
    cfg.validate()
    prof, items, y, meta = training_pairs(data_dir, dataset, cfg)
    emb = meta.pop("emb")
    n = len(y)
    perm = np.random.default_rng([cfg.seed, 6]).permutation(n)
    n_tr, n_va = int(cfg.split[0] * n), int(cfg.split[1] * n)
    tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
    if min(len(tr), len(va), len(te)) == 0:
        raise FlexRecError(f"{dataset}: {n} observed pairs are too few for an 8:1:1 split")
    torch.manual_seed(cfg.seed)
    from flexrec_bench.foundation.device import resolve_device

    dev = torch.device(resolve_device(cfg.device))
    net = CriticNet(emb.shape[1], cfg.hidden, cfg.dropout).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    P, E, Y = (torch.from_numpy(prof.astype(np.float32)).to(dev), torch.from_numpy(emb.astype(np.float32)).to(dev),
               torch.from_numpy(y.astype(np.float32)).to(dev))
    I = torch.from_numpy(items.astype(np.int64)).to(dev)

    def predict(idx):
        net.eval()
        with torch.no_grad():
            m, lv = net(P[idx], E[I[idx]])
        return m.cpu().numpy(), lv.exp().cpu().numpy()

    best, best_state, best_epoch, curve = math.inf, None, 0, []
    g = torch.Generator().manual_seed(cfg.seed)
    state_file = state_path(out_dir) if out_dir is not None else None
    start = 0
    if resume:
        if state_file is None or not state_file.exists():
            raise FlexRecError(f"--resume: no critic_state.pt for {out_dir} (a run saves one after every epoch)")
        try:
            st = torch.load(state_file, map_location="cpu", weights_only=False)
            _ = (st["config"], st["fingerprint"], st["net"], st["opt"], st["generator"])
        except Exception as exc:  # truncated, overwritten or not a state at all
            raise FlexRecError(f"--resume: {state_file} is not a critic state ({type(exc).__name__}); start afresh "
                               f"without --resume") from None
        if st["config"] != asdict(cfg) or st["fingerprint"] != meta["fingerprint"]:
            raise FlexRecError(f"--resume: {state_file} is from another configuration or build; start afresh")
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])  # dropout draws continue as they would have
        best, best_state, best_epoch, curve, start = st["best"], st["best_state"], st["best_epoch"], st["curve"], st["epoch"]
    bar = tqdm(range(start, cfg.epochs), desc="critic", disable=not progress, initial=start, total=cfg.epochs)
    for epoch in bar:
        net.train()
        order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=g)].to(dev)
        total = 0.0
        for s in range(0, len(order), cfg.batch_size):
            b = order[s:s + cfg.batch_size]
            m, lv = net(P[b], E[I[b]])
            loss = beta_nll(m, lv, Y[b], cfg.beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        m, _ = predict(va)
        mse = float(((m - y[va]) ** 2).mean())
        curve.append({"epoch": epoch + 1, "train_loss": total / len(tr), "val_mse": mse})
        bar.set_postfix(train_loss=f"{total / len(tr):.4f}", val_mse=f"{mse:.4f}")
        if mse < best:
            best, best_epoch, best_state = mse, epoch + 1, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        if state_file is not None:  # after every epoch: a stopped run resumes here (--resume)
            state_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(state_file) as tmp:
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "generator": g.get_state(),
                            "torch_rng": torch.get_rng_state(),
                            "best": best, "best_state": best_state, "best_epoch": best_epoch, "curve": curve,
                            "epoch": epoch + 1, "config": asdict(cfg), "fingerprint": meta["fingerprint"]}, tmp)
        if cfg.patience is not None and epoch + 1 - best_epoch >= cfg.patience:
            break  # early stopping (ours, off by default)
    net.load_state_dict(best_state)
    m, v = predict(te)
    net = net.cpu()
    err = (m - y[te]) ** 2
    report = {"pairs": {"train": int(len(tr)), "val": int(len(va)), "test": int(len(te))},
              "best_val_mse": best, "epoch_kept": best_epoch, "epochs_run": len(curve), "device": str(dev), "test_mse": float(err.mean()), "test_mae": float(np.abs(m - y[te]).mean()),
              "test_pearson_mean": _pearson(m, y[te]), "test_pearson_var_sqerr": _pearson(v, err),
              "baseline_mse_predict_mean": float(((y[te] - y[tr].mean()) ** 2).mean()), "curve": curve}
    meta.update(dataset=dataset, data_dir=str(data_dir), target_max=float(y.max()))
    critic = Critic(net, cfg, emb, meta)
    if out_dir is not None:
        from flexrec_bench.foundation.publish import fault, locked, new_tmp_dir, publish, recover

        out = Path(out_dir)
        with locked(out, what="critic"):
            recover(out)
            tmp = new_tmp_dir(out)
            try:
                critic.save(tmp)
                write_json_atomic(tmp / "metrics.json", {**report, "config": asdict(cfg), "meta": meta})
                write_text_atomic(tmp / "table4.md", table4_markdown(report, dataset))
                fault("critic:written")
                publish(tmp, out)
            finally:
                if tmp.exists():
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)
    return critic, report


def state_path(out_dir: str | Path) -> Path:
    """Where a critic run keeps the state it resumes from: beside its output folder."""
    out = Path(out_dir)
    return out.parent / f".{out.name}.state" / "critic_state.pt"
