"""Everything RecBole 1.2.1 needs on today's stack, in one place. Applied only inside the worker
subprocess, before recbole is imported.

- NumPy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``; RecBole's
  ``Config.compatibility_settings`` reads the first three (and ray's logger the last).
- torch >= 2.6 loads with ``weights_only=True``; RecBole's own checkpoints hold its Config object,
  so its trainer's ``torch.load`` calls need ``weights_only=False`` (our files only).
- ``recbole.quick_start`` imports ray (which needs ``pkg_resources``): never imported here.
- pandas 3 makes ``fillna(inplace=True)`` in RecBole's ``_fill_nan`` a no-op: the exported atomic
  files contain no missing values, so that path does nothing either way.
- pandas 3 makes ``Series.agg(func)`` call ``func`` on the whole Series. RecBole measures each
  row of a sequence field with ``feat[field].agg(len)`` (ID remapping, ``benchmark_filename``
  files: the ``samples=windows`` path) and would get the column's length instead: ``agg(len)`` is
  made per row again, inside the worker only. (``agg(np.concatenate)``, RecBole's other use, means
  the whole column under both behaviours.)
"""

from __future__ import annotations

import functools


def apply() -> None:
    import numpy as np
    import torch

    for name, value in {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_,
                        "bool8": np.bool_}.items():
        if not hasattr(np, name):
            setattr(np, name, value)
    if not getattr(torch.load, "_flexrec_patched", False):
        original = torch.load

        @functools.wraps(original)
        def load(*args, **kwargs):
            kwargs.setdefault("weights_only", False)
            return original(*args, **kwargs)

        load._flexrec_patched = True  # type: ignore[attr-defined]
        torch.load = load
    import pandas as pd

    if not getattr(pd.Series.agg, "_flexrec_patched", False):
        agg = pd.Series.agg

        @functools.wraps(agg)
        def per_row_len(self, func=None, *args, **kwargs):
            if func is len:
                return self.map(len)
            return agg(self, func, *args, **kwargs)

        per_row_len._flexrec_patched = True  # type: ignore[attr-defined]
        pd.Series.agg = per_row_len
