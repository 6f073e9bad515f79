"""Does flash distillation rank students as regular distillation does? (paper section 4.7,
Figures 5 and 6, in kind); JSON + a plot.

The paper distils students with the regular recipe (740k steps) and with flash budgets of 1.25%,
2.5%, 5% and 10% of it, the ratio of progressive to pre-training distillation fixed, picks 5%
because accuracy grows logarithmically (Fig. 5), and shows that the students' relative positions
hold from flash to regular (Fig. 6). Here, at the embedded demo's scale:

* **Students**: ``--students`` (default 12) points of the ``cpu_demo`` space spread evenly over
  its analytic parameter count (the baseline always among them), so both widths and the range of
  latencies are covered.
* **Regular**: the demo's finalize recipe (``finalize.steps_per_block`` 40 x 2 blocks +
  ``finalize.pretrain_steps`` 520 = 600 steps, warm-up 36).
* **Flash budgets**: 1.25%, 2.5%, 5% and 10% of every count of the regular recipe (rounded, at
  least one step per stage), so the progressive/pre-training ratio stays the regular one's as in
  the paper; and ``default``, the demo's own trial recipe (2 x 10 + 40 = 60 steps, 10% of regular
  but with a larger progressive share), which is what the search uses.
* Every (budget, student) is distilled exactly as a search trial is
  (:func:`autodistill.search.evaluate.evaluate_student`: the space's elastic envelope, the demo's
  teacher, data and held-out split, batch-1 latency from the workdir's cache), so flash and regular
  differ only in their step counts.
* Per budget: Spearman and Kendall correlations of held-out MLM accuracy and loss with the
  regular run, with 95% bootstrap intervals over the students
  (:func:`autodistill.search.fidelity.rank_agreement`); of the student pairs the regular run
  separates by more than 3 standard errors, the share the budget orders the same way
  (:func:`~autodistill.search.fidelity.resolved_concordance`), with unpaired standard errors
  and with *paired* ones (regular and default: every student is re-scored per held-out masked
  prediction, :func:`autodistill.distill.evaluation.held_out_predictions`, and a pair's
  difference is judged by the spread of its per-prediction differences, which is far smaller
  because students err on the same tokens); the mean accuracy and the distillation time
  (Fig. 5).

    python bench/flash_fidelity.py --workdir=workdir/flash_fidelity \\
        --out=bench/data/flash_fidelity_cpu_demo.json --plot=docs/flash_fidelity.png

About 40 minutes on 2 cores with a fitted teacher (copy ``teacher/`` and ``data_cache/`` from a
demo workdir to skip the teacher stage). Resumable: each (budget, student) is a trial directory
under ``<workdir>/flash_fidelity/<budget>/<student>`` whose finished result is read back, so a
killed run picks up where it stopped and a finished one rebuilds the JSON and plot in a minute.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import pathlib
import sys

import numpy as np

FRACTIONS = (0.0125, 0.025, 0.05, 0.1)
DEFAULT = "default"  # the demo's own flash recipe


def budget_counts(fraction: float, regular: dict[str, int]) -> dict[str, int]:
  """Step counts of a flash budget: every count of the regular recipe times ``fraction``."""
  return {key: max(1, round(value * fraction)) for key, value in regular.items()}


def pick_students(points: list[dict], count: int, size, baseline: dict) -> list[dict]:
  """``count`` points spread evenly over ``size(point)``, with the baseline among them."""
  ranked = sorted(points, key=lambda p: (size(p), json.dumps(p, sort_keys=True)))
  picks = [ranked[int(round(i))] for i in np.linspace(0, len(ranked) - 1, count)]
  if baseline not in picks:  # replace the pick nearest the baseline's size
    nearest = min(range(count), key=lambda i: abs(size(picks[i]) - size(baseline)))
    picks[nearest] = baseline
  return picks


def _row(budget: str, steps: int, record, trial_dir: pathlib.Path) -> dict:
  n, p = record.mlm_predictions, record.mlm_accuracy
  # The distillation's own wall time (a finished trial read back reports 0 in its record).
  seconds = json.loads((trial_dir / "result.json").read_text())["seconds"]
  return {"budget": budget, "steps": steps, "student": record.name, "params": record.params,
          "mlm_accuracy": p, "mlm_accuracy_se": math.sqrt(p * (1 - p) / n),
          "mlm_loss": record.mlm_loss, "mlm_loss_se": record.mlm_loss_std / math.sqrt(n),
          "latency_ms": record.latency_ms, "latency_std_ms": record.latency_std_ms,
          "distill_s": round(seconds, 1), "status": record.status}


PAIRED = ("regular", DEFAULT)  # budgets whose pairs are also judged paired (per prediction)


def paired_errors(predictions: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
  """[n, n]: the paired standard error of each pair's difference in mean ``key`` over the same
  held-out predictions (:func:`autodistill.search.fidelity.paired_standard_error`)."""
  # pylint: disable-next=import-outside-toplevel
  from autodistill.search.fidelity import paired_standard_error
  n = len(predictions)
  out = np.zeros((n, n))
  for i, j in itertools.combinations(range(n), 2):
    out[i, j] = out[j, i] = paired_standard_error(predictions[i][key], predictions[j][key])
  return out


def _apart(rows: list[dict], key: str) -> int:
  """Student pairs whose ``key`` differs by more than 3 standard errors of the difference."""
  return sum(abs(a[key] - b[key]) > 3 * math.hypot(a[key + "_se"], b[key + "_se"])
             for a, b in itertools.combinations(rows, 2))


def _hidden(row: dict) -> int:
  return int(row["student"].split("_")[1])


def summarise(by_budget: dict[str, list[dict]], regular: str, resamples: int,
              paired: dict[str, dict[str, np.ndarray]]) -> list[dict]:
  # pylint: disable-next=import-outside-toplevel
  from autodistill.search.fidelity import rank_agreement, resolved_concordance, spearman
  reference = by_budget[regular]
  out = []
  for budget, rows in by_budget.items():
    summary = {"budget": budget, "steps": rows[0]["steps"],
               "share_of_regular": rows[0]["steps"] / reference[0]["steps"],
               "mean_mlm_accuracy": float(np.mean([r["mlm_accuracy"] for r in rows])),
               "mean_mlm_loss": float(np.mean([r["mlm_loss"] for r in rows])),
               "mean_distill_s": float(np.mean([r["distill_s"] for r in rows])),
               "distinct_accuracies": len({r["mlm_accuracy"] for r in rows}),
               "pairs_apart_3se_accuracy": _apart(rows, "mlm_accuracy"),
               "pairs_apart_3se_loss": _apart(rows, "mlm_loss")}
    for key, metric in (("mlm_accuracy", "mlm_correct"), ("mlm_loss", "mlm_loss")):
      if budget in paired:
        values = np.array([r[key] for r in rows])
        errors = paired[budget][metric]
        summary[f"pairs_apart_3se_paired_{key.split('_')[1]}"] = int(sum(
            abs(values[i] - values[j]) > 3 * errors[i, j]
            for i, j in itertools.combinations(range(len(rows)), 2)))
    if budget != regular:
      for key in ("mlm_accuracy", "mlm_loss"):
        cheap, full = [r[key] for r in rows], [r[key] for r in reference]
        summary[f"{key}_vs_regular"] = rank_agreement(cheap, full, resamples=resamples)
        summary[f"{key}_resolved_pairs_vs_regular"] = resolved_concordance(
            cheap, full, [r[key + "_se"] for r in reference])
        summary[f"{key}_resolved_paired_pairs_vs_regular"] = resolved_concordance(
            cheap, full, paired[regular]["mlm_correct" if key == "mlm_accuracy" else key])
        # Beyond width: the same correlation inside each hidden size (width alone separates
        # these students at this scale, see the README).
        summary[f"{key}_spearman_within_hidden_size"] = {
            width: spearman([c for c, r in zip(cheap, rows) if _hidden(r) == width],
                            [f for f, r in zip(full, rows) if _hidden(r) == width])
            for width in sorted({_hidden(r) for r in rows})}
    out.append(summary)
  return out


def plot(result: dict, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  summaries = [s for s in result["summaries"] if s["budget"] not in (DEFAULT,)]
  fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
  # Fig. 5 in kind: accuracy and time against the budget.
  steps = [s["steps"] for s in summaries]
  ax1.plot(steps, [100 * s["mean_mlm_accuracy"] for s in summaries], "o-", label="MLM accuracy")
  ax1.set_xscale("log")
  ax1.set_xlabel("distillation steps (log)")
  ax1.set_ylabel("mean held-out MLM accuracy (%)")
  twin = ax1.twinx()
  twin.plot(steps, [s["mean_distill_s"] for s in summaries], "s--", color="tab:red")
  twin.set_ylabel("distillation time per student (s)", color="tab:red")
  ax1.set_title("Fig. 5 in kind: accuracy vs budget")
  # Fig. 6 in kind: each student at the default flash budget and at regular, accuracy vs latency.
  rows = result["runs"]
  for budget, marker in ((DEFAULT, "o"), (result["regular"], "s")):
    mine = [r for r in rows if r["budget"] == budget]
    ax2.errorbar([r["latency_ms"] for r in mine], [100 * r["mlm_accuracy"] for r in mine],
                 xerr=[2 * (r["latency_std_ms"] or 0) for r in mine],
                 yerr=[200 * r["mlm_accuracy_se"] for r in mine], fmt=marker,
                 label=f"{budget} ({mine[0]['steps']} steps)", capsize=2)
    base = [r for r in mine if r["student"] == result["baseline"]]
    ax2.plot([base[0]["latency_ms"]], [100 * base[0]["mlm_accuracy"]], "p", color="black",
             markersize=11, fillstyle="none")
  ax2.set_xlabel("batch-1 latency (ms)")
  ax2.set_ylabel("held-out MLM accuracy (%), ±2 SE")
  ax2.set_title("Fig. 6 in kind (pentagon: baseline)")
  ax2.legend(fontsize=8)
  # Rank agreement with regular against the budget.
  for key, label in (("mlm_accuracy", "accuracy"), ("mlm_loss", "loss")):
    ys = [s[f"{key}_vs_regular"]["spearman"] for s in summaries if f"{key}_vs_regular" in s]
    cis = [s[f"{key}_vs_regular"]["spearman_ci"] for s in summaries if f"{key}_vs_regular" in s]
    xs = [s["share_of_regular"] * 100 for s in summaries if f"{key}_vs_regular" in s]
    ax3.errorbar(xs, ys, yerr=[[y - c[0] for y, c in zip(ys, cis)],
                               [c[1] - y for y, c in zip(ys, cis)]],
                 fmt="o-", capsize=3, label=f"Spearman, {label}")
  default = next(s for s in result["summaries"] if s["budget"] == DEFAULT)
  for key, color in (("mlm_accuracy", "C0"), ("mlm_loss", "C1")):
    ax3.plot([default["share_of_regular"] * 100], [default[f"{key}_vs_regular"]["spearman"]],
             "*", color=color, markersize=13)
  ax3.plot([], [], "*", color="grey", label="default recipe (2 x 10 + 40 steps)")
  ax3.axhline(0.8, color="grey", linestyle=":", label="goal 0.8")
  ax3.set_xscale("log")
  ax3.set_xticks([100 * f for f in FRACTIONS], [f"{100 * f:g}%" for f in FRACTIONS])
  ax3.minorticks_off()
  ax3.set_xlabel("flash budget (% of regular steps, log)")
  ax3.set_ylabel("rank correlation with regular (95% CI)")
  ax3.set_title("Ranking fidelity")
  ax3.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="workdir/flash_fidelity")
  parser.add_argument("--students", type=int, default=12)
  parser.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS))
  parser.add_argument("--resamples", type=int, default=2000)
  parser.add_argument("--out", default="")
  parser.add_argument("--plot", default="")
  args = parser.parse_args()
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  # pylint: disable=import-outside-toplevel
  from autodistill.config import default_config
  from autodistill.distill.distillation import distilled_predictions
  from autodistill.distill.evaluation import chance_mlm_accuracy
  from autodistill.experiment import Experiment
  from autodistill.models.params import analytic_param_count
  from autodistill.search.evaluate import evaluate_student
  from autodistill.search.records import TrialRecord

  quiet = lambda message: print(message, file=sys.stderr)  # noqa: E731
  workdir = pathlib.Path(args.workdir)
  base = default_config()
  regular = {"steps_per_block": base.finalize.steps_per_block,
             "pretrain_steps": base.finalize.pretrain_steps,
             "warmup_steps": base.finalize.warmup_steps}
  budgets = {f"{100 * float(f):g}%": budget_counts(float(f), regular)
             for f in args.fractions.split(",")}
  budgets[DEFAULT] = {"steps_per_block": base.distill.steps_per_block,
                      "pretrain_steps": base.distill.pretrain_steps,
                      "warmup_steps": base.distill.warmup_steps}
  budgets["regular"] = regular
  by_budget, chance, picks, baseline, paired = {}, None, None, None, {}
  for budget, counts in budgets.items():
    config = default_config()
    config.runtime.progress = False
    config.distill.update(counts)
    experiment = Experiment.create(config, workdir, log=quiet)
    context = experiment.search_context()
    if picks is None:
      chance = chance_mlm_accuracy(context.eval_data)
      size = lambda p: analytic_param_count(context.student(p), heads=False)  # noqa: E731
      picks = pick_students(context.space.valid_points(), args.students, size,
                            context.space.baseline)
      baseline = context.student(context.space.baseline).name
    steps = context.distill_config.plan(2).total_steps
    rows = []
    for trial_id, point in enumerate(picks, 1):
      name = context.student(point).name
      trial_dir = workdir / "flash_fidelity" / budget / name
      record = evaluate_student(context, point, trial_dir, TrialRecord(trial_id=trial_id),
                                log=quiet)
      if record.status != "completed":
        sys.exit(f"{budget} {name}: {record.status}: {record.reason}")
      rows.append(_row(budget, steps, record, trial_dir))
      print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if budget in PAIRED:
      each = [distilled_predictions(workdir / "flash_fidelity" / budget / r["student"],
                                    context.eval_data) for r in rows]
      paired[budget] = {m: paired_errors(each, m) for m in ("mlm_correct", "mlm_loss")}
    experiment.close()
    by_budget[budget] = rows
  result = {"benchmark": "flash_fidelity", "space": "cpu_demo", "baseline": baseline,
            "regular": "regular", "budgets": budgets, "most_frequent_token_share": chance,
            "summaries": summarise(by_budget, "regular", args.resamples, paired),
            "runs": [r for rows in by_budget.values() for r in rows],
            "cpus": os.cpu_count(), "load_average": os.getloadavg()}
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  if args.plot:
    plot(result, args.plot)


if __name__ == "__main__":
  main()
