"""Does AutoDistil's weight sharing rank students as stand-alone distillation does? JSON.

Issue 20's first measurement, on the CPU-sized sub-space ``autodistil_cpu`` (256 BERT-block
students) with the demo's adapted teacher and BBC data:

1. ``autodistill supernet`` with ``experiments/autodistil_subspaces.py:cpu``: the SuperLM trained
   (``supernet.steps``, default 300) and every subnet scored in the shared weights (held-out
   relation loss);
2. ``--students`` subnets spread evenly over the SuperLM's ranking (its best, its worst and the
   ones between), each flash-distilled *stand-alone* exactly as a search trial of the same config
   is (:func:`autodistill.search.evaluate.evaluate_student`: the config's flash recipe in the
   space's elastic envelope, held-out MLM loss and accuracy, batch-1 latency);
3. Spearman and Kendall correlations of the SuperLM's score with the stand-alone held-out MLM loss
   and accuracy, with 95% bootstrap intervals (2,000 resamples of the students), and the time each
   route took;
4. the control a ranking must beat to be worth anything: the same correlations for the parameter
   count (free, no training), and the SuperLM's rank correlation with the stand-alone loss once
   the parameter count's ranks are regressed out of both (partial Spearman).

``--hidden=128`` draws the students from the subnets of one width only, which asks whether the
SuperLM ranks anything beyond width (depth, MLP ratio, heads).

    python bench/supernet_fidelity.py --workdir=workdir/supernet_cpu \\
        > bench/data/supernet_fidelity_autodistil_cpu.json
    python bench/supernet_fidelity.py --workdir=workdir/supernet_cpu --hidden=128 --students=12 \\
        > bench/data/supernet_fidelity_autodistil_cpu_hidden128.json

Resumable: the SuperLM and its scores live in ``<workdir>/supernet/autodistil_cpu`` and each
stand-alone student in ``<workdir>/supernet_fidelity/<name>``; finished ones are read back. The
workdir's teacher is reused (copy ``teacher/`` and ``data_cache/`` from a demo run to skip the
teacher stage).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

import numpy as np


def _correlations(x: list[float], y: list[float], seed: int = 0,
                  resamples: int = 2000) -> dict[str, float]:
  from scipy import stats  # pylint: disable=import-outside-toplevel
  x, y = np.asarray(x), np.asarray(y)
  out = {"spearman": float(stats.spearmanr(x, y).statistic),
         "kendall": float(stats.kendalltau(x, y).statistic)}
  rng = np.random.default_rng(seed)
  boot = {"spearman": [], "kendall": []}
  for _ in range(resamples):
    i = rng.integers(0, len(x), len(x))
    if len(set(x[i])) < 3 or len(set(y[i])) < 3:
      continue
    boot["spearman"].append(stats.spearmanr(x[i], y[i]).statistic)
    boot["kendall"].append(stats.kendalltau(x[i], y[i]).statistic)
  for name, values in boot.items():
    out[f"{name}_ci95"] = [float(np.nanpercentile(values, 2.5)),
                           float(np.nanpercentile(values, 97.5))]
  return out


def _partial_spearman(x: list[float], y: list[float], control: list[float]) -> float:
  """Spearman of x and y with the ranks of ``control`` regressed out of both."""
  from scipy import stats  # pylint: disable=import-outside-toplevel
  rx, ry, rc = (stats.rankdata(v) for v in (x, y, control))
  resid = lambda r: r - np.polyval(np.polyfit(rc, r, 1), rc)  # noqa: E731
  return float(stats.pearsonr(resid(rx), resid(ry)).statistic)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/supernet_cpu")
  parser.add_argument("--students", type=int, default=16)
  parser.add_argument("--superlm-steps", type=int, default=0, help="0: the config's")
  parser.add_argument("--hidden", type=int, default=0,
                      help="draw the students from the subnets of this hidden size only")
  args = parser.parse_args()
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
  import autodistil_subspaces  # pylint: disable=import-outside-toplevel
  from autodistill import pipeline  # pylint: disable=import-outside-toplevel
  from autodistill.experiment import Experiment  # pylint: disable=import-outside-toplevel
  from autodistill.search.evaluate import evaluate_student  # pylint: disable=import-outside-toplevel
  from autodistill.search.records import TrialRecord  # pylint: disable=import-outside-toplevel

  quiet = lambda message: print(message, file=sys.stderr)  # noqa: E731
  config = autodistil_subspaces.get_config("cpu")
  config.runtime.progress = False
  if args.superlm_steps:
    config.supernet.steps = args.superlm_steps
  workdir = pathlib.Path(args.workdir)
  experiment = Experiment.create(config, workdir, log=quiet)
  t0 = time.time()
  summary = pipeline.supernet_stage(experiment, log=quiet)
  supernet_s = time.time() - t0
  directory = workdir / "supernet" / experiment.settings.space.name
  scores = json.loads((directory / "scores.json").read_text())["scores"]
  superlm = json.loads((directory / "superlm.json").read_text())
  trials = {t["name"]: t for t in json.loads((directory / "trials.json").read_text())}
  ranked = sorted(scores, key=lambda name: (scores[name], name))
  pool = [n for n in ranked if not args.hidden
          or trials[n]["factors"]["hidden_size"] == args.hidden]
  picks = [pool[int(round(i))] for i in np.linspace(0, len(pool) - 1, args.students)]

  context = experiment.search_context()
  rows = []
  for trial_id, name in enumerate(picks, 1):
    point = trials[name]["factors"]
    record = evaluate_student(context, point, workdir / "supernet_fidelity" / name,
                              TrialRecord(trial_id=trial_id), log=quiet)
    n, p = record.mlm_predictions, record.mlm_accuracy
    rows.append({"student": name, "factors": point, "params": record.params,
                 "superlm_relation_loss": scores[name], "superlm_rank": ranked.index(name),
                 "mlm_loss": record.mlm_loss, "mlm_loss_se": record.mlm_loss_std / math.sqrt(n),
                 "mlm_accuracy": p, "mlm_accuracy_se": math.sqrt(p * (1 - p) / n),
                 "latency_ms": record.latency_ms, "distill_s": record.distill_s,
                 "total_s": record.total_s})
    print(json.dumps(rows[-1]), file=sys.stderr)
  experiment.close()
  relation = [r["superlm_relation_loss"] for r in rows]
  params = [float(r["params"]) for r in rows]
  losses = [r["mlm_loss"] for r in rows]
  accuracies = [r["mlm_accuracy"] for r in rows]
  result = {
      "space": experiment.settings.space.name, "students": len(rows),
      "superlm": {"steps": superlm["global_step"], "train_s": superlm["seconds"],
                  "relation_heads": superlm["relation_heads"],
                  "evals": superlm["evals"], "score_s": summary["seconds"]["scoring"],
                  "this_call_s": round(supernet_s, 1)},
      "flash_recipe": {"steps_per_block": config.distill.steps_per_block,
                       "pretrain_steps": config.distill.pretrain_steps},
      # Lower relation loss should go with lower MLM loss (positive correlation) and higher
      # accuracy (negative correlation).
      "hidden_size": args.hidden or "all",
      "vs_standalone_mlm_loss": _correlations(relation, losses),
      "vs_standalone_mlm_accuracy": _correlations(relation, accuracies),
      "vs_params": _correlations(relation, params),
      # The free control: how well the parameter count alone ranks the stand-alone students.
      "params_vs_standalone_mlm_loss": _correlations(params, losses),
      "params_vs_standalone_mlm_accuracy": _correlations(params, accuracies),
      "partial_spearman_vs_standalone_mlm_loss_given_params": _partial_spearman(
          relation, losses, params),
      "standalone_mean_trial_s": float(np.mean([r["total_s"] for r in rows])),
      "rows": rows, "cpus": os.cpu_count(), "load_average": os.getloadavg()}
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
