"""Cost of one designer suggestion as a search grows: seconds and process memory, as JSON.

The search (paper section 3.5) asks the Vizier designer for one student per trial, and the
designer is rebuilt from the whole study on every call (:mod:`autodistill.search.designers`).
This replays a synthetic study on the paper's Table 1 space (576 points) with its two objectives
(MLM accuracy, maximised; latency, minimised) and measures, every ``--every`` trials, one
stateless suggestion (:func:`~autodistill.search.designers.make_designer`, ``update`` with all
completed trials, ``suggest(1)``) exactly as the Pythia policy makes it:

* ``suggest_s``: wall seconds of the call, and ``compile_s``, the part XLA spent compiling
  (JAX's ``backend_compile_duration`` events): ``gp_bandit``'s shapes change with every trial
  count unless a padding schedule rounds them up;
* ``rss_mb``: the process's resident memory after the call (``VmRSS`` of ``/proc/self/status``),
  to see whether memory keeps growing with the number of calls (compiled programs that are never
  freed would end a 500-trial search). ``gp_bandit`` calls are followed by
  ``designers.release_compiled()`` as in the search (``jax.clear_caches()`` after every
  ``--clear-every``-th suggestion, default the library's), unless ``--keep-caches``;
  ``rss_growth_mb_per_measured_call`` is the slope over the last two thirds;
* for ``gp_bandit``, ``heldout_mae``: mean absolute error of the GP's posterior mean (from
  ``predict``) against the synthetic truth on 48 fixed architectures of the space, per objective
  -- a padding schedule is only usable if it leaves the model unchanged.

Trials between measurements are random points of the space, and each measured suggestion is added
as the next trial. The synthetic metrics are smooth functions of the factors (accuracy grows with
the widths and FFN count, with noise of 0.005; latency grows with the widths and FFN count).

Each padding schedule (``--padding``, ``gp_bandit`` only) runs in its own subprocess so that
compilation caches and memory do not mix; each has JAX's persistent compilation cache in a fresh
directory of its own, as a search command has in its workdir (``--no-compilation-cache``: none).
``none`` is Vizier's default (no padding), the others are Vizier's ``PaddingType``s for the
number of trials.

Run: ``PYTHONPATH=. JAX_PLATFORMS=cpu python bench/designer_cost.py [--designer gp_bandit]
[--max-trials 500] [--every 20] [--padding none,powers_of_2] [--keep-caches]
[--no-compilation-cache] [--seed 0]``
(``--designer all`` or ``--designer random,eagle`` runs several). The commands behind the
padding and cache choices of :mod:`autodistill.search.designers.gp_bandit`, how long they take,
and what they measured are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np

PADDINGS = ("none", "multiples_of_10", "powers_of_2")


def rss_mb(field: str = "VmRSS") -> float:
  """Resident memory of this process in MiB (``VmRSS``, or the peak ``VmHWM``, of
  ``/proc/self/status``)."""
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  return float("nan")


def synthetic_metrics(point: dict, rng: np.random.Generator,
                      noise: float = 0.005) -> dict[str, float]:
  """Smooth stand-ins for MLM accuracy (with Gaussian noise) and latency of a Table 1 point."""
  accuracy = (0.20 + 0.030 * np.log2(point["hidden_size"])
              + 0.020 * np.log2(point["bottleneck_size"])
              + 0.010 * np.log2(point["intermediate_size"]) + 0.015 * point["num_ffn"]
              - 0.004 * abs(np.log2(point["num_heads"]) - 2) + noise * rng.normal())
  latency = (1.0 + 0.004 * point["hidden_size"] + 0.010 * point["bottleneck_size"]
             + 0.002 * point["intermediate_size"] * point["num_ffn"] / 4
             + 0.05 * point["num_heads"])
  return {"mlm_accuracy": float(accuracy), "latency_ms": float(latency)}


def _schedule(name: str):
  from vizier.pyvizier.converters import padding
  if name == "none":
    return padding.PaddingSchedule()
  kind = {"multiples_of_10": padding.PaddingType.MULTIPLES_OF_10,
          "powers_of_2": padding.PaddingType.POWERS_OF_2}[name]
  return padding.PaddingSchedule(num_trials=kind)


def run_one(designer: str, space_name: str, max_trials: int, every: int, padding_name: str,
            seed: int, keep_caches: bool, compilation_cache: bool = True,
            clear_every: Optional[int] = None) -> dict:
  """One replay in this process (see the module docstring)."""
  import tempfile

  import jax
  if clear_every is not None:
    from autodistill.search.designers import gp_bandit
    gp_bandit.CLEAR_JAX_CACHES_EVERY = clear_every
  if compilation_cache:  # as a search command does, in a workdir of its own (empty at first)
    from autodistill.workdir import use_compilation_cache
    use_compilation_cache(tempfile.mkdtemp(prefix="designer_cost_"))
  from vizier import algorithms as vza
  from vizier import pyvizier as vz

  from autodistill.search import designers
  from autodistill.search.problem import parameters_of, point_of, problem_statement
  from autodistill.space import get_space

  compile_s = collections.Counter()

  def listener(event: str, duration: float, **unused) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
      compile_s["total"] += duration

  jax.monitoring.register_event_duration_secs_listener(listener)
  space = get_space(space_name)
  problem = problem_statement(space, ("mlm_accuracy", "latency_ms"))
  points = list(space.points())
  rng = np.random.default_rng(seed)
  heldout = [points[i] for i in np.random.default_rng(1234).choice(len(points), 48, replace=False)]
  heldout_truth = np.array([[m["mlm_accuracy"], m["latency_ms"]] for m in
                            (synthetic_metrics(p, rng, noise=0.0) for p in heldout)])
  heldout_suggestions = [vz.TrialSuggestion(parameters=parameters_of(space, p)) for p in heldout]
  schedule = _schedule(padding_name) if designer == "gp_bandit" else None

  history: list[vz.Trial] = []
  steps = []
  start_rss = rss_mb()
  start = time.perf_counter()
  for k in range(max_trials + 1):
    point = None
    if k % every == 0:
      compile_s.clear()
      t0 = time.perf_counter()
      d = designers.make_designer(designer, problem, seed=seed, num_trials=k,
                                  padding_schedule=schedule)
      d.update(vza.CompletedTrials([t for t in history]), vza.ActiveTrials())
      suggestion = d.suggest(1)[0]
      elapsed = time.perf_counter() - t0
      step = {"trials": k, "suggest_s": round(elapsed, 3),
              "compile_s": round(compile_s["total"], 3)}
      if designer == "gp_bandit" and k >= 2:
        prediction = d.predict(heldout_suggestions, rng=jax.random.PRNGKey(0), num_samples=200)
        mean = np.asarray(prediction.mean)
        # The GP reports minimised metrics negated (it maximises everything).
        mean[:, 1] = np.abs(mean[:, 1])
        step["heldout_mae"] = [round(float(x), 4) for x in
                               np.abs(mean - heldout_truth).mean(axis=0)]
      if designer == "gp_bandit" and not keep_caches:
        designers.release_compiled()  # what designers.suggest does after a gp_bandit call
      step["rss_mb"] = round(rss_mb(), 1)
      step["load_1min"] = round(os.getloadavg()[0], 2)
      steps.append(step)
      print(json.dumps(step), file=sys.stderr, flush=True)
      point = point_of(space, suggestion.parameters.as_dict())
      del d
    if k == max_trials:
      break
    if point is None:
      point = points[rng.integers(len(points))]
    trial = vz.Trial(parameters=parameters_of(space, point), id=k + 1)
    trial.complete(vz.Measurement(metrics=synthetic_metrics(point, rng)))
    history.append(trial)

  rss = [s["rss_mb"] for s in steps]
  later = steps[len(steps) // 3:]
  growth = (float(np.polyfit([s["trials"] for s in later], [s["rss_mb"] for s in later], 1)[0])
            * every if len(later) >= 2 else float("nan"))
  return {
      "designer": designer, "padding": padding_name if designer == "gp_bandit" else None,
      "jax_caches": ("kept" if keep_caches else
                     f"cleared every {designers.CLEAR_JAX_CACHES_EVERY} suggestions")
                    if designer == "gp_bandit" else None,
      "compilation_cache": "workdir" if compilation_cache else "none",
      "space": space.name, "max_trials": max_trials, "every": every, "seed": seed,
      "total_s": round(time.perf_counter() - start, 1), "start_rss_mb": round(start_rss, 1),
      "final_rss_mb": rss[-1], "peak_rss_mb": round(rss_mb("VmHWM"), 1),
      "rss_growth_mb_per_measured_call": round(growth, 2),
      "steps": steps,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--designer", default="gp_bandit",
                      help="comma-separated names of autodistill.search.designers.DESIGNERS, "
                      "or 'all'")
  parser.add_argument("--space", default="table1", help="a preset of autodistill.space.SPACES")
  parser.add_argument("--max-trials", type=int, default=500, help="completed trials at the end")
  parser.add_argument("--every", type=int, default=20, help="measure a suggestion every k trials")
  parser.add_argument("--padding", default="none,powers_of_2",
                      help=f"comma-separated gp_bandit padding schedules of {PADDINGS} "
                      "(multiples_of_10 pads nothing at trial counts that are multiples of 10)")
  parser.add_argument("--keep-caches", action="store_true",
                      help="gp_bandit: keep JAX's compilation caches between suggestions instead "
                      "of clearing them as autodistill.search.designers.suggest does")
  parser.add_argument("--clear-every", type=int, default=None,
                      help="gp_bandit: clear JAX's caches after every k-th suggestion (default: "
                      "the library's gp_bandit.CLEAR_JAX_CACHES_EVERY; 1 = after each)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-compilation-cache", action="store_true",
                      help="do not use JAX's persistent compilation cache (a search command uses "
                      "one in its workdir, autodistill.workdir.use_compilation_cache; by default "
                      "each replay gets a fresh one)")
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:
    designer, padding_name = args.worker.split(":")
    print(json.dumps(run_one(designer, args.space, args.max_trials, args.every, padding_name,
                             args.seed, args.keep_caches, not args.no_compilation_cache,
                             args.clear_every)))
    return

  from autodistill.search.designers import DESIGNERS  # noqa: F401 (validates the install)
  names = list(DESIGNERS) if args.designer == "all" else args.designer.split(",")
  for name in names:
    if name not in DESIGNERS:
      parser.error(f"unknown designer {name!r}; choose from {list(DESIGNERS)} or 'all'")
  paddings = [p for p in args.padding.split(",") if p]
  for p in paddings:
    if p not in PADDINGS:
      parser.error(f"unknown padding {p!r}; choose from {list(PADDINGS)}")
  runs = []
  for name in names:
    for padding_name in (paddings if name == "gp_bandit" else ["none"]):
      command = [sys.executable, os.path.abspath(__file__), "--worker", f"{name}:{padding_name}",
                 "--space", args.space, "--max-trials", str(args.max_trials),
                 "--every", str(args.every), "--seed", str(args.seed)]
      command += ["--keep-caches"] if args.keep_caches else []
      command += ["--no-compilation-cache"] if args.no_compilation_cache else []
      command += [] if args.clear_every is None else ["--clear-every", str(args.clear_every)]
      done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
      runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
  print(json.dumps({"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "runs": runs},
                   indent=1))


if __name__ == "__main__":
  main()
