"""The paper's Tables 2-4 in kind, at the embedded demo's scale, from the product's own commands;
Markdown + JSON.

Table 2 of the paper lists the searched students' parameters, latency and pre-training accuracy
next to MobileBERT's; Tables 3 and 4 their downstream scores next to MobileBERT's and the
teacher's. This script makes the same three tables with nothing but the CLI a user runs, in one
workdir (every step is cached and resumable, so a rerun finishes what is missing):

1. ``autodistill search`` with ``--config`` (default: the embedded demo config);
2. picks the search's best ``--winners`` students (its ranked Pareto front: those that beat the
   baseline first, then by the first objective) and the baseline trial;
3. ``autodistill finalize`` of those trials (the config's regular recipe: 2 x 40 + 520 steps on
   the demo) -- Table 2: parameters, batch-1 latency (with its noise) and held-out MLM accuracy
   and loss after regular distillation, and the difference to the baseline with whether it is
   beyond the noise (accuracy and loss judged *paired* over the same held-out predictions,
   latency by the search's rule);
4. ``autodistill finetune`` of the finalized students and the teacher on the offline tasks
   (BBC topics and tweet sentiment; ``--tasks``) -- Tables 3-4: test scores (x100) per task and
   their average, from ``finetune/report.csv``. The students at the config's learning rate
   (3e-3), the teacher at ``--teacher-learning-rates`` (default 1e-4).

    python bench/paper_tables.py --workdir=workdir/paper_tables \\
        --out=bench/data/paper_tables_cpu_demo.json --markdown=bench/data/paper_tables_cpu_demo.md

Copy ``teacher/`` and ``data_cache/`` from a demo workdir into ``--workdir`` to skip the teacher
stage. About 35 minutes on 2 cores for the students and 45 for the teacher, with
``--max-train-examples=8000`` (the default; tweet sentiment's 32k tweets otherwise dominate).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def _cli(command: str, workdir: pathlib.Path, extra: list[str]) -> float:
  """Runs ``autodistill <command>``; returns its wall time. Exits with its output on failure."""
  argv = [sys.executable, "-m", "autodistill", command, f"--workdir={workdir}",
          "--config.runtime.progress=False"] + extra
  print("$ " + " ".join(argv[1:]), file=sys.stderr, flush=True)
  start = time.perf_counter()
  done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO,
                        env=dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu")))
  if done.returncode:
    sys.exit(f"autodistill {command} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
  print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "", file=sys.stderr)
  return round(time.perf_counter() - start, 1)


def _load_config(spec: str):
  """The config of ``--config`` (``path[:argument]``, as the CLI takes it), or the default."""
  # pylint: disable=import-outside-toplevel
  import importlib.util

  from autodistill.config import default_config
  if not spec:
    return default_config()
  path, _, argument = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("experiment_config", REPO / path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


def _paired(workdir: pathlib.Path, names: list[str], config) -> dict[str, dict]:
  """Each finalized student's per-prediction held-out scores (for paired differences)."""
  # pylint: disable=import-outside-toplevel
  from autodistill.distill.distillation import distilled_predictions
  from autodistill.experiment import Experiment
  with Experiment.create(config, workdir, log=lambda _: None) as experiment:
    return {n: distilled_predictions(workdir / "final" / n, experiment.eval_data) for n in names}


def _table2(workdir: pathlib.Path, picks: list, baseline, each: dict[str, dict]) -> list[dict]:
  """One row per finalized student: the search's record, the regular run's held-out metrics,
  and its differences to the baseline, judged paired over the same held-out predictions."""
  # pylint: disable-next=import-outside-toplevel
  from autodistill.search.fidelity import paired_standard_error
  rows = []
  for record in [baseline] + picks:
    result = json.loads((workdir / "final" / record.name / "result.json").read_text())
    final = result["evals"][list(result["evals"])[-1]]
    n = final["mlm_predictions"]
    rows.append({"student": record.name, "baseline": record is baseline,
                 "params_m": record.params / 1e6, "latency_ms": record.latency_ms,
                 "latency_noise_ms": 2 * (record.latency_std_ms or 0.0),
                 "flash_mlm_loss": record.mlm_loss,
                 "mlm_accuracy": final["mlm_accuracy"],
                 "mlm_accuracy_se": math.sqrt(final["mlm_accuracy"]
                                              * (1 - final["mlm_accuracy"]) / n),
                 "mlm_loss": final["mlm_loss"],
                 "mlm_loss_se": final["mlm_loss_std"] / math.sqrt(n)})
  base = rows[0]
  for row in rows[1:]:
    mine, theirs = each[row["student"]], each[base["student"]]
    d_acc = row["mlm_accuracy"] - base["mlm_accuracy"]
    d_loss = row["mlm_loss"] - base["mlm_loss"]
    d_lat = row["latency_ms"] - base["latency_ms"]
    se_acc = paired_standard_error(mine["mlm_correct"], theirs["mlm_correct"])
    se_loss = paired_standard_error(mine["mlm_loss"], theirs["mlm_loss"])
    # NOISE_K (2) standard errors, the search's rule for metrics.
    row["accuracy_vs_baseline"] = {"difference": d_acc, "paired_se": se_acc,
                                   "beyond_noise": abs(d_acc) > 2 * se_acc}
    row["loss_vs_baseline"] = {"difference": d_loss, "paired_se": se_loss,
                               "beyond_noise": abs(d_loss) > 2 * se_loss}
    row["latency_vs_baseline"] = {
        "difference_ms": d_lat,
        "beyond_noise": abs(d_lat) > max(row["latency_noise_ms"], base["latency_noise_ms"])}
  return rows


