"""``flexrec-bench reproduce``: every table and figure of the FlexRec paper by one command.

The orchestration layer above the trainers (``training``), the baselines (``baselines``) and the
paper's reported numbers (``leaderboard/paper_results.json``): it runs a table's or a figure's
grid, scores every cell with the one evaluator and writes it beside the paper's numbers.
"""

from .config import FIGURES, TABLES, ReproduceConfig
from .cells import cells
from .grid import run_grid
from .report import markdown, paper_numbers

__all__ = ["FIGURES", "TABLES", "ReproduceConfig", "cells", "markdown", "paper_numbers", "run_grid"]
