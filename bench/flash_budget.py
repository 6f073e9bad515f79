"""How many flash-distillation steps the demo's students need before held-out MLM accuracy
separates them, under the paper's objective and KD-NAS's multi-layer one; JSON.

The signal issue's goal 3 and the paper's section 4.7 in miniature: a fixed set of `cpu_demo`
students (spread over the space), each distilled exactly as a search trial is
(:func:`autodistill.search.evaluate.evaluate_student`: the demo's recipe in the space's elastic
envelope, the demo's teacher, data and held-out split), at flash budgets of 1x, 2x and 4x the
demo's 60 steps, with `distill.objective` "autodistill" (eq. 1-3, progressive) and "multi_layer"
(one joint phase). Per (objective, budget) it reports each student's held-out MLM accuracy and
loss with their standard errors, how many students beat always predicting the most frequent
masked token, how many pairs of students are apart by more than 3 standard errors of their
difference, and the Spearman correlation of the students' ranking with the largest budget's.

    python bench/flash_budget.py --workdir=workdir/bench_trial > bench/data/flash_budget_cpu_demo.json

Resumable: each (objective, budget, student) is a trial directory under ``<workdir>/flash_budget``
whose finished result is read back. About 20 minutes on 2 cores with a fitted teacher.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import pathlib
import sys

STUDENTS = (  # (hidden, bottleneck, heads, intermediate, ffns): the baseline first
    (128, 32, 4, 128, 4), (64, 64, 2, 256, 2), (64, 32, 2, 64, 2), (128, 64, 4, 256, 4),
    (128, 32, 2, 256, 2), (64, 32, 4, 128, 4))
FACTORS = ("hidden_size", "bottleneck_size", "num_heads", "intermediate_size", "num_ffn")


def _spearman(a: list[float], b: list[float]) -> float:
  from scipy import stats  # pylint: disable=import-outside-toplevel
  return float(stats.spearmanr(a, b).statistic)


def _summary(rows: list[dict], chance: float) -> dict:
  apart = 0
  for x, y in itertools.combinations(rows, 2):
    noise = math.sqrt(x["mlm_accuracy_se"] ** 2 + y["mlm_accuracy_se"] ** 2)
    apart += abs(x["mlm_accuracy"] - y["mlm_accuracy"]) > 3 * noise
  accuracies = [r["mlm_accuracy"] for r in rows]
  se = max(r["mlm_accuracy_se"] for r in rows)
  return {"above_most_frequent_token": sum(a > chance for a in accuracies),
          "pairs_apart_3se": apart, "pairs": len(rows) * (len(rows) - 1) // 2,
          "accuracy_range": [min(accuracies), max(accuracies)],
          "accuracy_range_in_se": (max(accuracies) - min(accuracies)) / se if se else None}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/bench_trial")
  parser.add_argument("--scales", default="1,2,4", help="multiples of the demo's flash steps")
  parser.add_argument("--objectives", default="autodistill,multi_layer")
  args = parser.parse_args()
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  from autodistill.config import default_config
  from autodistill.distill.evaluation import chance_mlm_accuracy
  from autodistill.experiment import Experiment
  from autodistill.search.evaluate import evaluate_student
  from autodistill.search.records import TrialRecord

  quiet = lambda message: print(message, file=sys.stderr)  # noqa: E731
  workdir = pathlib.Path(args.workdir)
  scales = [float(s) for s in args.scales.split(",")]
  runs, summaries, chance = [], [], None
  for objective in args.objectives.split(","):
    by_scale = {}
    for scale in scales:
      config = default_config()
      config.runtime.progress = False
      # The demo's counts, multiplied (distill.scale only scales a preset's counts).
      config.distill.steps_per_block = round(config.distill.steps_per_block * scale)
      config.distill.pretrain_steps = round(config.distill.pretrain_steps * scale)
      config.distill.objective = objective
      if objective == "multi_layer":
        config.distill.logits_weight = 1.0
      experiment = Experiment.create(config, workdir, log=quiet)
      context = experiment.search_context()
      if chance is None:
        chance = chance_mlm_accuracy(context.eval_data)
      steps = context.distill_config.plan(2).total_steps
      rows = []
      for trial_id, values in enumerate(STUDENTS, 1):
        point = dict(zip(FACTORS, values))
        name = context.student(point).name
        trial_dir = workdir / "flash_budget" / f"{objective}_x{scale:g}" / name
        record = evaluate_student(context, point, trial_dir, TrialRecord(trial_id=trial_id),
                                  log=quiet)
        n = record.mlm_predictions
        p = record.mlm_accuracy
        rows.append({"objective": objective, "scale": scale, "steps": steps, "student": name,
                     "mlm_accuracy": p, "mlm_accuracy_se": math.sqrt(p * (1 - p) / n),
                     "mlm_loss": record.mlm_loss,
                     "mlm_loss_se": record.mlm_loss_std / math.sqrt(n),
                     "latency_ms": record.latency_ms, "distill_s": record.distill_s})
        print(json.dumps(rows[-1]), file=sys.stderr)
      experiment.close()
      by_scale[scale] = rows
      runs += rows
    top = by_scale[max(scales)]
    for scale, rows in by_scale.items():
      summary = {"objective": objective, "scale": scale, "steps": rows[0]["steps"],
                 **_summary(rows, chance),
                 "spearman_accuracy_vs_largest_budget": _spearman(
                     [r["mlm_accuracy"] for r in rows], [r["mlm_accuracy"] for r in top]),
                 "spearman_loss_vs_largest_budget": _spearman(
                     [r["mlm_loss"] for r in rows], [r["mlm_loss"] for r in top])}
      summaries.append(summary)
      print(json.dumps(summary), file=sys.stderr)
  print(json.dumps({"most_frequent_token_share": chance, "summaries": summaries, "runs": runs,
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
  main()
