"""The paper's tables from evaluation results (``train_siamese.py report``).

A *cell* is one evaluation: a split's model on the background or the one-shot classes,
k references, real or random boxes (``Cell``); its result is what ``evaluate --output``
writes (RunsSummary.to_dict(): per statistic each run's value, mean and interval). The
report evaluates the cells it has no result for, or reads them (``evaluate --merge``
output named ``<cell>.json``), then writes:

- table2.md / .json: rows background / one-shot / random boxes / k-shot, each for boxes
  and masks; columns the splits and their mean (AP50 %, mean [95% interval]);
- table1.md / .json: the paper's summary table (80 classes with --full, the split means).

The mean column is the mean of the splits' run means; its interval comes from the runs
averaged over the splits (run r of every split, averaged), as a t-interval.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from siamese_mrcnn.runs import confidence_interval

#: (eval type, column label)
KINDS = (("bbox", "boxes"), ("segm", "masks"))


@dataclass(frozen=True)
class Cell:
    """One evaluation of the report."""

    split: str          # '1'..'4' or 'full'
    classes: str        # 'background' | 'one-shot' | 'all'
    shots: int = 1
    random: bool = False

    @property
    def name(self) -> str:
        """The result's file name (without .json), e.g. s1_one-shot_1shot_random."""
        prefix = "full" if self.split == "full" else f"s{self.split}"
        return f"{prefix}_{self.classes}_{self.shots}shot" + ("_random" if self.random else "")


def report_cells(splits: Sequence[str], shots: Sequence[int], full: bool) -> list[Cell]:
    """Every cell of the two tables, in the order they are evaluated."""
    cells = []
    for split in splits:
        cells += [Cell(split, "background"), Cell(split, "one-shot"),
                  Cell(split, "one-shot", random=True)]
        cells += [Cell(split, "one-shot", shots=k) for k in shots if k != 1]
    if full:
        cells.append(Cell("full", "all"))
    return cells


def ap50_runs(result: dict, eval_type: str) -> Optional[np.ndarray]:
    """Each run's AP50 of a cell's result, or None when it has no such eval type."""
    stats = result.get("stats", {}).get(eval_type)
    return None if stats is None else np.asarray(stats["AP50"]["runs"], dtype=float)


def result_problem(result: Any) -> Optional[str]:
    """What keeps build_tables from reading a cell's result (parsed JSON), or None: it
    must be an object whose "stats" give, per eval type, AP50 "runs" (numbers)."""
    stats = result.get("stats") if isinstance(result, dict) else None
    if not isinstance(stats, dict):
        return "not an evaluate result (expected an object with 'stats')"
    for eval_type, value in stats.items():
        ap50 = value.get("AP50") if isinstance(value, dict) else None
        runs = ap50.get("runs") if isinstance(ap50, dict) else None
        if not (isinstance(runs, list) and runs and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in runs)):
            return (f"stats.{eval_type}.AP50.runs: expected a list of numbers, one per "
                    f"run, got {str(runs)[:60]}")
    return None


def summarize(runs: np.ndarray, confidence: float = 0.95) -> dict:
    mean, half = confidence_interval(runs, confidence)
    return {"mean": mean, "low": mean - half, "high": mean + half,
            "runs": [float(v) for v in runs]}


def cell_value(result: Optional[dict], eval_type: str) -> Optional[dict]:
    """summarize() of a cell's AP50 runs; None without the cell or the eval type."""
    runs = None if result is None else ap50_runs(result, eval_type)
    return None if runs is None else summarize(runs)


def split_mean(results: Sequence[dict], eval_type: str) -> Optional[dict]:
    """The mean column: the splits' runs averaged run by run, then a t-interval.
    None when a result lacks the eval type; ValueError when the run counts differ."""
    runs = [ap50_runs(r, eval_type) for r in results]
    if not runs or any(r is None for r in runs):
        return None
    if len({len(r) for r in runs}) != 1:
        raise ValueError("the splits' results have different numbers of runs "
                         f"({[len(r) for r in runs]}); evaluate them with the same --runs")
    return summarize(np.mean(np.stack(runs), axis=0))


