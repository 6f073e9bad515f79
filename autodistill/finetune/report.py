"""The downstream table of a workdir, like the paper's Tables 3 and 4: one row per model with its
parameters, latency, the score of every task column (x100, as the benchmarks print them) and
their average, as Markdown and CSV.

Columns are the tasks' report columns (``CoLA``, ``MNLI-m``, ``MNLI-mm``, ..., ``SQuAD``,
``BBC``, ``Tweets``), each with its task's score metric (CoLA MCC, MRPC F1, STS-B Spearman,
SQuAD F1, accuracy elsewhere; SQuAD also gets an ``EM`` column as in Table 4). The average is
over the columns that count (GLUE's WNLI does not, as in the paper) and is left empty for a model
that lacks one of them, so averages over different task sets are never compared. A
"majority class" row gives the floor of every classification column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
from typing import Any, Optional, Sequence

RESULT = "result.json"
MAJORITY = "majority class"


def collect_results(root: str | os.PathLike) -> list[dict[str, Any]]:
  """Every fine-tuning ``result.json`` under ``root`` (any depth), sorted by model and task."""
  results = []
  for path in sorted(pathlib.Path(root).rglob(RESULT)):
    try:
      values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
      continue
    if isinstance(values, dict) and {"task", "model", "test", "extra"} <= set(values):
      results.append(values)
  return sorted(results, key=lambda r: (r["model"], r["task"]))


def _columns(results: Sequence[dict[str, Any]]) -> list[tuple[str, str, bool]]:
  """(column, metric, counts towards the average), in first-seen order."""
  columns: dict[str, tuple[str, bool]] = {}
  for r in results:
    metric = r["extra"]["metric"]
    for column in r["test"]:
      columns.setdefault(column, (metric, bool(r["extra"].get("in_average", True))))
      if metric == "f1" and "exact_match" in r["test"][column]:
        columns.setdefault(f"{column} EM", ("exact_match", False))
  return [(c, m, a) for c, (m, a) in columns.items()]


def report_rows(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
  """(header, rows) of the table; scores x100, missing cells None."""
  columns = _columns(results)
  header = ["model", "params (M)", "latency (ms)"] + [c for c, _, _ in columns] + ["avg"]
  by_model: dict[str, dict[str, Any]] = {}
  majority: dict[str, float] = {}
  for r in results:
    row = by_model.setdefault(r["model"], {"params": r["params"], "latency": r.get("latency_ms"),
                                           "scores": {}})
    for column, values in r["test"].items():
      row["scores"][column] = values[r["extra"]["metric"]]
      if f"{column} EM" in [c for c, _, _ in columns]:
        row["scores"][f"{column} EM"] = values.get("exact_match")
    for column, values in (r.get("majority") or {}).items():
      majority[column] = values[r["extra"]["metric"]]
  rows = []
  averaged = [c for c, _, counts in columns if counts]

  def average(scores: dict[str, Any]) -> Optional[float]:
    values = [scores.get(c) for c in averaged]
    if not values or any(v is None or not math.isfinite(v) for v in values):
      return None
    return 100 * sum(values) / len(values)

  for model, row in by_model.items():
    scores = row["scores"]
    rows.append([model, row["params"] / 1e6, row["latency"]]
                + [None if scores.get(c) is None else 100 * scores[c] for c, _, _ in columns]
                + [average(scores)])
  if majority:
    rows.append([MAJORITY, None, None]
                + [100 * majority[c] if c in majority else None for c, _, _ in columns]
                + [average(majority)])
  return header, rows


def _cell(value: Any, digits: int) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.{digits}f}" if math.isfinite(value) else "nan"
  return str(value)


def format_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  digits = [2, 2, 3] + [1] * (len(header) - 3)
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(_cell(v, d) for v, d in zip(row, digits)) + " |")
  return "\n".join(lines) + "\n"


def format_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                     for v in row])
  return out.getvalue()


def write_report(root: str | os.PathLike, target: Optional[str | os.PathLike] = None,
                 log=print) -> Optional[tuple[pathlib.Path, pathlib.Path]]:
  """Writes ``report.md`` and ``report.csv`` for every fine-tuned model under ``root`` (default
  target: ``root`` itself). Returns their paths, or None when there is nothing to report."""
  results = collect_results(root)
  if not results:
    log(f"no fine-tuning results under {root}")
    return None
  header, rows = report_rows(results)
  target = pathlib.Path(target or root)
  target.mkdir(parents=True, exist_ok=True)
  markdown, table = target / "report.md", target / "report.csv"
  markdown.write_text(format_markdown(header, rows), encoding="utf-8")
  table.write_text(format_csv(header, rows), encoding="utf-8")
  log(format_markdown(header, rows).rstrip())
  return markdown, table
