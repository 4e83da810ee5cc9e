"""Numbers reported in the FlexRec paper (Pan et al.), transcribed from its text into
``leaderboard/paper_results.json``: ``reported_in_paper`` (and ``reported_critic_in_paper`` for Table 4).

The paper's tables appear in its text (../shared/paper/flexrec-paper.txt) as pipe-separated rows,
except Table 2, which is one line of space-separated tokens. ``TABLES`` says, for each table,
which lines hold it, its columns (dataset, metric) and its need; :func:`transcribe` reads the rows,
drops each row's citation, names "+ X" rows under Qwen2.5-3B-Instruct as "Qwen2.5-3B-Instruct + X"
and the rows of Tables 7 as "<algorithm> / <variant>". Not transcribed: the "vs Qwen2.5-3B-Instruct"
rows (relative gains computed from other cells, not measurements) and the "—" cells (not run).
Tables 7 and 8 name no dataset and no need; both fields stay empty.

``python -m leaderboard.paper_tables PAPER.txt`` rewrites paper_results.json.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = "Pan et al. (FlexRec), Table {n}"
_METRIC = {"N@5": "ndcg@5", "N@10": "ndcg@10", "N@30": "ndcg@30", "R@5": "recall@5", "P@5": "precision@5",
           "MRR@5": "mrr@5"}
_CRITIC_METRIC = {"MSE": "mse", "MAE": "mae", "Pearson (Mean)": "pearson_mean", "Pearson (Var)": "pearson_var"}
_NUMBER = re.compile(r"(?<![\w.+-])[0-9]+\.[0-9]+(?![\w%])")
_CITATION = re.compile(r"\s*\([^()]*\d{4}[a-z]?\)")
_BASE = "Qwen2.5-3B-Instruct"


@dataclass(frozen=True)
class TableSpec:
    number: int
    lines: tuple[int, int]                  #: first and last line (1-based, inclusive) in the paper text
    columns: tuple[tuple[str, str], ...]    #: (dataset, metric header as printed) per numeric column
    need: str
    algorithms: tuple[str, ...] = ()        #: Table 7: the algorithm column's values


_SPARSE = lambda *m: tuple(("KuaiRec", x) for x in m[:5]) + tuple(("MovieLens-1M", x) for x in m[5:])  # noqa: E731
_FIVE = ("N@5", "N@10", "N@30", "R@5", "MRR@5")

TABLES: dict[int, TableSpec] = {
    1: TableSpec(1, (122, 137), _SPARSE(*_FIVE, "N@5", "N@10", "N@30", "P@5", "MRR@5"), "interest"),
    2: TableSpec(2, (140, 140), _SPARSE(*_FIVE, *_FIVE), "niche"),
    3: TableSpec(3, (154, 168), tuple(("ESCI", m) for m in ("N@5", "N@10", "N@30", "P@5", "R@5")), "search"),
    4: TableSpec(4, (284, 286), tuple(("KuaiRec", m) for m in _CRITIC_METRIC), "interest"),
    6: TableSpec(6, (312, 327), _SPARSE(*_FIVE, *_FIVE), "trend"),
    7: TableSpec(7, (328, 335), tuple(("", m) for m in _FIVE), "", algorithms=("GRPO", "PPO")),
    8: TableSpec(8, (336, 343), tuple(("", m) for m in _FIVE), ""),
    9: TableSpec(9, (346, 357), tuple(("KuaiRec-dense", m) for m in _FIVE), "interest"),
}

#: Table 2's row labels (its line has no separators between label and numbers)
_TABLE2_ROWS = ("BERT4Rec (Sun et al., 2019)", "STAR (Lee et al., 2025)", "GPT-4o", "Qwen2.5-3B-Instruct",
                "Qwen2.5-3B-Instruct + TALLRec (Bao et al., 2023)", "+ Rec-R1 (Lin et al., 2025a)",
                "+ Rank-GRPO (Zhu et al., 2025b)", "+ FlexRec")


def table_lines(text: str, n: int) -> list[str]:
    lo, hi = TABLES[n].lines
    return text.splitlines()[lo - 1: hi]


def _method(label: str) -> str:
    label = _CITATION.sub("", label).strip()
    if label.startswith("+ "):
        return f"{_BASE} {label}"
    if label.startswith(f"{_BASE} + "):
        return label
    return label


def _rows(spec: TableSpec, lines: list[str]) -> list[tuple[str, list[str]]]:
    """(row label, cells) for the rows that hold numbers."""
    if spec.number == 2:
        line = lines[0]
        out, pos = [], 0
        for i, label in enumerate(_TABLE2_ROWS):
            start = line.index(label, pos) + len(label)
            pos = end = line.index(_TABLE2_ROWS[i + 1], start) if i + 1 < len(_TABLE2_ROWS) else line.index(" vs ", start)
            out.append((label, [c for c in line[start:end].split() if _NUMBER.fullmatch(c)]))  # group headers dropped
        return out
    out = []
    algorithm = ""
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not any(_NUMBER.fullmatch(c) or c == "—" for c in cells[1:]):
            continue
        if spec.algorithms:
            if cells[0] in spec.algorithms:
                algorithm, cells = cells[0], cells[1:]
            out.append((f"{algorithm} / {cells[0]}", [c for c in cells[1:] if c]))
        else:
            out.append((cells[0], [c for c in cells[1:] if c]))
    return out


def transcribe(text: str) -> tuple[list[dict], list[dict]]:
    """(reported_in_paper rows, reported_critic_in_paper rows) from the paper's text."""
    results, critic = [], []
    for n, spec in TABLES.items():
        for label, cells in _rows(spec, table_lines(text, n)):
            if label.startswith(("vs ", "% Gain")):
                continue
            if len(cells) != len(spec.columns):
                raise ValueError(f"Table {n}, row {label!r}: {len(cells)} cells, expected {len(spec.columns)}")
            for (dataset, header), cell in zip(spec.columns, cells):
                if cell == "—":
                    continue
                row = {"source": SOURCE.format(n=n), "method": _method(label), "dataset": dataset}
                if n == 4:
                    critic.append({**row, "metric": _CRITIC_METRIC[header], "value": float(cell)})
                else:
                    results.append({**row, "need": spec.need, "metric": _METRIC[header], "value": float(cell)})
    return results, critic


def main(argv: list[str]) -> None:
    import json

    from flexrec_bench.foundation.io import write_json_atomic

    from .schema import PAPER_PATH, PaperResults

    paper = Path(argv[0] if argv else "../shared/paper/flexrec-paper.txt")
    results, critic = transcribe(paper.read_text())
    out = PaperResults.model_validate({"reported_in_paper": results, "reported_critic_in_paper": critic})
    write_json_atomic(PAPER_PATH, json.loads(out.model_dump_json()))
    print(f"{len(results)} result cells and {len(critic)} critic cells written to {PAPER_PATH}")


if __name__ == "__main__":
    main(sys.argv[1:])
