"""Replays the designers against a measured table (see bench/search_efficiency.py)."""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
from typing import Any, Optional


def load_table(path: pathlib.Path) -> dict[str, dict[str, Any]]:
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return {row["name"]: row for row in rows}


def replay(designer: str, seed: int, space, table, objectives, max_iterations: int,
           hv_after: int, reference) -> dict[str, Any]:
  from vizier import pyvizier as vz

  from autodistill.search import designers, pareto
  from autodistill.search import problem as problem_lib

  problem = problem_lib.problem_statement(space, [o.name for o in objectives])
  baseline = table[space.baseline_config().name]
  base_vec = [baseline[o.name] for o in objectives]
  completed: list[vz.Trial] = []
  rows: list[Optional[list[float]]] = []
  keys: list[str] = []
  suggest_s: list[float] = []
  for iteration in range(1, max_iterations + 1):
    start = time.perf_counter()
    suggestion = designers.suggest(designer, problem, completed, [], seed=seed, count=1)[0]
    suggest_s.append(time.perf_counter() - start)
    point = problem_lib.point_of(space, suggestion.parameters.as_dict())
    name = space.config(point).name
    row = table[name]
    trial = suggestion.to_trial(iteration)
    if row["status"] == "completed":
      vector = [row[o.name] for o in objectives]
      trial.complete(vz.Measurement(metrics=dict(zip([o.name for o in objectives], vector))))
      rows.append(vector)
    else:
      trial.complete(vz.Measurement(), infeasibility_reason=row.get("reason") or "infeasible")
      rows.append(None)
    completed.append(trial)
    keys.append(name)
    found3 = pareto.first_dominating_iteration(rows, base_vec, objectives, k=3, keys=keys)
    if found3 is not None and iteration >= hv_after:
      break

  def distinct_until(iteration: Optional[int]) -> Optional[int]:
    return None if iteration is None else len(set(keys[:iteration]))

  first1 = pareto.first_dominating_iteration(rows, base_vec, objectives, k=1, keys=keys)
  first3 = pareto.first_dominating_iteration(rows, base_vec, objectives, k=3, keys=keys)
  hv_points = [r for r in rows[:hv_after] if r is not None]
  return {
      "designer": designer, "seed": seed, "iterations": len(rows),
      "first_dominating": first1, "third_dominating": first3,
      "first_dominating_distinct": distinct_until(first1),
      "third_dominating_distinct": distinct_until(first3),
      "hypervolume": pareto.hypervolume(hv_points, reference, objectives),
      "suggest_s": [round(s, 4) for s in suggest_s],
  }


def _mean(values, cap):
  """Mean with runs that never found it counted as ``cap`` + 1 (a lower bound), and how many."""
  found = [v for v in values if v is not None]
  capped = [v if v is not None else cap + 1 for v in values]
  return {"mean": round(statistics.mean(capped), 2), "found_in": f"{len(found)}/{len(values)}",
          "values": values}