def _cell(column: str, value: str) -> str:
  """A report.csv cell for the page: scores to 0.1, parameters to 0.01M, latency to 0.001 ms."""
  digits = {"params (M)": 2, "latency (ms)": 3}.get(column, 1)
  try:
    return f"{float(value):.{digits}f}"
  except ValueError:
    return value


def _markdown(table2: list[dict], downstream: list[dict]) -> str:
  lines = ["Table 2 in kind (regular distillation of the search's winners and the baseline):", "",
           "| student | params (M) | latency (ms) | held-out MLM accuracy | MLM loss | "
           "vs baseline: accuracy / latency; loss (paired, 2 SE) |", "|---|---|---|---|---|---|"]
  for r in table2:
    versus = "baseline" if r["baseline"] else (
        f"{100 * r['accuracy_vs_baseline']['difference']:+.2f} pts"
        f"{'' if r['accuracy_vs_baseline']['beyond_noise'] else ' (tie)'} / "
        f"{r['latency_vs_baseline']['difference_ms']:+.3f} ms"
        f"{'' if r['latency_vs_baseline']['beyond_noise'] else ' (tie)'}; loss "
        f"{r['loss_vs_baseline']['difference']:+.3f}"
        f"{'' if r['loss_vs_baseline']['beyond_noise'] else ' (tie)'}")
    lines.append(f"| {r['student'].split('-')[0]} | {r['params_m']:.2f} | "
                 f"{r['latency_ms']:.3f} ± {r['latency_noise_ms']:.3f} | "
                 f"{100 * r['mlm_accuracy']:.2f} ± {200 * r['mlm_accuracy_se']:.2f}% | "
                 f"{r['mlm_loss']:.3f} | {versus} |")
  if downstream:
    header = list(downstream[0])
    lines += ["", "Tables 3-4 in kind (test scores x100 after `autodistill finetune`):", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(h, row[h]) for h in header) + " |" for row in downstream]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="workdir/paper_tables")
  parser.add_argument("--config", default="", help="an experiment file (default: the demo's)")
  parser.add_argument("--winners", type=int, default=3)
  parser.add_argument("--tasks", default="bbc_topic,tweet_sentiment")
  parser.add_argument("--max-train-examples", type=int, default=8000)
  parser.add_argument("--teacher-learning-rates", default="1e-4",
                      help="the teacher's fine-tuning rates (the product's default sweeps "
                           "5e-5,1e-4; one rate halves the teacher's hour on 2 cores)")
  parser.add_argument("--out", default="")
  parser.add_argument("--markdown", default="")
  args = parser.parse_args()
  sys.path.insert(0, str(REPO))
  # pylint: disable=import-outside-toplevel
  from autodistill.search import pareto
  from autodistill.search.finalize import read_records

  workdir = pathlib.Path(args.workdir)
  common = [f"--config={args.config}"] if args.config else []
  seconds = {"search": _cli("search", workdir, common)}
  records = read_records(workdir)
  objectives = [o["name"] for o in json.loads(
      (workdir / "pareto_front.json").read_text())["objectives"]]
  baseline = pareto.baseline_record(records)
  picks = [r for r in pareto.ranked_front(records, objectives)
           if not r.is_baseline][:args.winners]
  trials = ",".join(str(r.trial_id) for r in [baseline] + picks)
  seconds["finalize"] = _cli("finalize", workdir, common + [
      f"--config.finalize.trials=({trials},)"])
  tasks = ",".join(f"'{t}'" for t in args.tasks.split(","))
  seconds["finetune"] = _cli("finetune", workdir, common + [
      "--config.finetune.models=('final','teacher')", f"--config.finetune.tasks=({tasks},)",
      f"--config.finetune.teacher_learning_rates=({args.teacher_learning_rates},)",
      f"--config.finetune.max_train_examples={args.max_train_examples}"])
  each = _paired(workdir, [r.name for r in [baseline] + picks], _load_config(args.config))
  table2 = _table2(workdir, picks, baseline, each)
  with (workdir / "finetune" / "report.csv").open() as f:
    downstream = list(csv.DictReader(f))
  result = {"benchmark": "paper_tables", "objectives": objectives, "table2": table2,
            "downstream": downstream, "seconds": seconds, "cpus": os.cpu_count(),
            "max_train_examples": args.max_train_examples}
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  if args.markdown:
    pathlib.Path(args.markdown).write_text(_markdown(table2, downstream))


if __name__ == "__main__":
  main()
