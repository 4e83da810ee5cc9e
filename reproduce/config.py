"""The options of ``flexrec-bench reproduce`` (``ReproduceConfig``) and the grids they can name.

A light module (the standard library and ``flexrec_bench.foundation.errors``): the CLI derives the command's
options from these fields at import time without loading the trainers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexrec_bench.foundation.errors import FlexRecError

TABLES = (1, 2, 3, 6, 7, 8, 9)
FIGURES = (2, 3, 4)
JOINT_NEEDS = ("interest", "niche", "trend")
#: the need a table tests on (Tables 2 and 6: trained on interest, tested on another need)
TEST_NEED = {1: "interest", 2: "niche", 6: "trend", 3: "search", 9: "interest"}


@dataclass
class ReproduceConfig:
    """Options of ``flexrec-bench reproduce``."""

    model: str                                  #: base LLM of every trained row (Hugging Face name or local path)
    table: int | None = None                    #: the paper's table whose grid to run: 1, 2, 3, 6, 7, 8 or 9
    figure: int | None = None                   #: the paper's figure to run: 2 (joint training), 3 (reward designs) or 4 (reward signals)
    dataset: str = "ml-100k"                    #: built dataset
    data: str = "data"                          #: the --out of build-data
    out: str = "benchmarks/out/reproduce"       #: output folder (runs/, results/ and table<N>/ or figure<N>/ with .md, .png, .json)
    need: str | None = None                     #: the need trained cells learn (default: the dataset's first: interest; search on ESCI)
    steps: int | None = None                    #: RL steps per trained cell (default: the configs')
    test_limit: int | None = None               #: first N test instances (default: all)
    bootstrap: int = 1000                       #: bootstrap resamples for the 95% CIs (0 or >= 100)
    seed: int = 0                               #: the first training seed (and the evaluation's); trained cells use seed, seed + 1, ...
    seeds: int = 1                              #: training runs per trained cell
    critic: str | None = None                   #: Table 8 / Figure 4: a trained critic (default: train one)
    openai_model: str | None = None             #: the GPT-4o row's model (OpenAI-compatible)
    backend: str = "local"                      #: local only: on verl, train each cell with `flexrec-bench train --backend verl`
    miniature: bool = False                     #: the CPU smoke preset: 2 steps, tiny batches, a few instances (every cell runs; the numbers mean nothing)
    preset: str | None = None                   #: training preset for every trained cell (e.g. miniature: the toy dataset's, benchmarks/miniature.py)
    sets: dict[str, str] = field(default_factory=dict)  #: training option for every cell, key=value (repeatable)
    options: dict[str, str] = field(default_factory=dict)  #: evaluation option for every LLM cell (hf:, openai:), key=value (repeatable), e.g. constrained=true
    jobs: int = 1                               #: cells trained and scored at once, each in its own process (a GPU with room for several runs; on a 2-core CPU keep 1); the table is then assembled from their finished runs and results
    rows: str | None = None                     #: comma-separated rows to run, by their names' words (e.g. rec-r1,causalswap); the base model runs with any trained row (default: every row)

    @property
    def kind(self) -> tuple[str, int]:
        if (self.table is None) == (self.figure is None):
            raise FlexRecError("reproduce needs exactly one of --table N or --figure N")
        if self.table is not None and self.table not in TABLES:
            raise FlexRecError(f"--table {self.table}: the tables are {', '.join(map(str, TABLES))} (Table 4 is the "
                               f"critic's: `flexrec-bench train-critic` writes it; Table 5 is its architecture)")
        if self.figure is not None and self.figure not in FIGURES:
            raise FlexRecError(f"--figure {self.figure}: the figures are {', '.join(map(str, FIGURES))} "
                               f"(Figure 1 is the method's diagram)")
        if self.seeds < 1:
            raise FlexRecError(f"--seeds must be >= 1, got {self.seeds}")
        if self.jobs < 1:
            raise FlexRecError(f"--jobs must be >= 1, got {self.jobs}")
        return ("table", self.table) if self.table is not None else ("figure", self.figure)

    @property
    def name(self) -> str:
        kind, n = self.kind
        return f"{kind}{n}"

    @property
    def train_need(self) -> str:
        """--need, else the dataset's first need (interest on MovieLens and KuaiRec, search on ESCI)."""
        from flexrec_bench.datasets import DATASETS

        return self.need or DATASETS.get(self.dataset).default_needs[0]

    @property
    def test_needs(self) -> tuple[str, ...]:
        kind, n = self.kind
        if kind == "figure" and n == 2:
            return JOINT_NEEDS
        if kind == "table" and n in (2, 6):  # generalisation: trained on --need, tested on the table's need
            return (TEST_NEED[n],)
        return (self.train_need,)