def main(table_path: pathlib.Path, argv) -> None:
  from autodistill.search import pareto
  from autodistill.search import problem as problem_lib
  from autodistill.search.designers import DESIGNERS
  from autodistill.space import get_space

  parser = argparse.ArgumentParser(description="designer replay")
  parser.add_argument("--designers", default=",".join(DESIGNERS))
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--max-iterations", type=int, default=48)
  parser.add_argument("--hv-after", type=int, default=16,
                      help="hypervolume of the feasible trials among the first N")
  parser.add_argument("--space", default="cpu_demo")
  parser.add_argument("--objectives", default="mlm_loss,latency_ms",
                      help="the search's objectives (the CPU default config's pair)")
  parser.add_argument("--runs", default="", help="JSON-lines file of finished runs (resumable)")
  parser.add_argument("--report-only", action="store_true",
                      help="aggregate the runs file without replaying")
  parser.add_argument("--plot", default="")
  parser.add_argument("--out", default="", help="write the JSON here too")
  args = parser.parse_args(argv)

  space = get_space(args.space)
  table = load_table(table_path)
  missing = [c.name for c in space.architectures() if c.name not in table]
  if missing:
    raise SystemExit(f"the table lacks {len(missing)} of {space.num_valid} architectures "
                     f"(e.g. {missing[:3]}); finish it with --build-table.")
  objectives = problem_lib.get_objectives(args.objectives.split(","))
  feasible = [r for r in table.values() if r["status"] == "completed"]
  # Hypervolume reference: the worst value of each objective in the table.
  reference = [(min if o.goal == "maximize" else max)(r[o.name] for r in feasible)
               for o in objectives]
  baseline = table[space.baseline_config().name]
  dominating = [r["name"] for r in feasible
                if pareto.dominates([r[o.name] for o in objectives],
                                    [baseline[o.name] for o in objectives], objectives)]
  # Runs are appended to a JSON-lines file as they finish: several processes can share the work
  # (e.g. one per designer) and a killed replay resumes; the report aggregates the file.
  runs_path = pathlib.Path(args.runs) if args.runs else None
  runs = []
  if runs_path and runs_path.exists():
    runs = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
  wanted = [(d, seed) for d in args.designers.split(",") for seed in range(args.seeds)]
  if not args.report_only:
    for designer, seed in wanted:
      if any(r["designer"] == designer and r["seed"] == seed for r in runs):
        continue
      run = replay(designer, seed, space, table, objectives, args.max_iterations, args.hv_after,
                   reference)
      print(json.dumps({k: v for k, v in run.items() if k != "suggest_s"}), flush=True)
      runs.append(run)
      if runs_path:
        with runs_path.open("a") as f:
          f.write(json.dumps(run) + "\n")
  runs = [r for r in runs if (r["designer"], r["seed"]) in wanted]
  report: dict[str, Any] = {
      "space": space.name, "objectives": [o.name for o in objectives],
      "architectures": len(table), "baseline": baseline["name"],
      "dominating_baseline_in_table": len(dominating),
      "hypervolume_reference": reference, "hv_after": args.hv_after,
      "max_iterations": args.max_iterations, "designers": {}}
  for designer in args.designers.split(","):
    mine = [r for r in runs if r["designer"] == designer]
    times = [r["suggest_s"] for r in mine]
    by_count = {}
    for n in (1, 2, 4, 8, 16, 32, 48, 64):
      at = [t[n - 1] for t in times if len(t) >= n]
      if at:
        by_count[n - 1] = round(statistics.mean(at), 4)
    report["designers"][designer] = {
        "first_dominating": _mean([r["first_dominating"] for r in mine], args.max_iterations),
        "third_dominating": _mean([r["third_dominating"] for r in mine], args.max_iterations),
        "first_dominating_distinct": _mean([r["first_dominating_distinct"] for r in mine],
                                           args.max_iterations),
        "third_dominating_distinct": _mean([r["third_dominating_distinct"] for r in mine],
                                           args.max_iterations),
        "hypervolume_mean": round(statistics.mean(r["hypervolume"] for r in mine), 6),
        "suggest_s_by_completed_trials": by_count,
    }
  ds = report["designers"]
  if "gp_bandit" in ds and "random" in ds:
    report["gp_vs_random_first"] = round(ds["gp_bandit"]["first_dominating"]["mean"]
                                         / ds["random"]["first_dominating"]["mean"], 3)
    report["gp_vs_random_third"] = round(ds["gp_bandit"]["third_dominating"]["mean"]
                                         / ds["random"]["third_dominating"]["mean"], 3)
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text)
  if args.plot:
    _plot(report, args.plot)


def _plot(report, path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  designers = list(report["designers"])
  first = [report["designers"][d]["first_dominating"]["mean"] for d in designers]
  third = [report["designers"][d]["third_dominating"]["mean"] for d in designers]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  xs = range(len(designers))
  ax1.bar([x - 0.2 for x in xs], first, 0.4, label="1st dominating baseline")
  ax1.bar([x + 0.2 for x in xs], third, 0.4, label="3rd dominating baseline")
  ax1.set_xticks(list(xs), designers)
  ax1.set_ylabel("iterations (mean over seeds)")
  ax1.legend()
  ax1.set_title(f"{report['space']}: iterations to beat {report['baseline'].split('-')[0]}")
  for d in designers:
    times = report["designers"][d]["suggest_s_by_completed_trials"]
    ax2.plot([int(k) for k in times], list(times.values()), marker="o", label=d)
  ax2.set_xlabel("completed trials")
  ax2.set_ylabel("suggestion time (s)")
  ax2.set_xscale("symlog")
  ax2.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
