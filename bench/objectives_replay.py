"""Multi- vs single-objective search (paper section 4.3, Figure 4, in kind), replayed on a
measured table; JSON + a plot.

The paper searches accuracy and latency together and shows the Pareto front it finds (Figure 4).
The question here is what that buys over searching one objective: for each objective set, (MLM
loss, latency) together, MLM loss only, and latency only, the designer (default the GP bandit)
is replayed for the same trial budget and several seeds against a table in which every student
was evaluated exactly as a trial is (:func:`autodistill.search.table.replay`; build the table with
``bench/search_efficiency.py --build-table``). Every run is scored on the same two-objective
front, whatever it optimised:

* hypervolume of its feasible trials (reference: the table's worst value of each objective);
* how many students of the table's Pareto front it found, and how many of those lie in the
  *middle* of the front (the front sorted by latency, less its fastest and its most accurate
  quarter), the trade-offs a single-objective search has no reason to visit;
* how many distinct students that dominate the baseline it found (latency within noise a tie),
  and by the medians alone.

At this CPU budget MLM *loss* stands in for the paper's accuracy (the search default, see
``search.objectives``); ``--objectives`` changes the sets.

    python bench/objectives_replay.py --table=bench/data/cpu_wide_table.jsonl --space=cpu_wide \\
        --seeds=3 --budget=25 --runs=bench/data/objectives_replay_cpu_wide_runs.jsonl \\
        --out=bench/data/objectives_replay_cpu_wide.json --plot=docs/objectives_replay_cpu_wide.png

Resumable: finished runs are appended to ``--runs`` and read back.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
from typing import Any

SETS = "mlm_loss,latency_ms;mlm_loss;latency_ms"


def front_middle(front: list) -> list:
  """The front (sorted by latency) less its fastest and its most accurate quarter."""
  quarter = len(front) // 4 if len(front) >= 4 else 1
  return front[quarter:len(front) - quarter]


def score(run: dict, front: list[str], middle: list[str], dominating: list[str],
          dominating_raw: list[str]) -> dict[str, Any]:
  names = set(run["names"])
  return {"hypervolume": run["hypervolume"][str(run["iterations"])],
          "front_found": len(names & set(front)), "middle_found": len(names & set(middle)),
          "dominating_found": len(names & set(dominating)),
          "dominating_found_by_medians": len(names & set(dominating_raw)),
          "distinct_students": len(names)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--table", required=True)
  parser.add_argument("--space", default="cpu_wide")
  parser.add_argument("--designer", default="gp_bandit")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--budget", type=int, default=25, help="trials per run")
  parser.add_argument("--objectives", default=SETS, help="objective sets, ';'-separated")
  parser.add_argument("--runs", default="")
  parser.add_argument("--out", default="")
  parser.add_argument("--plot", default="")
  args = parser.parse_args()
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  # pylint: disable=import-outside-toplevel
  from autodistill.search import table as table_lib
  from autodistill.space import get_space

  space = get_space(args.space)
  try:
    table = table_lib.space_table(table_lib.read_table(args.table), space)
  except ValueError as error:
    sys.exit(f"{args.table}: {error} (bench/search_efficiency.py --build-table)")
  sets = [s.split(",") for s in args.objectives.split(";")]
  report_objectives = sets[0]
  reference = table_lib.hypervolume_reference(table, report_objectives)
  # The front of the medians: with this CPU's latency noise the noise-aware front can be the
  # most accurate student alone (it ties every slower one), which says nothing about trade-offs.
  front = table_lib.raw_front(table, report_objectives)
  middle = front_middle(front)
  dominating = table_lib.dominating_baseline(table, report_objectives)
  dominating_raw = table_lib.dominating_baseline(table, report_objectives, noise=False)
  runs_path = pathlib.Path(args.runs) if args.runs else None
  runs = ([json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
          if runs_path and runs_path.exists() else [])
  for objectives in sets:
    for seed in range(args.seeds):
      if any(r["objectives"] == objectives and r["seed"] == seed and r["designer"] == args.designer
             and r["iterations"] == args.budget for r in runs):
        continue
      run = table_lib.replay(args.designer, seed, space, table, objectives,
                             max_iterations=args.budget, hv_after=(args.budget,),
                             report_objectives=report_objectives, reference=reference,
                             stop_after=0)
      run["hypervolume"] = {str(n): v for n, v in run["hypervolume"].items()}
      runs.append(run)
      print(json.dumps({k: v for k, v in run.items() if k not in ("names", "suggest_s")}),
            file=sys.stderr, flush=True)
      if runs_path:
        with runs_path.open("a") as f:
          f.write(json.dumps(run) + "\n")
  summary = {}
  for objectives in sets:
    mine = [r for r in runs if r["objectives"] == objectives and r["designer"] == args.designer
            and r["iterations"] == args.budget and r["seed"] < args.seeds]
    scores = [score(r, front, middle, dominating, dominating_raw) for r in mine]
    summary[",".join(objectives)] = {
        "seeds": len(mine),
        **{key: {"mean": round(statistics.mean(s[key] for s in scores), 4),
                 "values": [s[key] for s in scores]}
           for key in ("hypervolume", "front_found", "middle_found", "dominating_found",
                       "dominating_found_by_medians", "distinct_students")}}
  multi = summary[",".join(sets[0])]["hypervolume"]["mean"]
  result = {"benchmark": "objectives_replay", "space": space.name, "designer": args.designer,
            "budget": args.budget, "report_objectives": report_objectives,
            "students": len(table), "table_front": front, "front_middle": middle,
            "dominating_baseline_in_table": len(dominating),
            "dominating_baseline_by_medians": len(dominating_raw),
            "hypervolume_reference": reference, "by_objectives": summary,
            "multi_objective_hypervolume_at_least_each_single": all(
                multi >= s["hypervolume"]["mean"] for s in summary.values())}
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  if args.plot:
    plot(result, runs, table, args.plot)


def plot(result: dict, runs: list[dict], table: dict, path: str) -> None:
  """One panel per objective set: every student (grey), the table's front, the students the
  seed-0 run tried and the front of what it found, and the baseline."""
  # pylint: disable=import-outside-toplevel
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from autodistill.search import table as table_lib
  y, x = result["report_objectives"]
  sets = list(result["by_objectives"])
  fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.4), sharey=True)
  records = list(table.values())
  front = [table[n] for n in result["table_front"]]
  base = next(r for r in records if r.is_baseline)
  for ax, objectives, color in zip(axes, sets, ("C0", "C1", "C2")):
    ax.scatter([r.metric(x) for r in records], [r.metric(y) for r in records], s=8,
               color="lightgrey", label=f"all {len(records)} students")
    ax.plot([r.metric(x) for r in front], [r.metric(y) for r in front], "-", color="grey",
            linewidth=1, label="the table's front")
    seed0 = [r for r in runs if ",".join(r["objectives"]) == objectives and r["seed"] == 0
             and r["iterations"] == result["budget"]]
    if seed0:
      tried = [table[n] for n in dict.fromkeys(seed0[0]["names"])]
      found = [table[n] for n in table_lib.raw_front({r.name: r for r in tried},
                                                      result["report_objectives"])]
      ax.scatter([r.metric(x) for r in tried], [r.metric(y) for r in tried], s=18,
                 color=color, label="tried (seed 0)")
      ax.plot([r.metric(x) for r in found], [r.metric(y) for r in found], "o--", color=color,
              label="its front")
    ax.plot([base.metric(x)], [base.metric(y)], "p", color="black", markersize=12,
            fillstyle="none", label="baseline")
    summary = result["by_objectives"][objectives]
    ax.set_title(f"searching {objectives}\nhv {summary['hypervolume']['mean']:.3f}, front "
                 f"{summary['front_found']['mean']:.1f}/{len(front)}, middle "
                 f"{summary['middle_found']['mean']:.1f}/{len(result['front_middle'])} "
                 f"(mean of {summary['seeds']} seeds)", fontsize=9)
    ax.set_xlabel("batch-1 latency (ms)")
    ax.legend(fontsize=7)
  axes[0].set_ylabel("held-out MLM loss (lower is better)")
  fig.suptitle(f"Fig. 4 in kind: {result['budget']} trials of {result['designer']} on "
               f"{result['space']}", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


if __name__ == "__main__":
  main()
