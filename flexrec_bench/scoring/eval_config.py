"""The options of ``flexrec-bench eval``, in one dataclass: each field's type, default and ``#:``
help are written here once; the command's options are derived from them (flexrec_bench.cli), and the
resolved config is written into results.json (secrets redacted)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flexrec_bench.foundation.errors import ConfigError
from flexrec_bench.foundation.metrics import DEFAULT_METRICS, parse_metric

#: ranker options that change speed or transport, never the rankings: they make no variant
TRANSPORT_OPTIONS = frozenset({"progress", "base_url", "cache_dir", "concurrency", "requests_per_minute",
                               "tokens_per_minute", "max_retries", "timeout", "batch_size", "threads"})


def variant_options(options: dict) -> dict[str, str]:
    """The ranker options that make a variant (secrets and transport settings left out)."""
    from flexrec_bench.foundation.secrets import is_secret_name

    return {k: str(v) for k, v in options.items() if k not in TRANSPORT_OPTIONS and not is_secret_name(k)}


@dataclass
class EvalConfig:
    """Options of ``flexrec-bench eval``; written, resolved, into results.json."""

    model: str                          #: ranker, e.g. star, popularity, hf:<path>, openai:<model>
    dataset: str = "ml-100k"            #: built dataset
    need: str = "interest"              #: need to score
    split: str = "test"                 #: train, val or test
    data: str = "data"                  #: the --out of build-data
    limit: int | None = None            #: score only the first N instances
    out: str = "results"                #: results root
    seed: int = 0                       #: seeds ties, padding, sampling and the bootstrap
    bootstrap: int = 1000               #: bootstrap resamples for the 95% CIs
    metrics: tuple[str, ...] = DEFAULT_METRICS
    options: dict = field(default_factory=dict)  #: ranker options (-o key=value); secrets are redacted in results.json
    name: str | None = None             #: display name on the leaderboard (default: the --model string)
    shuffles: int = 0                   #: position-bias probe: rank N further seeded presentations of every instance (0 to 20; order-invariant rankers are not re-run)

    @property
    def variant(self) -> str | None:
        """Short hash of the ranker options that change its output (None without any): the same
        model with other options is another entry and another results folder. Secrets, the
        progress switch and the OpenAI client's transport settings do not make a variant."""
        opts = variant_options(self.options)
        if not opts:
            return None
        import hashlib
        import json as _json

        return hashlib.sha256(_json.dumps(opts, sort_keys=True).encode()).hexdigest()[:8]

    def validate(self) -> None:
        """One-line errors before anything is ranked or written."""
        if self.split not in ("train", "val", "test"):
            raise ConfigError(f"--split must be train, val or test, got {self.split!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"--limit must be an integer >= 1 (or left out for the whole split), got {self.limit!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if (not isinstance(self.bootstrap, int) or self.bootstrap < 0 or 0 < self.bootstrap < MIN_BOOTSTRAP
                or self.bootstrap > MAX_BOOTSTRAP):
            raise ConfigError(f"--bootstrap must be 0 (no confidence intervals) or {MIN_BOOTSTRAP} to {MAX_BOOTSTRAP} "
                              f"resamples, got {self.bootstrap!r}")
        from flexrec_bench.scoring.position_bias import MAX_SHUFFLES

        if isinstance(self.shuffles, bool) or not isinstance(self.shuffles, int) or not 0 <= self.shuffles <= MAX_SHUFFLES:
            raise ConfigError(f"--shuffles must be an integer from 0 to {MAX_SHUFFLES} (further presentations of every "
                              f"instance, each a full re-ranking), got {self.shuffles!r}")
        if not self.metrics:
            raise ConfigError("--metrics names no metric")
        for m in self.metrics:
            parse_metric(m)


#: fewest bootstrap resamples that give a confidence interval worth printing (0 turns CIs off)
MIN_BOOTSTRAP = 100
#: most resamples accepted (ours: beyond this the interval no longer changes, only the cost grows)
MAX_BOOTSTRAP = 100_000
