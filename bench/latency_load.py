"""Does a latency sweep rank students the same while a distillation runs beside it? JSON.

Issue 17, goal 4: two search workers on one host means one worker's latency measurements are
timed while the other distils. This script sweeps the batch-1 latency of every student of the
workdir's space (``autodistill latency``'s :func:`~autodistill.hardware.measure_space`, the
config's timing policy) three times, each into a fresh cache:

  idle     nothing else running
  loaded   while ``autodistill distill`` of a student runs in another process (a long
           pre-training distillation on the same workdir's teacher, started first and past its
           compilation before the sweep begins)
  idle2    nothing else running again (how well two idle sweeps agree: the noise floor)

and reports, for loaded vs idle and idle2 vs idle: Spearman and Kendall rank correlations of the
medians (SciPy), the median relative difference, and the ``other_load`` each row recorded (the
cores' worth of CPU other processes used during its timed calls) with how many rows the library
flags as contended (``latency.max_other_load``), i.e. would measure again before trusting.

    python bench/latency_load.py --workdir=workdir/bench_trial     # ~6 min on 2 cores

The workdir must have a fitted teacher (run ``bench/trial_cost.py`` or ``autodistill teacher``
on it first). The sweeps' rows are kept as JSONL beside ``--output`` for re-analysis. Run it on
an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def _arch_names(workdir: pathlib.Path, limit: int) -> tuple[list, object]:
  from autodistill.config import default_config
  from autodistill.experiment import Experiment

  with Experiment.create(default_config(), workdir) as experiment:
    settings, teacher = experiment.settings, experiment.teacher_config
    archs = settings.space.architectures(
        vocab_size=teacher.vocab_size, max_position_embeddings=teacher.max_position_embeddings,
        type_vocab_size=teacher.type_vocab_size)
  return archs[:limit] if limit else archs, settings.latency


def _sweep(archs, latency, cache_path: pathlib.Path) -> list[dict]:
  from autodistill.hardware import LatencyCache, measure_space

  start = time.perf_counter()
  with LatencyCache(cache_path) as cache:
    results = measure_space(archs, cache, **latency.key_settings, **latency.timing,
                            progress=False)
  print(f"  swept {len(results)} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
  return [dict(arch=r.arch, ok=r.ok, median_ms=r.median_ms, std_ms=r.std_ms, cv=r.cv,
               other_load=r.other_load, load_avg=r.load_avg) for r in results]


def _start_load(workdir: pathlib.Path, arch: str, log: pathlib.Path) -> subprocess.Popen:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  command = [sys.executable, "-m", "autodistill", "distill", f"--arch={arch}",
             f"--workdir={workdir}", "--config.runtime.progress=False",
             "--config.distill.pretrain_steps=1000000", "--config.distill.steps_per_block=1",
             "--config.distill.checkpoint_every=1000000", "--config.distill.log_every=20"]
  return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_training(workdir: pathlib.Path, log: pathlib.Path, process: subprocess.Popen,
                   timeout_s: float) -> None:
  """Waits until the background distillation writes its first pre-training metric line."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if process.poll() is not None:
      sys.exit(f"the background distillation exited early:\n{log.read_text()[-2000:]}")
    if any('"pretraining_distillation"' in path.read_text()
           for path in workdir.glob("distill/*/metrics.jsonl")):
      return
    time.sleep(2)
  sys.exit(f"the background distillation did not start training in {timeout_s:.0f} s")


def _compare(a: list[dict], b: list[dict], max_other_load: float) -> dict:
  from scipy import stats

  pairs = [(x["median_ms"], y["median_ms"]) for x, y in zip(a, b) if x["ok"] and y["ok"]]
  x, y = (np.asarray(v) for v in zip(*pairs))
  loads = [r["other_load"] for r in b if r["other_load"] is not None]
  return dict(
      students=len(pairs),
      spearman=round(float(stats.spearmanr(x, y).statistic), 4),
      kendall=round(float(stats.kendalltau(x, y).statistic), 4),
      median_relative_difference=round(float(np.median(y / x - 1)), 4),
      other_load_median=round(float(np.median(loads)), 3) if loads else None,
      other_load_max=round(float(np.max(loads)), 3) if loads else None,
      contended_rows=sum(load > max_other_load for load in loads))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="workdir/bench_trial",
                      help="a workdir with a fitted teacher (copied, not modified)")
  parser.add_argument("--load-arch", default="Model_128_32_4_128_4",
                      help="the student the background distillation trains")
  parser.add_argument("--limit", type=int, default=0, help="first N students only (0: all)")
  parser.add_argument("--min-runs", type=int, default=None,
                      help="timed calls per student (default: the config's latency.min_runs)")
  parser.add_argument("--min-time", type=float, default=None,
                      help="seconds of timed calls per student (default: latency.min_time_s)")
  parser.add_argument("--output", default="bench/data/latency_load_cpu_demo.json")
  args = parser.parse_args()

  source = pathlib.Path(args.workdir)
  if not (source / "teacher").is_dir():
    sys.exit(f"{source} has no fitted teacher; run `python -m autodistill teacher "
             f"--workdir={source}` first.")
  output = pathlib.Path(args.output)
  with tempfile.TemporaryDirectory(prefix="latency_load_") as tmp:
    tmp = pathlib.Path(tmp)
    workdir = tmp / "workdir"
    shutil.copytree(source / "teacher", workdir / "teacher")
    if (source / "data_cache").is_dir():
      shutil.copytree(source / "data_cache", workdir / "data_cache")
    archs, latency = _arch_names(workdir, args.limit)
    latency = dataclasses.replace(
        latency, min_runs=args.min_runs or latency.min_runs,
        min_time_s=args.min_time or latency.min_time_s)
    print(f"{len(archs)} students; timing {latency.timing}", file=sys.stderr)
    sweeps = {}
    print("idle sweep", file=sys.stderr)
    sweeps["idle"] = _sweep(archs, latency, tmp / "idle.sqlite")
    log = tmp / "load.log"
    load = _start_load(workdir, args.load_arch, log)
    try:
      _wait_training(workdir, log, load, timeout_s=600)
      print(f"loaded sweep (distillation pid {load.pid} running)", file=sys.stderr)
      sweeps["loaded"] = _sweep(archs, latency, tmp / "loaded.sqlite")
    finally:
      load.terminate()
      load.wait(timeout=60)
    print("second idle sweep", file=sys.stderr)
    sweeps["idle2"] = _sweep(archs, latency, tmp / "idle2.sqlite")

  limit = latency.max_other_load
  report = dict(
      command=" ".join([pathlib.Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
      students=len(archs), timing=latency.timing, max_other_load=limit,
      load=f"autodistill distill --arch={args.load_arch} (pre-training distillation)",
      loaded_vs_idle=_compare(sweeps["idle"], sweeps["loaded"], limit),
      idle2_vs_idle=_compare(sweeps["idle"], sweeps["idle2"], limit),
      idle_other_load_max=max((r["other_load"] or 0) for r in sweeps["idle"]))
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(json.dumps(report, indent=1) + "\n")
  with output.with_name(output.stem + "_rows.jsonl").open("w") as f:
    for name, rows in sweeps.items():
      for row in rows:
        f.write(json.dumps(dict(sweep=name, **row)) + "\n")
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
