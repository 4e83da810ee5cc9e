from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.ranking.permutations import RankResult
from flexrec_bench.foundation.registry import Registry


class Ranker(ABC):
    """One protocol for every ranker: a split in, one permutation per instance out (batched inside)."""

    kind: ClassVar[str]
    #: whether ``kind:<arg>`` needs an argument (a model name, path or checkpoint)
    needs_arg: ClassVar[bool] = False
    #: whether the ranker takes a ``progress`` option (long-running rankers show a bar)
    shows_progress: ClassVar[bool] = False
    #: an LLM that writes text: its results keep the raw outputs (submit requires them)
    produces_text: ClassVar[bool] = False
    #: offline and seeded: the same split and seed give the same rankings (submit reruns it)
    deterministic: ClassVar[bool] = False
    #: the per-candidate inputs the ranker reads (results.json's ``model.reads``, shown on the board):
    #: ``text`` (item texts, the need line), ``history``, ``retrieval_scores``, ``train_count``
    #: (training popularity), ``train_interactions``, ``item_embeddings``, ``labels`` (the oracle),
    #: and ``shown``: whatever per-candidate columns the need's prompt shows (``recent_count``)
    reads: ClassVar[tuple[str, ...]] = ()
    #: scores do not read the presented order (only ties are broken by position): the position-bias
    #: probe does not re-run it (flexrec_bench.scoring.position_bias)
    order_invariant: ClassVar[bool] = False

    def __init__(self, arg: str | None = None, seed: int = 0, **options):
        if self.needs_arg and not arg:
            raise FlexRecError(f"model {self.kind!r} needs an argument: --model {self.kind}:<name-or-path>")
        if not self.needs_arg and arg:
            raise FlexRecError(f"model {self.kind!r} takes no argument (got {self.kind}:{arg})")
        if options:
            raise FlexRecError(f"model {self.kind!r} does not take option(s): {', '.join(sorted(options))}")
        self.arg = arg
        self.seed = seed

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    @abstractmethod
    def rank(self, split) -> RankResult: ...

    def inputs_read(self, split) -> list[str]:
        """:attr:`reads` for this split, ``shown`` resolved to the need's shown columns."""
        shown = [c for c in split.ranker_columns if c != "retrieval_scores"]
        return sorted({c for r in self.reads for c in (shown if r == "shown" else [r])})

    def info(self) -> dict:
        """Model id, revision and resolved configuration, for the results file."""
        return {"name": self.name, "id": self.arg or self.kind, "revision": None, "config": {"seed": self.seed}}


RANKERS: Registry[type[Ranker]] = Registry("model", entry_point_group="flexrec_bench.rankers")
for _kind, _target in {
    "random": "flexrec_bench.ranking.rankers.simple:RandomRanker",
    "popularity": "flexrec_bench.ranking.rankers.simple:PopularityRanker",
    "oracle": "flexrec_bench.ranking.rankers.simple:OracleRanker",
    "star": "flexrec_bench.ranking.rankers.star:StarRanker",
    "hf": "flexrec_bench.ranking.rankers.hf:HFRanker",
    "vllm": "flexrec_bench.ranking.rankers.vllm:VLLMRanker",
    "openai": "flexrec_bench.ranking.rankers.openai:OpenAIRanker",
    # shipped beside the core (baselines/), found from a source checkout as well as by entry point
    "bert4rec": "baselines.bert4rec.runner:Bert4RecRanker",
}.items():
    RANKERS.register(_kind, lazy=_target)


def make_ranker(model: str, seed: int = 0, **options) -> Ranker:
    """``"star"`` or ``"hf:/path/to/model"`` -> a ranker instance."""
    kind, sep, arg = model.partition(":")
    return RANKERS.get(kind)(arg if sep else None, seed=seed, **check_options(kind, options))


def check_options(kind: str, options: dict) -> dict:
    """The options a ranker of ``kind`` takes, each converted to its type; an unknown name or a value
    of the wrong type is one line. Nothing is loaded, so a command can check before any work."""
    cls = RANKERS.get(kind)
    accepted = accepted_options(cls)
    unknown = sorted(set(options) - accepted) if "options" not in accepted else []
    if unknown:
        from flexrec_bench.foundation.registry import did_you_mean

        raise FlexRecError(f"model {kind!r} does not take option(s) {', '.join(unknown)}; "
                           f"{did_you_mean(unknown[0], sorted(accepted - {'arg', 'seed'}))}")
    from flexrec_bench.foundation.options import convert, init_hints

    hints = init_hints(cls)  # one typed conversion for every -o value, before the ranker sees it
    return {k: convert(v, hints.get(k), "-o", k) if isinstance(v, str) else v for k, v in options.items()}


def accepted_options(cls: type) -> set[str]:
    """Keyword options a ranker class accepts, following ``**options`` up the class hierarchy."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names
