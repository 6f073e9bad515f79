"""How well the GP bandit's model predicts the students it has not evaluated; JSON.

Issue 19 asks, where ``gp_bandit`` misses 0.5x random's iterations to the first student that
beats the baseline, for evidence of why, "for example how well the GP predicts held-out students
of the table". This bench gives it. For a measured table (``bench/search_efficiency.py``) and a
baseline chosen as the replays choose it (``--baseline``), and for each stored replay run of the
designers in ``--histories`` (the runs file of ``bench/search_replay.py``):

1. the first N distinct students the run evaluated are the history (N in ``--sizes``);
2. the search's own GP designer (:func:`~autodistill.search.designers.make_designer`,
   ``gp_bandit``: Vizier's GP, one per objective, fitted as a search fits it) is updated with
   them, measured values from the table;
3. its posterior (``predict``) at every other student of the table is compared with the table:

* ``spearman``: per objective, the rank correlation of the posterior mean with the measured
  value (SciPy);
* ``coverage_2sd``: per objective, the share of held-out students whose measured value lies
  within two posterior standard deviations of the mean (0.95 for a calibrated Gaussian);
* ``hit_auc``: the area under the ROC curve with which the posterior probability of beating the
  baseline by the search's noise rule, ``P(loss < baseline's) * P(latency < baseline's + its
  noise margin)`` under independent Gaussians (the loss has no margin in that rule, so its
  strict improvement is the "better in one" part), separates the held-out students that do beat
  it from the rest (0.5: no better than chance);
* ``hit_rank``: where the best-ranked such student falls when the held-out students are sorted by
  that probability (ties share the mean rank), next to ``uniform_rank``, the expectation for a
  random order, ``(M + 1) / (k + 1)`` for M held-out students of which k beat the baseline.

So it says, for histories as the searches really had them, whether the model knows where the
better students are (the ``hit_*`` numbers) and how well it orders each objective. The report's
``hit_neighbourhood`` (:func:`hit_neighbourhood`) adds what the better students share and how
soon each designer's runs reach that part of the space.
``--histories=random`` fits the same GP on the random designer's runs (uniform histories).

    PYTHONPATH=. JAX_PLATFORMS=cpu python bench/gp_prediction.py --space=cpu_wide \\
        --baseline=share:0.05 --runs=bench/data/search_efficiency_cpu_wide_share05_runs.jsonl \\
        --sizes=5,10,15,25,50 --histories=gp_bandit,random \\
        --rows=bench/data/gp_prediction_cpu_wide_share05_rows.jsonl \\
        --out=bench/data/gp_prediction_cpu_wide_share05.json

Each fitted history is appended to ``--rows`` as it finishes (a rerun skips those), so the bench
resumes after a kill.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))


def _ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, largest first, ties sharing their mean rank."""
  from scipy import stats
  return stats.rankdata(-values, method="average")


def hit_statistics(probability: np.ndarray, hits: np.ndarray) -> dict[str, Any]:
  """AUC of ``probability`` for the boolean ``hits``, the rank of the best-ranked hit, and the
  uniform-order expectation of that rank (None where there is no hit or no miss)."""
  k, m = int(hits.sum()), len(hits)
  if k == 0 or k == m:
    return {"hit_auc": None, "hit_rank": None, "uniform_rank": None, "held_out_hits": k}
  from autodistill.search.fidelity import detection_auc
  ranks = _ranks(probability)
  return {"hit_auc": round(detection_auc(probability, hits), 4),
          "hit_rank": float(ranks[hits].min()),
          "uniform_rank": round((m + 1) / (k + 1), 2), "held_out_hits": k}


