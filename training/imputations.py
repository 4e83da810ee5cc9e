"""A critic whose estimates were computed elsewhere: an imputation table (``imputations.parquet``:
need, split, instance_id and, per candidate in the split's order, an estimated gain ``mean`` and its
``variance``) beside a ``critic.json`` naming the build it was made for. The toy's critic with known
noise is one (``flexrec_bench.datasets.toy.write_toy_critic``); an external critic's predictions
can be served the same way. It fills exactly what :class:`training.critic.Critic` fills: the
unobserved pairs of a split, observed labels kept with variance 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from flexrec_bench.foundation.errors import FlexRecError, MissingDataError
from flexrec_bench.building.splits import DatasetSplit, load_manifest

from .config import IMPUTATIONS_TABLE as TABLE
META = "critic.json"


class ImputedCritic:
    """``fill(split) -> (gains, variances)`` from an imputation table."""

    def __init__(self, path: str | Path, data_dir: str | Path):
        self.path = Path(path)
        meta_file = self.path / META
        if not meta_file.exists():
            raise MissingDataError(f"{meta_file}: missing (an imputation table needs its critic.json: dataset, "
                                   f"fingerprint)")
        self.meta = json.loads(meta_file.read_text())
        for key in ("dataset", "fingerprint"):
            if key not in self.meta:
                raise FlexRecError(f"{meta_file}: field {key!r} missing")
        fp = load_manifest(data_dir, self.meta["dataset"])["fingerprint"]
        if fp != self.meta["fingerprint"]:
            raise FlexRecError(f"critic {self.path} was made for build {self.meta['fingerprint']}, but "
                               f"{Path(data_dir) / self.meta['dataset']} is build {fp}")
        table = pq.read_table(self.path / TABLE).to_pydict()
        self.rows = {(n, s, i): (m, v) for n, s, i, m, v in zip(table["need"], table["split"], table["instance_id"],
                                                                  table["mean"], table["variance"])}

    def fill(self, split: DatasetSplit) -> tuple[np.ndarray, np.ndarray]:
        gains, var = split.relevance.copy(), np.zeros_like(split.relevance)
        todo = split.mask & ~split.observed
        for r, iid in enumerate(split.instance_ids):
            if not todo[r].any():
                continue
            row = self.rows.get((split.need, split.split, iid))
            if row is None:
                raise FlexRecError(f"{self.path / TABLE}: no row for need {split.need!r}, split {split.split!r}, "
                                   f"instance {iid!r}")
            mean, variance = np.asarray(row[0], np.float64), np.asarray(row[1], np.float64)
            if len(mean) < split.mask[r].sum() or len(variance) != len(mean):
                raise FlexRecError(f"{self.path / TABLE}: instance {iid!r}: expected {int(split.mask[r].sum())} "
                                   f"means and variances, got {len(mean)} and {len(variance)}")
            cols = np.flatnonzero(todo[r])
            gains[r, cols] = mean[cols]
            var[r, cols] = variance[cols]
        return gains, var


def is_imputation_dir(path: str | Path) -> bool:
    return (Path(path) / TABLE).exists()
