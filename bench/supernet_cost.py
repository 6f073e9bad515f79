"""What one SuperLM buys against AutoDistill's BO + flash search on the same sub-space; JSON.

Issue 20's cost measurement, in one currency: every student either route proposes is
flash-distilled stand-alone (the search's trial recipe) and placed by (held-out MLM loss,
analytic GFLOPs of the batch-1 forward), both minimised.

* **BO + flash**: ``autodistill search`` with the GP bandit on ``autodistil_cpu``, objectives
  (``mlm_loss``, ``flops``), ``--trials`` trials, in ``<workdir>/bo_search`` (its own workdir,
  with the teacher copied in).
* **SuperLM**: the ``supernet`` command's front (relation loss against FLOPs); ``--picks`` of its
  students, evenly spaced along the front by FLOPs, flash-distilled stand-alone in
  ``<workdir>/supernet_fidelity/<name>`` (shared with ``bench/supernet_fidelity.py``).

Reported: the hypervolume of each route's students against one reference point (the worst loss
and FLOPs of all of them), the BO search's hypervolume after each trial, the first trial count at
which it reaches the SuperLM picks' hypervolume, and the wall time of each route (SuperLM
training + scoring + distilling its picks, against the search's trials).

    python bench/supernet_cost.py --workdir=workdir/supernet_cpu \\
        > bench/data/supernet_cost_autodistil_cpu.json

Resumable: the search resumes its study; finished stand-alone students are read back.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/supernet_cpu")
  parser.add_argument("--trials", type=int, default=12)
  parser.add_argument("--picks", type=int, default=8)
  args = parser.parse_args()
  root = pathlib.Path(__file__).resolve().parent.parent
  sys.path.insert(0, str(root))
  sys.path.insert(0, str(root / "experiments"))
  # pylint: disable=import-outside-toplevel
  import autodistil_subspaces
  from autodistill import pipeline
  from autodistill.experiment import Experiment
  from autodistill.hardware.flops import analytic_flops
  from autodistill.search.evaluate import evaluate_student
  from autodistill.search.pareto import hypervolume, pareto_front
  from autodistill.search.records import TrialRecord
  from autodistill.supernet import objectives_for

  quiet = lambda message: print(message, file=sys.stderr)  # noqa: E731
  workdir = pathlib.Path(args.workdir)
  config = autodistil_subspaces.get_config("cpu")
  config.runtime.progress = False
  config.search.designer = "gp_bandit"
  config.search.num_trials = args.trials
  config.search.objectives = ("mlm_loss", "flops")
  config.search.evaluate_baseline = False

  # The SuperLM route: its front, then stand-alone flash distillation of the picks.
  experiment = Experiment.create(config, workdir, log=quiet)
  summary = pipeline.supernet_stage(experiment, log=quiet)
  space_dir = workdir / "supernet" / experiment.settings.space.name
  records = [TrialRecord.from_dict(r) for r in json.loads((space_dir / "trials.json").read_text())]
  front = sorted(pareto_front(records, objectives_for("flops")), key=lambda r: r.flops)
  picks = [front[int(round(i))] for i in np.linspace(0, len(front) - 1, args.picks)]
  context = experiment.search_context()
  superlm_rows, pick_s = [], 0.0
  for i, record in enumerate(picks, 1):
    t0 = time.time()
    done = evaluate_student(context, record.factors, workdir / "supernet_fidelity" / record.name,
                            TrialRecord(trial_id=i), log=quiet)
    pick_s += done.total_s or (time.time() - t0)
    superlm_rows.append({"name": record.name, "relation_loss": record.relation_loss,
                         "mlm_loss": done.mlm_loss, "distill_s": done.total_s})
  experiment.close()

  # The BO + flash route, in a workdir of its own with the same teacher and data cache.
  bo_dir = workdir / "bo_search"
  for part in ("teacher", "data_cache"):
    if not (bo_dir / part).exists():
      shutil.copytree(workdir / part, bo_dir / part)
  t0 = time.time()
  pipeline.search_stage(config, bo_dir, log=quiet)
  bo_wall = time.time() - t0
  bo = sorted(json.loads((bo_dir / "trials.json").read_text()), key=lambda r: r["trial_id"])

  def gflops(name: str) -> float:
    return analytic_flops(experiment.student(name), batch_size=1,
                          seq_len=config.latency.seq_len) / 1e9

  superlm_points = [(r["mlm_loss"], gflops(r["name"])) for r in superlm_rows]
  bo_points = [(r["mlm_loss"], gflops(r["name"])) if r["status"] == "completed" else None
               for r in bo]
  every = superlm_points + [p for p in bo_points if p]
  reference = (max(p[0] for p in every) * 1.001, max(p[1] for p in every) * 1.001)
  goals = ("mlm_loss", "flops")  # both minimised
  superlm_hv = hypervolume(superlm_points, reference, goals)
  bo_curve = [hypervolume([p for p in bo_points[:n] if p], reference, goals)
              for n in range(1, len(bo_points) + 1)]
  reached = next((n for n, hv in enumerate(bo_curve, 1) if hv >= superlm_hv), None)
  superlm = json.loads((space_dir / "superlm.json").read_text())
  print(json.dumps({
      "space": "autodistil_cpu", "reference": reference,
      "superlm": {"hypervolume": superlm_hv, "picks": superlm_rows,
                  "train_s": superlm["seconds"], "score_s": summary["seconds"]["scoring"],
                  "picks_distill_s": round(pick_s, 1),
                  "total_s": round(superlm["seconds"] + summary["seconds"]["scoring"]
                                   + pick_s, 1)},
      "bo_flash": {"hypervolume_by_trial": bo_curve, "trials": len(bo),
                   "trial_s": [r.get("total_s") for r in bo], "search_wall_s": round(bo_wall, 1),
                   "students": [{"trial": r["trial_id"], "name": r["name"],
                                 "mlm_loss": r.get("mlm_loss"), "status": r["status"]}
                                for r in bo]},
      "bo_trials_to_reach_superlm_hypervolume": reached,
      "cpus": os.cpu_count(), "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
  main()
