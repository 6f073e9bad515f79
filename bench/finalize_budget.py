"""The demo's finalize budget: held-out MLM accuracy and BBC topic accuracy of one student after
regular distillation of several lengths, through the command line; JSON.

The signal issue's goal 2 asks the demo's finalized student for >= 10.5% held-out MLM accuracy
(twice the most frequent token's share) and >= 85% on BBC topics. For each pre-training step
count N this runs, in a fresh workdir holding copies of ``--source``'s fitted teacher, tokenized
corpus and latency cache,

    autodistill distill --arch=ARCH --config.distill.preset=regular
        --config.distill.steps_per_block=40 --config.distill.pretrain_steps=N
    autodistill finetune --model=distill/<student> --task=bbc_topic

with the demo's recipe otherwise (the finalize stage's: LAMB, eq. 1-3, warm-up 36; the demo's
fine-tuning: 3 epochs at 3e-3, early stopping on dev), and reports both accuracies and the wall
time of each command.

    python bench/finalize_budget.py --source=workdir/bench_trial --steps=360,520,680 \
        > bench/data/finalize_budget_cpu_demo.json                       # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time


def _run(workdir: pathlib.Path, *args: str) -> float:
  start = time.perf_counter()
  command = [sys.executable, "-m", "autodistill", *args, f"--workdir={workdir}",
             "--config.runtime.progress=False"]
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode:
    sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--source", default="workdir/bench_trial")
  parser.add_argument("--arch", default="Model_128_32_4_128_4")
  parser.add_argument("--steps", default="360,520,680", help="pre-training-distillation steps")
  args = parser.parse_args()
  source = pathlib.Path(args.source)
  rows = []
  for pretrain in (int(s) for s in args.steps.split(",")):
    workdir = source.parent / f"{source.name}_finalize_{pretrain}"
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("teacher", "data_cache", "latency.sqlite"):
      if (source / name).is_dir() and not (workdir / name).exists():
        shutil.copytree(source / name, workdir / name)
      elif (source / name).is_file() and not (workdir / name).exists():
        shutil.copy2(source / name, workdir / name)
    distill_s = _run(workdir, "distill", f"--arch={args.arch}", "--config.distill.preset=regular",
                     "--config.distill.steps_per_block=40",
                     f"--config.distill.pretrain_steps={pretrain}",
                     "--config.distill.warmup_steps=36")
    (result,) = (workdir / "distill").glob("*/result.json")
    distilled = json.loads(result.read_text())
    finetune_s = _run(workdir, "finetune", f"--model=distill/{result.parent.name}",
                      "--task=bbc_topic")
    (tuned,) = (workdir / "finetune" / result.parent.name / "bbc_topic").glob("result.json")
    tuned = json.loads(tuned.read_text())
    evals = distilled["evals"]["pretraining_distillation"]
    rows.append({"student": result.parent.name, "steps": 2 * 40 + pretrain,
                 "mlm_accuracy": evals["mlm_accuracy"], "mlm_loss": evals["mlm_loss"],
                 "mlm_predictions": evals["mlm_predictions"],
                 "bbc_topic": tuned["test"]["BBC"]["accuracy"],
                 "bbc_dev": tuned["dev"]["accuracy"],
                 "distill_command_s": round(distill_s, 1),
                 "finetune_command_s": round(finetune_s, 1)})
    print(json.dumps(rows[-1]), file=sys.stderr)
  print(json.dumps({"rows": rows, "cpus": os.cpu_count(), "load_average": os.getloadavg()},
                   indent=2))


if __name__ == "__main__":
  main()
