"""Replays the designers against a measured table (see bench/search_efficiency.py).

The replay itself is :func:`autodistill.search.table.replay`. This script runs it for several
designers, seeds and objective sets, appends every finished run to a JSON-lines file (resumable,
shareable by several processes), and aggregates the runs: per designer and objective set the
mean and median iterations to the first and third distinct student that dominates the baseline
(latency ties within noise; ``*_raw``: by the medians alone, as the paper compares), the
hypervolume after N iterations on the report objectives, and the
suggestion time against the number of completed trials.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
from typing import Any

RUN_FORMAT = 2  # runs of earlier formats (raw-median dominance, one hypervolume) are not reused


def _stats(values: list, cap: int) -> dict[str, Any]:
  """Mean and median with runs that never found it counted as ``cap`` + 1 (a lower bound)."""
  found = [v for v in values if v is not None]
  capped = [v if v is not None else cap + 1 for v in values]
  return {"mean": round(statistics.mean(capped), 2), "median": statistics.median(capped),
          "found_in": f"{len(found)}/{len(values)}", "values": values}


def _key(run: dict) -> tuple:
  return run["designer"], run["seed"], ",".join(run["objectives"])


def aggregate(runs: list[dict], max_iterations: int) -> dict[str, Any]:
  """Per (objectives, designer): iterations to the first/third dominating student, hypervolume
  after each N, suggestion time by completed trials."""
  out: dict[str, Any] = {}
  for objectives in dict.fromkeys(",".join(r["objectives"]) for r in runs):
    per_designer = {}
    for designer in dict.fromkeys(r["designer"] for r in runs):
      mine = [r for r in runs if r["designer"] == designer and ",".join(r["objectives"]) ==
              objectives]
      if not mine:
        continue
      by_count = {}
      for n in (1, 2, 4, 8, 16, 32, 48, 64, 128, 256):
        at = [r["suggest_s"][n - 1] for r in mine if len(r["suggest_s"]) >= n]
        if at:
          by_count[n - 1] = round(statistics.mean(at), 4)
      hv = {n: round(statistics.mean(r["hypervolume"][n] for r in mine), 6)
            for n in mine[0]["hypervolume"]}
      per_designer[designer] = {
          "seeds": len(mine),
          "first_dominating": _stats([r["first_dominating"] for r in mine], max_iterations),
          "third_dominating": _stats([r["third_dominating"] for r in mine], max_iterations),
          "first_dominating_raw": _stats([r["first_dominating_raw"] for r in mine],
                                         max_iterations),
          "third_dominating_raw": _stats([r["third_dominating_raw"] for r in mine],
                                         max_iterations),
          "hypervolume_mean": hv,
          "hypervolume_values": {n: [r["hypervolume"][n] for r in mine] for n in hv},
          "suggest_s_by_completed_trials": by_count}
    out[objectives] = per_designer
  return out


def main(table_path: pathlib.Path, argv) -> None:
  # pylint: disable=import-outside-toplevel
  from autodistill.search import table as table_lib
  from autodistill.search.designers import DESIGNERS
  from autodistill.space import get_space

  parser = argparse.ArgumentParser(description="designer replay")
  parser.add_argument("--designers", default=",".join(DESIGNERS))
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--max-iterations", type=int, default=48)
  parser.add_argument("--hv-after", default="16",
                      help="hypervolume of the feasible trials among the first N, per N (comma)")
  parser.add_argument("--space", default="cpu_demo")
  parser.add_argument("--objectives", default="mlm_loss,latency_ms",
                      help="the search's objectives; several sets separated by ';' (Fig. 4)")
  parser.add_argument("--report-objectives", default="",
                      help="the objectives runs are scored on (default: the first set)")
  parser.add_argument("--runs", default="", help="JSON-lines file of finished runs (resumable)")
  parser.add_argument("--report-only", action="store_true",
                      help="aggregate the runs file without replaying")
  parser.add_argument("--baseline", default="",
                      help="the space's own baseline (default), a student's name, or share:F "
                           "(table.baseline_at_share: beaten by at most F of the table)")
  parser.add_argument("--plot", default="")
  parser.add_argument("--out", default="", help="write the JSON here too")
  args = parser.parse_args(argv)

  space = get_space(args.space)
  try:
    table = table_lib.space_table(table_lib.read_table(table_path), space)
  except ValueError as error:
    raise SystemExit(f"{table_path}: {error} (--build-table)") from None
  objective_sets = [s.split(",") for s in args.objectives.split(";")]
  report_objectives = (args.report_objectives.split(",") if args.report_objectives
                       else objective_sets[0])
  if args.baseline:
    try:
      name = (table_lib.baseline_at_share(table, report_objectives,
                                          float(args.baseline.split(":", 1)[1]))
              if args.baseline.startswith("share:") else args.baseline)
      table = table_lib.with_baseline(table, name)
    except ValueError as error:
      raise SystemExit(f"--baseline={args.baseline}: {error} (a student's name or share:F, "
                       "e.g. share:0.05)") from None
  hv_after = [int(n) for n in args.hv_after.split(",")]
  baseline = next((n for n, r in table.items() if r.is_baseline), None)
  if baseline is None:
    raise SystemExit(f"{table_path}: no baseline row; pass --baseline=NAME or share:F.")
  reference = table_lib.hypervolume_reference(table, report_objectives)
  runs_path = pathlib.Path(args.runs) if args.runs else None
  runs = []
  if runs_path and runs_path.exists():
    runs = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r.get("format") == RUN_FORMAT
            and r.get("report_objectives") == report_objectives
            and r.get("baseline", space.baseline_config().name) == baseline]
  wanted = [(d, seed, ",".join(o)) for o in objective_sets for d in args.designers.split(",")
            for seed in range(args.seeds)]
  have = {_key(r) for r in runs}
  if not args.report_only:
    for designer, seed, objectives in wanted:
      if (designer, seed, objectives) in have:
        continue
      run = table_lib.replay(designer, seed, space, table, objectives.split(","),
                             max_iterations=args.max_iterations, hv_after=hv_after,
                             report_objectives=report_objectives, reference=reference)
      run.update(format=RUN_FORMAT, report_objectives=report_objectives, space=space.name,
                 baseline=baseline)
      run["hypervolume"] = {str(n): v for n, v in run["hypervolume"].items()}
      print(json.dumps({k: v for k, v in run.items() if k not in ("suggest_s", "names")}),
            flush=True)
      runs.append(run)
      if runs_path:
        with runs_path.open("a") as f:
          f.write(json.dumps(run) + "\n")
  runs = [r for r in runs if _key(r) in set(wanted)]
  dominating = table_lib.dominating_baseline(table, report_objectives)
  dominating_raw = table_lib.dominating_baseline(table, report_objectives, noise=False)
  report: dict[str, Any] = {
      "space": space.name, "report_objectives": report_objectives,
      "objective_sets": [",".join(o) for o in objective_sets],
      "students": len(table), "baseline": baseline,
      "baseline_rule": args.baseline or "the space's",
      "dominating_baseline_in_table": len(dominating),
      "dominating_share": round(len(dominating) / len(table), 4),
      "dominating_baseline_by_medians": len(dominating_raw),
      "dominating_share_by_medians": round(len(dominating_raw) / len(table), 4),
      # Uniform sampling without replacement: the expected iteration of the first and third
      # dominating student (a designer cannot need fewer than 1 and 3).
      "uniform_expectation": {
          "first": table_lib.uniform_hit_iteration(len(table), len(dominating), 1),
          "third": table_lib.uniform_hit_iteration(len(table), len(dominating), 3),
          "first_raw": table_lib.uniform_hit_iteration(len(table), len(dominating_raw), 1),
          "third_raw": table_lib.uniform_hit_iteration(len(table), len(dominating_raw), 3)},
      "hypervolume_reference": reference, "hv_after": hv_after,
      "max_iterations": args.max_iterations,
      "by_objectives": aggregate(runs, args.max_iterations)}
  main_set = report["by_objectives"].get(",".join(objective_sets[0]), {})
  if "gp_bandit" in main_set and "random" in main_set:
    for which in ("first", "third", "first_raw", "third_raw"):
      key = f"{which.split('_')[0]}_dominating" + ("_raw" if "raw" in which else "")
      gp, rnd = (main_set[d][key]["mean"] for d in ("gp_bandit", "random"))
      report[f"gp_vs_random_{which}"] = round(gp / rnd, 3)
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  if args.plot:
    _plot(report, args.plot)


def _plot(report, path) -> None:
  # pylint: disable=import-outside-toplevel
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  by = report["by_objectives"][report["objective_sets"][0]]
  designers = list(by)
  first = [by[d]["first_dominating"]["mean"] for d in designers]
  third = [by[d]["third_dominating"]["mean"] for d in designers]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  xs = range(len(designers))
  ax1.bar([x - 0.2 for x in xs], first, 0.4, label="1st dominating baseline")
  ax1.bar([x + 0.2 for x in xs], third, 0.4, label="3rd dominating baseline")
  ax1.set_xticks(list(xs), designers)
  ax1.set_ylabel("iterations (mean over seeds)")
  ax1.legend()
  ax1.set_title(f"{report['space']}: iterations to beat {report['baseline'].split('-')[0]}")
  for d in designers:
    times = by[d]["suggest_s_by_completed_trials"]
    ax2.plot([int(k) for k in times], list(times.values()), marker="o", label=d)
  ax2.set_xlabel("completed trials")
  ax2.set_ylabel("suggestion time (s)")
  ax2.set_xscale("symlog")
  ax2.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