def cell_text(value: Optional[dict]) -> str:
    """'15.3 [14.1, 16.5]' (AP50 in %), or n/a."""
    if value is None or value["mean"] < 0:
        return "n/a"
    return (f"{100 * value['mean']:.1f} [{100 * value['low']:.1f}, "
            f"{100 * value['high']:.1f}]")


def table_rows(shots: Sequence[int]) -> list[tuple]:
    """Table 2's rows: (label, classes, k, random boxes)."""
    return ([("Siamese, background", "background", 1, False),
             ("Siamese, one-shot", "one-shot", 1, False),
             ("Random boxes, one-shot", "one-shot", 1, True)]
            + [(f"Siamese {k}-shot, one-shot", "one-shot", k, False)
               for k in shots if k != 1])


def build_tables(results: dict, splits: Sequence[str], shots: Sequence[int],
                 full: bool) -> dict:
    """{"table1": [...rows], "table2": [...rows]} from {cell name: result}; a cell
    without a result is None (n/a), and so is a mean over splits that lacks one."""
    rows2 = []
    for label, classes, k, random in table_rows(shots):
        cells = [results.get(Cell(split, classes, k, random).name) for split in splits]
        for eval_type, kind in KINDS:
            values = {f"S{split}": cell_value(cell, eval_type)
                      for split, cell in zip(splits, cells)}
            values["mean"] = (split_mean(cells, eval_type)
                              if all(c is not None for c in cells) else None)
            rows2.append({"row": label, "kind": kind, "eval_type": eval_type,
                          "values": values})
    rows1 = []
    full_result = results.get(Cell("full", "all").name) if full else None
    if full_result is not None:
        rows1.append({"row": "Siamese, all classes (full model)",
                      **{kind: cell_value(full_result, t) for t, kind in KINDS}})
    for row in rows2:
        if row["kind"] == "boxes":
            rows1.append({"row": f"{row['row']}, mean of the splits",
                          "boxes": row["values"]["mean"]})
        else:
            rows1[-1]["masks"] = row["values"]["mean"]
    return {"table1": rows1, "table2": rows2}


def markdown(tables: dict, splits: Sequence[str]) -> dict:
    """{"table1": text, "table2": text}: Markdown tables."""
    head2 = ["", "", *[f"S{s}" for s in splits], "mean"]
    lines2 = ["| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for row in tables["table2"]:
        cells = [cell_text(row["values"][c]) for c in head2[2:]]
        lines2.append(f"| {row['row']} | {row['kind']} | " + " | ".join(cells) + " |")
    lines1 = ["| | detection (boxes) | segmentation (masks) |", "|---|---|---|"]
    for row in tables["table1"]:
        lines1.append(f"| {row['row']} | {cell_text(row.get('boxes'))} | "
                      f"{cell_text(row.get('masks'))} |")
    note = "\nAP50 in %, mean [95% interval] over the evaluation runs.\n"
    return {"table1": "\n".join(lines1) + "\n" + note, "table2": "\n".join(lines2) + "\n" + note}


def write_tables(tables: dict, splits: Sequence[str], out_dir: str) -> dict:
    """table1/table2 .md and .json in out_dir (each written to a temporary name, then
    renamed). Returns the paths."""
    from siamese_mrcnn.analysis import save_json, write_atomic

    texts = markdown(tables, splits)
    paths = {}
    for name in ("table1", "table2"):
        paths[f"{name}_md"] = write_atomic(os.path.join(out_dir, f"{name}.md"), texts[name])
        paths[f"{name}_json"] = save_json(tables[name], os.path.join(out_dir, f"{name}.json"))
    return paths


__all__ = ["Cell", "report_cells", "table_rows", "build_tables", "cell_value", "markdown",
           "write_tables", "split_mean", "cell_text", "KINDS"]