def fit_and_predict(space, table, objectives, history: list[str], seed: int) -> dict[str, Any]:
  """The GP designer fitted on ``history`` (names of table rows), its posterior on the rest."""
  import jax
  from scipy import stats
  from vizier import algorithms as vza
  from vizier import pyvizier as vz

  from autodistill.search import designers, pareto
  from autodistill.search import problem as problem_lib
  from autodistill.search import table as table_lib

  problem = problem_lib.problem_statement(space, list(objectives))
  trials = []
  for i, name in enumerate(history, start=1):
    record = table[name]
    trial = vz.Trial(parameters=problem_lib.parameters_of(space, record.factors), id=i)
    if record.feasible:
      trial.complete(vz.Measurement(metrics={o: record.metric(o) for o in objectives}))
    else:
      trial.complete(vz.Measurement(), infeasibility_reason=record.reason or "infeasible")
    trials.append(trial)
  designer = designers.make_designer("gp_bandit", problem, seed=seed, num_trials=len(history))
  designer.update(vza.CompletedTrials(trials), vza.ActiveTrials())
  seen = set(history)
  held_out = [n for n, r in table.items() if n not in seen and r.feasible]
  suggestions = [vz.TrialSuggestion(parameters=problem_lib.parameters_of(space, table[n].factors))
                 for n in held_out]
  prediction = designer.predict(suggestions, rng=jax.random.PRNGKey(seed), num_samples=500)
  designers.release_compiled()
  mean, std = np.asarray(prediction.mean, np.float64), np.asarray(prediction.stddev, np.float64)
  truth = np.array([[table[n].metric(o) for o in objectives] for n in held_out], np.float64)
  # Vizier's GP maximises: a minimised metric comes back negated.
  for j, objective in enumerate(problem.metric_information):
    if objective.goal == vz.ObjectiveMetricGoal.MINIMIZE:
      mean[:, j] = -mean[:, j]
  out: dict[str, Any] = {"held_out": len(held_out), "spearman": {}, "coverage_2sd": {}}
  for j, o in enumerate(objectives):
    out["spearman"][o] = round(float(stats.spearmanr(mean[:, j], truth[:, j]).statistic), 4)
    out["coverage_2sd"][o] = round(float(np.mean(np.abs(truth[:, j] - mean[:, j])
                                                 <= 2 * std[:, j])), 4)
  base = pareto.baseline_record(list(table.values()))
  probability = np.ones(len(held_out))
  for j, o in enumerate(problem.metric_information):
    # The noise rule: no objective worse than the baseline's beyond its margin (the latency's
    # noise; 0 for the loss, so a lower loss is also the "strictly better" part).
    margin = pareto.noise_margins(base, base, [o.name])[0]
    sign = -1.0 if o.goal == vz.ObjectiveMetricGoal.MINIMIZE else 1.0
    threshold = base.metric(o.name) - sign * margin
    probability *= stats.norm.cdf(sign * (mean[:, j] - threshold)
                                  / np.maximum(std[:, j], 1e-12))
  wanted = set(table_lib.dominating_baseline(table, objectives))
  out.update(hit_statistics(probability, np.array([n in wanted for n in held_out])))
  return out


def aggregate(rows: list[dict], objectives: list[str]) -> dict[str, Any]:
  """Per history designer and size: means over the runs (and the hit ranks' median)."""
  out: dict[str, Any] = {}
  for history in dict.fromkeys(r["history"] for r in rows):
    per_size = {}
    for size in sorted({r["size"] for r in rows if r["history"] == history}):
      mine = [r for r in rows if r["history"] == history and r["size"] == size]
      mean = lambda xs: round(statistics.mean(xs), 4) if xs else None  # noqa: E731
      with_hits = [r for r in mine if r["hit_auc"] is not None]
      per_size[size] = {
          "runs": len(mine),
          "spearman": {o: mean([r["spearman"][o] for r in mine]) for o in objectives},
          "coverage_2sd": {o: mean([r["coverage_2sd"][o] for r in mine]) for o in objectives},
          "hit_auc": mean([r["hit_auc"] for r in with_hits]),
          "hit_rank_mean": mean([r["hit_rank"] for r in with_hits]),
          "hit_rank_median": statistics.median([r["hit_rank"] for r in with_hits])
                             if with_hits else None,
          "uniform_rank_mean": mean([r["uniform_rank"] for r in with_hits]),
          "runs_with_a_hit_in_history": sum(r["hits_in_history"] > 0 for r in mine),
      }
    out[history] = per_size
  return out


