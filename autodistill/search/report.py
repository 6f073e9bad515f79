"""What a search leaves in its workdir: the trials table, the Pareto front, a plot, a summary.

:func:`write_report` writes, next to each other:

* ``trials.csv``: one row per trial (factors as ``factor.<name>`` columns), for spreadsheets;
* ``trials.json``: the :class:`~autodistill.search.records.TrialRecord` of each trial, lossless
  (:func:`load_trials` reads it back);
* ``pareto_front.json``: the objectives, the baseline, the front and the trials that dominate
  the baseline;
* ``pareto_front.png``: the paper's Figure 4 look, accuracy against latency with the front and
  the baseline marked.

Every file is written through a temporary name and an atomic rename, so a reader (or a search
killed mid-write) never sees a half-written file. :func:`summary_table` formats the same
information for the terminal.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pathlib
from typing import Any, Callable, Optional, Sequence

from autodistill import files
from autodistill.search.pareto import (
    ObjectiveLike,
    as_objectives,
    baseline_record,
    difference,
    dominating_baseline,
    feasible_records,
    latency_noise_ms,
    latency_ties,
    metric_noise,
    metric_vector,
    pareto_front,
    ranked_front,
)
from autodistill.search.settings import DEFAULT_OBJECTIVES, Objective, get_objectives
from autodistill.search.records import COMPLETED, INFEASIBLE, TIME_PARTS, TrialRecord

PathLike = str | os.PathLike

TRIALS_CSV = "trials.csv"
TRIALS_JSON = "trials.json"
FRONT_JSON = "pareto_front.json"
PLOT_PNG = "pareto_front.png"

FACTOR_PREFIX = "factor."
SECONDS_PREFIX = "seconds."

# How each metric is shown: plot axis label and scale, table header, scale and format. Accuracy
# is a percentage on the plot (as in the paper's Figure 4) and a fraction in the table (as in
# the records and trials.csv).
_DISPLAY: dict[str, tuple[str, float, str, float, str]] = {
    "mlm_accuracy": ("MLM accuracy (%)", 100.0, "MLM acc", 1.0, "{:.4f}"),
    "nsp_accuracy": ("NSP accuracy (%)", 100.0, "NSP acc", 1.0, "{:.4f}"),
    "mlm_loss": ("Held-out MLM loss (nats)", 1.0, "MLM loss", 1.0, "{:.4f}"),
    "relation_loss": ("Held-out relation loss (SuperLM, nats)", 1.0, "relation", 1.0,
                      "{:.4f}"),
    "latency_ms": ("Latency (ms, batch 1)", 1.0, "latency ms", 1.0, "{:.3f}"),
    "params": ("Parameters (M)", 1e-6, "params (M)", 1e-6, "{:.2f}"),
    "flops": ("FLOPs (G, batch 1)", 1e-9, "GFLOPs", 1e-9, "{:.3f}"),
}

# (winner, baseline, metric name) -> the paired standard error of their difference, or None.
PairedErrors = Callable[[TrialRecord, TrialRecord, str], Optional[float]]


def _display(name: str) -> tuple[str, float, str, float, str]:
  return _DISPLAY.get(name, (name.replace("_", " "), 1.0, name, 1.0, "{:.4g}"))


def _by_trial(records: Sequence[TrialRecord]) -> list[TrialRecord]:
  return sorted(records, key=lambda r: r.trial_id)


def factor_names(records: Sequence[TrialRecord]) -> list[str]:
  """Every factor of the records, in order of first appearance (trial-id order)."""
  names: dict[str, None] = {}
  for record in _by_trial(records):
    names.update(dict.fromkeys(record.factors))
  return list(names)


def _cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, (list, tuple, dict)):
    return json.dumps(value, default=files.json_default)
  if hasattr(value, "item"):  # NumPy scalar
    value = value.item()
  return repr(value) if isinstance(value, float) else str(value)


def trials_columns(records: Sequence[TrialRecord]) -> list[str]:
  """Columns of ``trials.csv``: the record's fields in order, ``factors`` and ``seconds``
  expanded in place."""
  columns = []
  for field in dataclasses.fields(TrialRecord):
    if field.name == "factors":
      columns.extend(FACTOR_PREFIX + name for name in factor_names(records))
    elif field.name == "seconds":
      columns.extend(SECONDS_PREFIX + part for part in TIME_PARTS)
    else:
      columns.append(field.name)
  return columns


def write_trials_table(records: Sequence[TrialRecord], directory: PathLike
                       ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes ``trials.csv`` and ``trials.json`` in ``directory`` (trial-id order).

  The CSV has one row per trial: every scalar field of :class:`TrialRecord`, with the factors
  flattened to ``factor.<name>`` columns (in order of first appearance) where ``factors`` would
  be, and the time breakdown to ``seconds.<part>`` columns. Missing values are empty cells, floats are written with ``repr`` (they read back exactly),
  booleans as ``True``/``False``. The JSON is the list of :meth:`TrialRecord.to_dict`.

  Returns:
    (csv_path, json_path).
  """
  directory = pathlib.Path(directory)
  records = _by_trial(records)
  columns = trials_columns(records)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for record in records:
    row = {}
    for column in columns:
      if column.startswith(FACTOR_PREFIX):
        row[column] = _cell(record.factors.get(column[len(FACTOR_PREFIX):]))
      elif column.startswith(SECONDS_PREFIX):
        row[column] = _cell(record.seconds.get(column[len(SECONDS_PREFIX):]))
      else:
        row[column] = _cell(getattr(record, column))
    writer.writerow(row)
  csv_path = files.write_text(directory / TRIALS_CSV, buffer.getvalue())
  json_path = files.write_text(directory / TRIALS_JSON, json.dumps(
      [r.to_dict() for r in records], indent=2, default=files.json_default) + "\n")
  return csv_path, json_path


