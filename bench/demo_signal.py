"""Do the demo's objectives separate its students? (the signal issue's goal 3)

Reads a finished search's ``trials.json`` (e.g. ``make demo``'s ``workdir/demo``) and prints, per
MLM metric (held-out accuracy and loss after flash distillation): the values of the completed
trials, their spread against the metric's noise (``autodistill.search.pareto.metric_noise``:
2 standard errors over the held-out masked predictions), how many pairs of trials differ by more
than the noise of their difference (``pareto.difference``), and how many distinct values the
metric takes. An objective that separates few pairs ranks the students by chance.

    PYTHONPATH=. .venv/bin/python bench/demo_signal.py workdir/demo > bench/data/demo_signal.json

Needs records written after the evaluator counted its predictions (``mlm_predictions``); older
tables have no noise, and the script says so.
"""

from __future__ import annotations

import itertools
import json
import math
import sys

from autodistill.search import pareto
from autodistill.search.report import load_trials


def _spearman(x: list[float], y: list[float]) -> float:
  def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
      j = i
      while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
        j += 1
      for k in range(i, j + 1):
        out[order[k]] = (i + j) / 2.0
      i = j + 1
    return out

  rx, ry = ranks(x), ranks(y)
  mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
  cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
  var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
  return cov / var if var else float("nan")


def signal(records: list) -> dict:
  done = [r for r in records if r.feasible and r.mlm_accuracy is not None]
  out: dict = {"trials": len(done)}
  for name in ("mlm_accuracy", "mlm_loss"):
    values = [r.metric(name) for r in done]
    noises = [pareto.metric_noise(r, name) for r in done]
    pairs = [pareto.difference(a, b, name) for a, b in itertools.combinations(done, 2)]
    known = [d for d in pairs if d is not None and d.beyond_noise is not None]
    out[name] = {
        "values": {str(r.trial_id): v for r, v in zip(done, values)},
        "distinct_values": len(set(values)),
        "spread": max(values) - min(values) if values else None,
        "median_noise": (sorted(n for n in noises if n is not None)[len(noises) // 2]
                         if all(n is not None for n in noises) and noises else None),
        "pairs": len(pairs),
        "pairs_beyond_noise": sum(d.beyond_noise for d in known) if known else None,
    }
  accuracy = [r.mlm_accuracy for r in done]
  loss = [-r.mlm_loss for r in done]  # lower loss ranks higher
  out["spearman_accuracy_vs_minus_loss"] = _spearman(accuracy, loss) if len(done) > 2 else None
  out["noise_known"] = all(r.mlm_predictions for r in done)
  return out


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit("usage: demo_signal.py WORKDIR (a finished search's workdir)")
  records = load_trials(f"{argv[1]}/trials.json")
  result = signal(records)
  if not result["noise_known"]:
    print("these records predate mlm_predictions: no noise to compare with", file=sys.stderr)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main(sys.argv)
