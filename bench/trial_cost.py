"""Where a demo trial's time goes: `autodistill distill --arch=...` from process start to exit; JSON.

The demo's flash recipe (2 x 10 progressive + 40 pre-training-distillation steps, batch 16 x 32)
for one student of the `cpu_demo` space, on a workdir whose teacher is already fitted (the script
fits it first if not: a few minutes). Each run is a fresh process, as a search worker's first
trial or a user's command is, and reports its wall time and the breakdown the run writes to its
`result.json` (`autodistill.timing`: setup, compile, train, evaluate, checkpoint). Runs:

  per_block / cold   one compiled step per progressive stage, empty compilation cache
  shared / cold      the K stages as one step (the default), empty compilation cache
  shared / warm      the same again: JAX's persistent cache in <workdir>/.jax_cache is warm

    python bench/trial_cost.py --workdir=workdir/bench_trial           # ~6 min on 2 cores
    python bench/trial_cost.py --workdir=workdir/demo --arch=Model_64_64_2_256_2

Run it on a quiet machine: the seconds are wall time.
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

RUNS = (("per_block", "cold"), ("shared", "cold"), ("shared", "warm"))


def _command(workdir: pathlib.Path, *args: str) -> list[str]:
  return [sys.executable, "-m", "autodistill", *args, f"--workdir={workdir}",
          "--config.runtime.progress=False"]


def _environment() -> dict[str, str]:
  env = dict(os.environ)
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the command's own cache in the workdir
  env.setdefault("JAX_PLATFORMS", "cpu")
  return env


def _run(command: list[str]) -> float:
  start = time.perf_counter()
  done = subprocess.run(command, env=_environment(), capture_output=True, text=True, check=False)
  if done.returncode:
    sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/bench_trial")
  parser.add_argument("--arch", default="Model_128_32_4_128_4")
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir)
  if not (workdir / "teacher" / "fitted").exists():
    print(f"fitting the teacher in {workdir} first", file=sys.stderr)
    _run(_command(workdir, "teacher"))
  runs = []
  for program, cache in RUNS:
    if cache == "cold":
      shutil.rmtree(workdir / ".jax_cache", ignore_errors=True)
    shutil.rmtree(workdir / "distill", ignore_errors=True)
    wall = _run(_command(workdir, "distill", f"--arch={args.arch}",
                         f"--config.distill.progressive_program={program}"))
    (result,) = (workdir / "distill").glob("*/result.json")
    summary = json.loads(result.read_text())
    timings = summary["timings"]
    in_steps = timings.get("train", 0.0) + timings.get("evaluate", 0.0)
    runs.append({
        "progressive_program": program, "compilation_cache": cache,
        "command_wall_s": round(wall, 1), "distill_s": round(sum(timings.values()), 1),
        "timings_s": timings,
        "train_and_evaluate_share_of_distill": round(in_steps / sum(timings.values()), 3),
        "train_and_evaluate_share_of_command": round(in_steps / wall, 3),
        "mlm_accuracy": summary["evals"]["pretraining_distillation"]["mlm_accuracy"],
    })
    print(json.dumps(runs[-1]), file=sys.stderr)
  print(json.dumps({"arch": summary["student"], "steps": summary["plan"],
                    "cpus": os.cpu_count(), "runs": runs}, indent=2))


if __name__ == "__main__":
  main()