def load_trials(path: PathLike) -> list[TrialRecord]:
  """The records of a ``trials.json`` (or of the directory holding one)."""
  path = pathlib.Path(path)
  if path.is_dir():
    path = path / TRIALS_JSON
  return [TrialRecord.from_dict(values) for values in files.read_json(
      path, fix="rebuild it from the study with `autodistill report`")]


def _objective_dicts(objectives: Sequence[Objective]) -> list[dict[str, str]]:
  return [{"name": o.name, "goal": o.goal} for o in objectives]


def write_front(records: Sequence[TrialRecord], directory: PathLike,
                objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES) -> pathlib.Path:
  """Writes ``pareto_front.json``: the front and the trials that dominate the baseline.

  Keys: ``objectives`` (name and goal of each), ``num_trials``, ``num_feasible``, ``baseline``
  (the baseline's record, or null), ``front`` (records, in :func:`pareto_front`'s order),
  ``front_trial_ids``, ``dominating_baseline`` (records, trial-id order) and
  ``dominating_baseline_trial_ids``.
  """
  objectives = as_objectives(objectives)
  front = pareto_front(records, objectives)
  beating = dominating_baseline(records, objectives)
  baseline = baseline_record(records)
  content = {
      "objectives": _objective_dicts(objectives),
      "num_trials": len(records),
      "num_feasible": len(feasible_records(records, objectives)),
      "baseline": None if baseline is None else baseline.to_dict(),
      "front_trial_ids": [r.trial_id for r in front],
      "dominating_baseline_trial_ids": [r.trial_id for r in beating],
      "front": [r.to_dict() for r in front],
      "dominating_baseline": [r.to_dict() for r in beating],
  }
  return files.write_text(pathlib.Path(directory) / FRONT_JSON,
                            json.dumps(content, indent=2, default=files.json_default) + "\n")


def _finite(value: Optional[float]) -> bool:
  return value is not None and not math.isnan(value)