def hit_neighbourhood(table, wanted: set[str], runs: list[dict]) -> dict[str, Any]:
  """What the students that beat the baseline share, and how soon each designer's runs reach it.

  The factor values every such student has (e.g. one width and depth) define a neighbourhood;
  reported: its size, the hits in it, how far the hits' losses are below the baseline's
  (against the baseline's standard error of the loss), and per designer the mean iteration of
  its runs' first student in the neighbourhood (a GP that models the table should get there
  before random does, even where which students inside it beat the baseline is noise).
  """
  from autodistill.search import pareto
  if not wanted:
    return {}
  hits = [table[n] for n in sorted(wanted)]
  common = {f: v for f, v in hits[0].factors.items()
            if all(h.factors.get(f) == v for h in hits)}
  inside = [n for n, r in table.items() if r.feasible and not r.is_baseline
            and all(r.factors.get(f) == v for f, v in common.items())]
  base = pareto.baseline_record(list(table.values()))
  gaps = [base.mlm_loss - h.mlm_loss for h in hits if h.mlm_loss is not None]
  first: dict[str, list] = {}
  for run in runs:
    at = next((i for i, n in enumerate(run["names"], start=1) if n in set(inside)), None)
    first.setdefault(run["designer"], []).append(at)
  reached = {d: {"mean": round(statistics.mean(v for v in at if v is not None), 2)
                 if any(v is not None for v in at) else None,
                 "median": statistics.median(v for v in at if v is not None)
                 if any(v is not None for v in at) else None,
                 "reached_in": f"{sum(v is not None for v in at)}/{len(at)}"}
             for d, at in first.items()}
  return {"common_factors": common, "students": len(inside), "hits": len(hits),
          "hit_loss_below_baseline": {"min": round(min(gaps), 5), "max": round(max(gaps), 5)}
          if gaps else None,
          "baseline_loss_standard_error": round(base.mlm_loss_std
                                                / math.sqrt(base.mlm_predictions), 5)
          if base.mlm_loss_std and base.mlm_predictions else None,
          "first_iteration_in_it": reached}


def main(argv=None) -> None:
  from autodistill.search import table as table_lib
  from autodistill.space import get_space
  from search_efficiency import table_path

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--space", default="cpu_wide")
  parser.add_argument("--table", default="", help="default: bench/data/<space>_table.jsonl")
  parser.add_argument("--baseline", default="share:0.05",
                      help="the space's own baseline ('' ), a student's name, or share:F")
  parser.add_argument("--objectives", default="mlm_loss,latency_ms")
  parser.add_argument("--runs", required=True, help="bench/search_replay.py's runs file")
  parser.add_argument("--histories", default="gp_bandit,random",
                      help="whose replay runs give the histories")
  parser.add_argument("--sizes", default="5,10,15,25,50")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--rows", default="", help="JSON-lines file of finished fits (resumable)")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)

  space = get_space(args.space)
  objectives = args.objectives.split(",")
  table = table_lib.space_table(table_lib.read_table(args.table or table_path(args.space)), space)
  if args.baseline:
    try:
      name = (table_lib.baseline_at_share(table, objectives, float(args.baseline.split(":")[1]))
              if args.baseline.startswith("share:") else args.baseline)
      table = table_lib.with_baseline(table, name)
    except ValueError as error:
      raise SystemExit(f"--baseline={args.baseline}: {error} (a student's name or share:F, "
                       "e.g. share:0.05)") from None
  baseline = next((n for n, r in table.items() if r.is_baseline), None)
  if baseline is None:
    raise SystemExit("the table has no baseline row; pass --baseline=NAME or share:F.")
  runs_path = pathlib.Path(args.runs)
  if not runs_path.exists():
    raise SystemExit(f"--runs={runs_path}: no such file; run bench/search_replay.py first.")
  runs = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
  runs = [r for r in runs if r.get("baseline") == baseline and r["objectives"] == objectives]
  wanted = set(table_lib.dominating_baseline(table, objectives))
  rows_path = pathlib.Path(args.rows) if args.rows else None
  rows = ([json.loads(x) for x in rows_path.read_text().splitlines() if x.strip()]
          if rows_path and rows_path.exists() else [])
  rows = [r for r in rows if r["baseline"] == baseline and r["objectives"] == objectives]
  done = {(r["history"], r["seed"], r["size"]) for r in rows}
  sizes = [int(s) for s in args.sizes.split(",")]
  for history in args.histories.split(","):
    mine = sorted((r for r in runs if r["designer"] == history), key=lambda r: r["seed"])
    if not mine:
      raise SystemExit(f"{runs_path}: no {history} runs against {baseline}; replay it first.")
    for run in mine[:args.seeds]:
      distinct = list(dict.fromkeys(run["names"]))
      for size in sizes:
        if (history, run["seed"], size) in done or size > len(distinct):
          continue
        names = distinct[:size]
        row = {"history": history, "seed": run["seed"], "size": size, "baseline": baseline,
               "objectives": objectives, "hits_in_history": sum(n in wanted for n in names),
               **fit_and_predict(space, table, objectives, names, run["seed"])}
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
        if rows_path:
          with rows_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
  report = {"space": space.name, "students": len(table), "baseline": baseline,
            "baseline_rule": args.baseline or "the space's", "objectives": objectives,
            "dominating_baseline_in_table": len(wanted), "runs_file": str(runs_path),
            "hit_neighbourhood": hit_neighbourhood(table, wanted, runs),
            "by_history": aggregate(rows, objectives)}
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
  main()
