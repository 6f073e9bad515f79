"""AutoDistil downstream: the SuperLM's extracted winner against the same student trained other
ways, each fine-tuned on BBC topics with the same recipe; JSON.

Issue 20's third measurement, after ``bench/supernet_fidelity.py`` (which trained the SuperLM of
``autodistil_cpu`` and flash-distilled its best subnet stand-alone) in the same workdir. Four
encoders of the one architecture the ``supernet`` command picked (lowest held-out relation loss):

* ``extracted``: its weights cut out of the SuperLM, no training of its own;
* ``extracted+flash``: those weights flash-distilled further (``autodistill distill --init``);
* ``standalone``: the student flash-distilled alone from the teacher (the search's trial recipe);
* ``random``: randomly initialised.

Each is fine-tuned on BBC News topics (``config.finetune``: the demo's recipe) and the test
accuracy reported. (The teacher needs its own learning rates on this task; see
``bench/kdnas_headline.py`` for its score on the same split.)

    python bench/supernet_downstream.py --workdir=workdir/supernet_cpu \\
        > bench/data/supernet_downstream_autodistil_cpu.json

Resumable: finished fine-tunings are read back from ``<workdir>/supernet_downstream``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/supernet_cpu")
  args = parser.parse_args()
  root = pathlib.Path(__file__).resolve().parent.parent
  sys.path.insert(0, str(root))
  sys.path.insert(0, str(root / "experiments"))
  # pylint: disable=import-outside-toplevel
  import autodistil_subspaces
  from autodistill import pipeline
  from autodistill.distill.distillation import distill, load_distilled
  from autodistill.experiment import Experiment
  from autodistill.finetune.finetuning import finetune_many, load_backbone
  from autodistill.finetune.tasks import get_task
  from autodistill.search.evaluate import evaluate_student
  from autodistill.search.records import TrialRecord

  quiet = lambda message: print(message, file=sys.stderr)  # noqa: E731
  config = autodistil_subspaces.get_config("cpu")
  config.runtime.progress = False
  workdir = pathlib.Path(args.workdir)
  experiment = Experiment.create(config, workdir, log=quiet)
  summary = pipeline.supernet_stage(experiment, log=quiet)
  best = summary["best"]
  space_dir = workdir / "supernet" / experiment.settings.space.name
  extracted = space_dir / "students" / best["name"]
  standalone = workdir / "supernet_fidelity" / best["name"]
  if not (standalone / "result.json").exists():
    evaluate_student(experiment.search_context(), best["factors"], standalone,
                     TrialRecord(trial_id=1), log=quiet)
  student, start, _ = load_distilled(extracted)
  further = distill(student, experiment.teacher, experiment.train_data, experiment.eval_data,
                    extracted / "distill_flash", experiment.settings.distill, log=quiet,
                    start=start)
  backbones = {
      "extracted": load_backbone(extracted), "extracted+flash": load_backbone(further.workdir),
      "standalone": load_backbone(standalone), "random": load_backbone(extracted,
                                                                        random_init=True)}
  named = [dataclasses.replace(b, name=name) for name, b in backbones.items()]
  settings = experiment.settings
  task = get_task("bbc_topic", eval_fraction=settings.data.eval_fraction, seed=settings.data.seed)
  results = finetune_many(named, [task], workdir / "supernet_downstream", experiment.tokenizer,
                          settings.finetune.recipe, log=quiet)
  rows = {r.model: {"scores": r.scores, "test": r.test, "dev": r.dev, "majority": r.majority,
                    "learning_rate": r.learning_rate, "seconds": r.seconds} for r in results}
  experiment.close()
  print(json.dumps({
      "student": best["name"], "factors": best["factors"], "params": best["params"],
      "relation_loss": best["relation_loss"],
      "further_flash_evals": further.final, "finetune": rows,
      "recipe": dataclasses.asdict(settings.finetune.recipe),
      "cpus": os.cpu_count(), "load_average": os.getloadavg()}, indent=2, default=str))


if __name__ == "__main__":
  main()