def plot_search(records: Sequence[TrialRecord], path: PathLike,
                objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES,
                title: Optional[str] = None) -> pathlib.Path:
  """Plots the search as a PNG (paper Figure 4): the trials, the Pareto front and the baseline.

  The first objective is the y-axis and the second the x-axis (by default MLM accuracy in %
  against batch-1 latency in ms); with more objectives only the first two are plotted, and the
  front drawn is the two-objective front. With a single objective, the x-axis is the trial id.
  Feasible trials are grey dots, the front a line with markers (labelled with trial ids),
  trials that dominate the baseline are circled, and the baseline is a star. Infeasible trials
  are small ``x`` markers: at their metrics where both are known, on the bottom edge where only
  the x metric (e.g. latency) is. Error bars show each feasible trial's measurement noise
  (:func:`~autodistill.search.pareto.metric_noise`) where its record has it. Works with no
  feasible trial and without a baseline.

  Returns:
    ``path``.
  """
  # Imported here: matplotlib costs a second to import and only plotting needs it. A bare
  # Figure with the Agg canvas touches neither pyplot's global state nor a display.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  objectives = as_objectives(objectives)[:2]
  y_objective = objectives[0]
  x_name = objectives[1].name if len(objectives) > 1 else "trial_id"
  y_label, y_scale = _display(y_objective.name)[:2]
  if x_name == "trial_id":
    x_label, x_scale = "Trial", 1.0
  else:
    x_label, x_scale = _display(x_name)[:2]

  def xy(group: Sequence[TrialRecord]) -> tuple[list[float], list[float]]:
    return ([float(getattr(r, x_name)) * x_scale for r in group],
            [r.metric(y_objective.name) * y_scale for r in group])

  feasible = feasible_records(records, objectives)
  front = pareto_front(records, objectives)
  front_ids = {r.trial_id for r in front}
  beating = dominating_baseline(records, objectives)
  baseline = baseline_record(records)
  if baseline is not None and not all(_finite(v) for v in metric_vector(baseline, objectives)):
    baseline = None

  fig = Figure(figsize=(7.0, 5.0), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  # Error bars: each measurement's noise (pareto.metric_noise), where the records have it.
  noisy = [r for r in feasible if x_name != "trial_id"]
  if noisy:
    def err(name: str, scale: float) -> list[float]:
      return [(metric_noise(r, name) or 0.0) * scale for r in noisy]
    ax.errorbar(*xy(noisy), xerr=err(x_name, x_scale), yerr=err(y_objective.name, y_scale),
                fmt="none", ecolor="0.75", elinewidth=0.8, capsize=2, zorder=1,
                label="measurement noise")
  others = [r for r in feasible if r.trial_id not in front_ids]
  if others:
    ax.scatter(*xy(others), s=18, color="0.6", alpha=0.8, zorder=2,
               label=f"feasible trials ({len(feasible)})")
  if front:
    fx, fy = xy(front)
    ax.plot(fx, fy, "-o", color="tab:red", markersize=6, linewidth=1.5, zorder=4,
            label=f"Pareto front ({len(front)})")
    for x, y, record in zip(fx, fy, front):
      ax.annotate(f"#{record.trial_id}", (x, y), textcoords="offset points", xytext=(4, 4),
                  fontsize=7, color="tab:red")
  if beating:
    ax.scatter(*xy(beating), s=110, facecolors="none", edgecolors="tab:green", linewidths=1.2,
               zorder=5, label=f"dominate baseline ({len(beating)})")
  infeasible = [r for r in records if r.status == INFEASIBLE
                and (x_name == "trial_id" or _finite(r.metric(x_name)))]
  both = [r for r in infeasible if _finite(r.metric(y_objective.name))]
  x_only = [r for r in infeasible if not _finite(r.metric(y_objective.name))]
  infeasible_label = f"infeasible ({len(infeasible)})"
  if both:
    ax.scatter(*xy(both), marker="x", s=16, color="tab:orange", zorder=3, label=infeasible_label)
    infeasible_label = None
  if x_only:  # no y value: a rug on the bottom edge (x in data, y in axes coordinates)
    rug = [float(getattr(r, x_name)) * x_scale for r in x_only]
    ax.scatter(rug, [0.02] * len(rug), marker="x", s=16, color="tab:orange", zorder=3,
               clip_on=False, transform=ax.get_xaxis_transform(), label=infeasible_label)
    ax.dataLim.update_from_data_x(rug, ignore=False)  # autoscaling skips non-data transforms
    ax.autoscale_view()
  if baseline is not None:
    bx, by = xy([baseline])
    ax.scatter(bx, by, marker="*", s=260, color="tab:blue", edgecolors="black", linewidths=0.6,
               zorder=6, label=f"baseline {baseline.name}".rstrip())
    ax.annotate("baseline", (bx[0], by[0]), textcoords="offset points", xytext=(6, -12),
                fontsize=8, color="tab:blue")
  if not feasible:
    ax.text(0.5, 0.95, "no feasible trials yet", transform=ax.transAxes, ha="center",
            va="top", color="0.4")
  ax.set_xlabel(x_label)
  ax.set_ylabel(y_label)
  num_infeasible = sum(r.status == INFEASIBLE for r in records)
  ax.set_title(title or f"Search: {len(records)} trials, {len(feasible)} feasible, "
               f"{num_infeasible} infeasible", fontsize=10)
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  return files.atomic_write(pathlib.Path(path), lambda tmp: fig.savefig(tmp, format="png"))


def _format(value: Any, name: str) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  _, _, _, scale, spec = _display(name)
  return spec.format(float(value) * scale)


def summary_table(records: Sequence[TrialRecord],
                  objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES,
                  max_rows: int = 20, paired: Optional[PairedErrors] = None) -> str:
  """A fixed-width table of the trials for the terminal.

  The first line counts trials, feasible and infeasible ones, those on the front and those that
  dominate the baseline. Latencies are compared within their measured noise: a last line names
  the front (and baseline) trials whose latencies tie. Rows: front rows first (in :func:`pareto_front`'s order), then the rest
  by trial id, at most ``max_rows`` of them (a last line says how many were left out). Column
  ``front`` holds ``*`` for the front; column ``vs base`` holds ``beats`` for a trial that
  dominates the baseline and ``base`` for the baseline itself. Objectives other than params,
  latency and the accuracies get a column of their own.
  """
  objectives = as_objectives(objectives)
  front = pareto_front(records, objectives)
  front_ids = {r.trial_id for r in front}
  beating_ids = {r.trial_id for r in dominating_baseline(records, objectives)}
  baseline = baseline_record(records)
  num_feasible = len(feasible_records(records, objectives))
  num_infeasible = sum(r.status == INFEASIBLE for r in records)
  num_active = sum(r.status not in (COMPLETED, INFEASIBLE) for r in records)
  goals = ", ".join(f"{o.name} {o.goal[:3]}" for o in objectives)
  header = (f"{len(records)} trials: {num_feasible} feasible, {num_infeasible} infeasible"
            + (f", {num_active} active" if num_active else "")
            + f"; {len(front)} on the Pareto front ({goals}); ")
  header += (f"{len(beating_ids)} dominate the baseline (trial {baseline.trial_id}"
             f"{' ' + baseline.name if baseline.name else ''})" if baseline is not None
             else "no completed baseline")

  metrics = ["params", "latency_ms", "mlm_accuracy", "nsp_accuracy"]
  metrics += [o.name for o in objectives if o.name not in metrics]
  columns = (["trial", "name"] + [_display(m)[2] for m in metrics]
             + ["status", "front", "vs base"])
  ordered = front + [r for r in _by_trial(records) if r.trial_id not in front_ids]
  rows = []
  for record in ordered[:max(max_rows, 0)]:
    vs_base = ("base" if baseline is not None and record.trial_id == baseline.trial_id
               else "beats" if record.trial_id in beating_ids else "")
    rows.append([str(record.trial_id), record.name or "-"]
                + [_format(getattr(record, m, None), m) for m in metrics]
                + [record.status, "*" if record.trial_id in front_ids else "", vs_base])
  widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
  left = {1, len(columns) - 3}  # name and status are left-aligned, the rest right-aligned

  def line(cells: Sequence[str]) -> str:
    return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

  lines = [header, line(columns), line(["-" * w for w in widths])]
  lines += [line(row) for row in rows]
  if len(ordered) > len(rows):
    lines.append(f"... {len(ordered) - len(rows)} more trials")
  if any(o.name == "latency_ms" for o in objectives):
    ties = latency_ties(front + ([baseline] if baseline and baseline not in front else []))
    if ties:
      lines.append("latency ties (a difference within the measured noise, counted as equal): "
                   + ", ".join(f"#{a.trial_id} {_noisy(a)} = #{b.trial_id} {_noisy(b)}"
                               for a, b in ties))
  lines += versus_baseline(records, objectives, paired)
  return "\n".join(lines)


def versus_baseline(records: Sequence[TrialRecord],
                    objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES,
                    paired: Optional[PairedErrors] = None) -> list[str]:
  """The search's winner (:func:`~autodistill.search.pareto.ranked_front`) against the baseline:
  per objective, then MLM accuracy and latency if they are not objectives, both values, the
  difference and whether it is beyond the noise of the measurement
  (:func:`~autodistill.search.pareto.difference`). Empty without a completed baseline, or when
  the baseline is the winner.

  ``paired(winner, baseline, name)``, where given, returns the paired standard error of an
  accuracy or loss difference over the same held-out predictions (or None: the unpaired rule
  applies); the line then says "paired"."""
  objectives = as_objectives(objectives)
  baseline, front = baseline_record(records), ranked_front(records, objectives)
  if baseline is None or not front or front[0].trial_id == baseline.trial_id:
    return []
  winner = front[0]
  lines = [f"winner #{winner.trial_id} {winner.name} against the baseline "
           f"#{baseline.trial_id} {baseline.name}:"]
  names = [o.name for o in objectives]
  names += [n for n in ("mlm_accuracy", "latency_ms") if n not in names]
  for name in names:
    se = paired(winner, baseline, name) if paired and name != "latency_ms" else None
    diff = difference(winner, baseline, name, paired_se=se)
    if diff is None:
      continue
    _, _, label, scale, spec = _display(name)
    if name.endswith("accuracy"):  # points of percentage
      values = f"{diff.value:.2%} vs {diff.reference:.2%}"
      delta, unit, noise = 100 * diff.delta, " points", diff.noise and 100 * diff.noise
    else:
      values = f"{spec.format(diff.value * scale)} vs {spec.format(diff.reference * scale)}"
      delta, unit, noise = diff.delta * scale, "", diff.noise and diff.noise * scale
    verdict = ("noise unknown" if diff.beyond_noise is None else
               f"{'paired ' if se is not None else ''}noise ±{noise:.3g}{unit}: "
               + ("beyond it" if diff.beyond_noise else "within it, a tie"))
    lines.append(f"  {label}: {values}, {delta:+.3g}{unit} ({verdict})")
  return lines


def _noisy(record: TrialRecord) -> str:
  return f"{record.latency_ms:.3f} ± {latency_noise_ms(record):.3f} ms"


def write_report(records: Sequence[TrialRecord], directory: PathLike,
                 objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES,
                 title: Optional[str] = None) -> dict[str, str]:
  """Writes the trials table, the front and the plot in ``directory``.

  Returns:
    The paths by kind: ``csv``, ``json`` (trials), ``front`` and ``plot``.
  """
  directory = pathlib.Path(directory)
  csv_path, json_path = write_trials_table(records, directory)
  front_path = write_front(records, directory, objectives)
  plot_path = plot_search(records, directory / PLOT_PNG, objectives, title=title)
  return {"csv": str(csv_path), "json": str(json_path), "front": str(front_path),
          "plot": str(plot_path)}


def recommend(records: Sequence[TrialRecord], budgets_ms: Sequence[float],
              objectives: Sequence[str] = DEFAULT_OBJECTIVES) -> list[dict[str, Any]]:
  """For each latency budget, the best student found within it (KD-NAS's "recommends
  architectures suitable to various latency budgets").

  Within a budget: a feasible trial whose median latency is at most the budget (the median, not
  a noise band: a budget is a hard limit a user sets). Best: by the search's first objective
  that is not latency (lower ``mlm_loss``, higher ``mlm_accuracy``, ...), ties to the faster.
  A budget nothing fits gets ``name`` None.
  """
  quality = next((o for o in get_objectives(objectives) if o.name != "latency_ms"),
                 get_objectives(["mlm_loss"])[0])
  sign = 1.0 if quality.goal == "minimize" else -1.0
  rows = []
  for budget in budgets_ms:
    within = [r for r in records if r.feasible and _finite(r.latency_ms)
              and r.latency_ms <= budget and _finite(r.metric(quality.name))]
    row: dict[str, Any] = {"budget_ms": budget, "objective": quality.name, "name": None}
    if within:
      best = min(within, key=lambda r: (sign * r.metric(quality.name), r.latency_ms))
      row.update(trial_id=best.trial_id, name=best.name, latency_ms=best.latency_ms,
                 params=best.params, mlm_loss=best.mlm_loss, mlm_accuracy=best.mlm_accuracy,
                 candidates=len(within))
    rows.append(row)
  return rows


def recommend_table(rows: Sequence[dict[str, Any]]) -> str:
  """:func:`recommend`'s rows as a terminal table."""
  lines = [f"{'budget ms':>9}  {'trial':>5}  {'name':<52}  {'latency ms':>10}  "
           f"{'params (M)':>10}  {'MLM loss':>8}  {'MLM acc':>7}"]
  for row in rows:
    if row["name"] is None:
      lines.append(f"{row['budget_ms']:>9.3f}  {'-':>5}  no student of the search within it")
      continue
    lines.append(f"{row['budget_ms']:>9.3f}  {row['trial_id']:>5}  {row['name']:<52}  "
                 f"{row['latency_ms']:>10.3f}  {(row['params'] or 0) / 1e6:>10.2f}  "
                 f"{_format(row['mlm_loss'], 'mlm_loss'):>8}  "
                 f"{_format(row['mlm_accuracy'], 'mlm_accuracy'):>7}")
  return "\n".join(lines)
