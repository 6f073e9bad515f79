"""Where a demo trial's time goes: one `autodistill distill`, and the trials of a search; JSON.

The demo's flash recipe (2 x 10 progressive + 40 pre-training-distillation steps, batch 16 x 32)
for one student of the `cpu_demo` space, on a workdir whose teacher is already fitted (the script
fits it first if not: a few minutes). Each run is a fresh process, as a search worker's first
trial or a user's command is, and reports its wall time and the breakdown the run writes to its
`result.json` (`autodistill.timing`: setup, compile, train, evaluate, checkpoint). Runs:

  per_block / cold   one compiled step per progressive stage, empty compilation cache
  shared / cold      the K stages as one step (the default), empty compilation cache
  shared / warm      the same again: JAX's persistent cache in <workdir>/.jax_cache is warm

With ``--scan-blocks`` the shared runs distil with ``distill.scan_blocks=True`` (the blocks under
``nn.scan``, parameters stacked) and the per-block run, which cannot scan, is left out; so is
the search's ``search.elastic`` comparison, which then runs with scanned blocks too.

    python bench/trial_cost.py --workdir=workdir/bench_trial           # ~6 min on 2 cores
    python bench/trial_cost.py --workdir=workdir/demo --arch=Model_64_64_2_256_2

With ``--search-trials N`` it then runs ``autodistill search`` for N trials (quasi-random
students of the space, the demo's recipe) twice, with ``search.elastic`` on (every trial in the
space's elastic envelope: one set of compiled programs) and off (each student its own), each in a
fresh copy of the workdir (fitted teacher, tokenized corpus and latency cache copied; empty
compilation cache), and reports every trial's breakdown from ``trials.json``:

    python bench/trial_cost.py --workdir=workdir/bench_trial --search-trials=6 --only-search

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


def _search_runs(workdir: pathlib.Path, trials: int, extra: tuple[str, ...]) -> list[dict]:
  """``autodistill search`` for ``trials`` trials with and without the elastic envelope."""
  if not (workdir / "latency.sqlite").exists():
    _run(_command(workdir, "latency"))
  runs = []
  for elastic in (True, False):
    fresh = workdir.parent / f"{workdir.name}_search_{'elastic' if elastic else 'own'}"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for name in ("teacher", "data_cache", "latency.sqlite"):
      if (workdir / name).is_dir():
        shutil.copytree(workdir / name, fresh / name)
      elif (workdir / name).exists():
        shutil.copy2(workdir / name, fresh / name)
    wall = _run(_command(fresh, "search", f"--config.search.num_trials={trials}",
                         "--config.search.designer=quasi_random",
                         f"--config.search.elastic={elastic}", *extra))
    records = json.loads((fresh / "trials.json").read_text())
    records = records["trials"] if isinstance(records, dict) else records
    rows = []
    for r in records:
      seconds = r.get("seconds") or {}
      total = sum(seconds.values())
      in_steps = seconds.get("train", 0.0) + seconds.get("evaluate", 0.0)
      rows.append({"trial": r["trial_id"], "student": r["name"], "status": r["status"],
                   "total_s": r.get("total_s"), "seconds": seconds,
                   "train_and_evaluate_share": round(in_steps / total, 3) if total else None,
                   "mlm_loss": r.get("mlm_loss")})
    later = [row["total_s"] for row in rows[1:] if row["total_s"]]
    runs.append({"elastic": elastic, "command_wall_s": round(wall, 1), "trials": rows,
                 "first_trial_s": rows[0]["total_s"] if rows else None,
                 "later_trials_median_s": sorted(later)[len(later) // 2] if later else None})
    print(json.dumps({k: v for k, v in runs[-1].items() if k != "trials"}), file=sys.stderr)
  return runs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/bench_trial")
  parser.add_argument("--arch", default="Model_128_32_4_128_4")
  parser.add_argument("--search-trials", type=int, default=0,
                      help="also time the trials of a search of this many trials (0: skip)")
  parser.add_argument("--only-search", action="store_true", help="skip the distill runs")
  parser.add_argument("--scan-blocks", action="store_true",
                      help="distil with distill.scan_blocks=True (skips the per-block run)")
  args = parser.parse_args()
  extra = ("--config.distill.scan_blocks=True",) if args.scan_blocks else ()
  workdir = pathlib.Path(args.workdir)
  if not (workdir / "teacher" / "fitted").exists():
    print(f"fitting the teacher in {workdir} first", file=sys.stderr)
    _run(_command(workdir, "teacher"))
  search = _search_runs(workdir, args.search_trials, extra) if args.search_trials else []
  if args.only_search:
    print(json.dumps({"cpus": os.cpu_count(), "search": search}, indent=2))
    return
  runs = []
  for program, cache in RUNS:
    if args.scan_blocks and program == "per_block":
      continue
    if cache == "cold":
      shutil.rmtree(workdir / ".jax_cache", ignore_errors=True)
    shutil.rmtree(workdir / "distill", ignore_errors=True)
    wall = _run(_command(workdir, "distill", f"--arch={args.arch}",
                         f"--config.distill.progressive_program={program}", *extra))
    (result,) = (workdir / "distill").glob("*/result.json")
    summary = json.loads(result.read_text())
    timings = summary["timings"]
    in_steps = timings.get("train", 0.0) + timings.get("evaluate", 0.0)
    runs.append({
        "progressive_program": program, "compilation_cache": cache,
        "scan_blocks": args.scan_blocks,
        "command_wall_s": round(wall, 1), "distill_s": round(sum(timings.values()), 1),
        "timings_s": timings,
        "train_and_evaluate_share_of_distill": round(in_steps / sum(timings.values()), 3),
        "train_and_evaluate_share_of_command": round(in_steps / wall, 3),
        "mlm_accuracy": summary["evals"]["pretraining_distillation"]["mlm_accuracy"],
    })
    print(json.dumps(runs[-1]), file=sys.stderr)
  print(json.dumps({"arch": summary["student"], "steps": summary["plan"],
                    "cpus": os.cpu_count(), "runs": runs, "search": search}, indent=2))


if __name__ == "__main__":
  main()
