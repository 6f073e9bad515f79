"""Pareto front, baseline dominance, hypervolume and time-to-dominate on hand-made data."""

import itertools

import numpy as np
import pytest

from autodistill.search.pareto import (
    as_objectives,
    baseline_record,
    dominates,
    dominating_baseline,
    first_dominating_iteration,
    hypervolume,
    pareto_front,
)
from autodistill.search.settings import OBJECTIVES
from autodistill.search.records import TrialRecord

ACC_LAT = ("mlm_accuracy", "latency_ms")


def _record(trial_id, acc=None, lat=None, status="completed", **kwargs):
  return TrialRecord(trial_id=trial_id, name=f"Model_{trial_id}", status=status,
                     mlm_accuracy=acc, latency_ms=lat, **kwargs)


def _records():
  return [
      _record(1, 0.50, 10.0, is_baseline=True),
      _record(2, 0.55, 8.0),    # dominates the baseline
      _record(3, 0.55, 8.0),    # identical to 2: both on the front
      _record(4, 0.60, 12.0),   # the most accurate
      _record(5, 0.52, 9.0),    # dominated by 2; dominates the baseline
      _record(6, 0.40, 5.0),    # the fastest
      _record(7, 0.58, 12.0),   # dominated by 4 (same latency, less accurate)
      _record(8, 0.90, 1.0, status="infeasible", reason="too big"),  # would dominate all
      _record(9, 0.95, None),   # completed but latency unknown
      _record(10, status="active"),
      _record(11, 0.50, 10.0),  # ties the baseline: does not dominate it
      _record(12, 0.70, float("nan")),  # NaN metric: not feasible for the front
  ]


def _ids(records):
  return [r.trial_id for r in records]


def test_dominates_mixed_goals():
  objectives = as_objectives(ACC_LAT)
  assert dominates([0.6, 5.0], [0.5, 6.0], objectives)
  assert dominates([0.6, 6.0], [0.5, 6.0], objectives)  # equal latency, more accurate
  assert not dominates([0.5, 6.0], [0.5, 6.0], objectives)  # identical
  assert not dominates([0.6, 7.0], [0.5, 6.0], objectives)  # trade-off
  assert not dominates([0.4, 5.0], [0.5, 6.0], ACC_LAT)
  assert not dominates([None, 5.0], [0.5, 6.0], ACC_LAT)
  assert not dominates([0.6, 5.0], [0.5, None], ACC_LAT)
  assert not dominates(None, [0.5, 6.0], ACC_LAT)
  with pytest.raises(ValueError):
    dominates([0.6], [0.5, 6.0], ACC_LAT)


def test_as_objectives_accepts_names_and_objectives():
  assert as_objectives(["latency_ms", OBJECTIVES["params"]]) == [OBJECTIVES["latency_ms"],
                                                                 OBJECTIVES["params"]]
  with pytest.raises(ValueError):
    as_objectives(["bogus"])
  with pytest.raises(ValueError):
    as_objectives([OBJECTIVES["params"], "params"])


def test_pareto_front_by_hand():
  front = pareto_front(_records(), ACC_LAT)
  # Sorted by latency ascending (the second objective), ties by trial id.
  assert _ids(front) == [6, 2, 3, 4]


def test_pareto_front_default_objectives_and_empty():
  assert _ids(pareto_front(_records())) == [6, 2, 3, 4]
  assert pareto_front([]) == []
  assert pareto_front([_record(1, 0.5, 1.0, status="infeasible")]) == []
  assert _ids(pareto_front([_record(1, 0.5, 1.0)])) == [1]


def test_pareto_front_both_minimised():
  records = [TrialRecord(trial_id=i, status="completed", params=p, latency_ms=l)
             for i, (p, l) in enumerate([(3, 1), (2, 2), (1, 3), (3, 3), (2, 2)], start=1)]
  # Sorted by latency ascending: (3,1), (2,2) twice, (1,3); (3,3) is dominated.
  assert _ids(pareto_front(records, ("params", "latency_ms"))) == [1, 2, 5, 3]


def test_pareto_front_three_objectives():
  specs = {1: (0.5, 10, 100), 2: (0.5, 10, 90), 3: (0.6, 12, 100), 4: (0.4, 5, 200),
           5: (0.6, 12, 100), 6: (0.55, 11, 100), 7: (0.55, 11, 101)}
  records = [TrialRecord(trial_id=i, status="completed", mlm_accuracy=a, latency_ms=l, params=p)
             for i, (a, l, p) in specs.items()]
  front = pareto_front(records, ("mlm_accuracy", "latency_ms", "params"))
  # 1 is dominated by 2 (fewer params), 7 by 6; the rest trade off.
  assert _ids(front) == [4, 2, 6, 3, 5]
  # Without the params objective, 1 and 2 tie and so do 6 and 7.
  assert _ids(pareto_front(records, ACC_LAT)) == [4, 1, 2, 6, 7, 3, 5]


def test_single_objective_front_is_the_best():
  # Trial 9's unknown latency does not matter when accuracy is the only objective.
  assert _ids(pareto_front(_records(), ["mlm_accuracy"])) == [9]
  records = [r for r in _records() if r.trial_id not in (9, 12)] + [_record(13, 0.60, None)]
  assert _ids(pareto_front(records, ["mlm_accuracy"])) == [4, 13]  # a tie: both


def test_dominating_baseline():
  records = _records()
  assert baseline_record(records).trial_id == 1
  assert _ids(dominating_baseline(records, ACC_LAT)) == [2, 3, 5]


def test_dominating_baseline_needs_a_completed_baseline():
  records = [r for r in _records() if not r.is_baseline]
  assert dominating_baseline(records, ACC_LAT) == []
  records.append(_record(20, 0.1, 50.0, status="infeasible", is_baseline=True))
  assert dominating_baseline(records, ACC_LAT) == []
  # Several baselines: the completed one with the lowest trial id counts.
  records += [_record(22, 0.56, 7.0, is_baseline=True), _record(21, 0.39, 4.0, is_baseline=True)]
  assert baseline_record(records).trial_id == 21
  assert dominating_baseline(records, ACC_LAT) == []


def test_hypervolume_2d_by_hand():
  minimise = ("params", "latency_ms")
  assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4), minimise) == pytest.approx(6.0)
  # A dominated point, a duplicate, a point beyond the reference and an incomplete one add
  # nothing.
  points = [(1, 3), (2, 2), (3, 1), (3, 3), (2, 2), (5, 0), (0, 4), (None, 1)]
  assert hypervolume(points, (4, 4), minimise) == pytest.approx(6.0)
  assert hypervolume([], (4, 4), minimise) == 0.0
  # Accuracy is maximised: the box of (0.6, 2) above reference (0.5, 4) is 0.1 x 2.
  assert hypervolume([(0.6, 2.0)], (0.5, 4.0), ACC_LAT) == pytest.approx(0.2)
  assert hypervolume([(0.6, 2.0), (0.7, 3.0)], (0.5, 4.0), ACC_LAT) == pytest.approx(0.3)
  assert hypervolume([(0.4, 2.0)], (0.5, 4.0), ACC_LAT) == 0.0


def test_hypervolume_1d_and_3d_by_hand():
  assert hypervolume([(0.7,), (0.6,)], (0.5,), ["mlm_accuracy"]) == pytest.approx(0.2)
  minimise = ("params", "latency_ms", "flops")
  # Boxes 3x3x1 = 9 and 2x2x3 = 12, overlapping in 2x2x1 = 4; (3, 3, 3) lies inside the second.
  points = [(1, 1, 3), (2, 2, 1), (3, 3, 3)]
  assert hypervolume(points, (4, 4, 4), minimise) == pytest.approx(17.0)
  # Mixed goals: flip accuracy, the same volume.
  mixed = ("mlm_accuracy", "latency_ms", "flops")
  flipped = [(-a, b, c) for a, b, c in points]
  assert hypervolume(flipped, (-4, 4, 4), mixed) == pytest.approx(17.0)


def _inclusion_exclusion(points, reference):
  """Exact hypervolume (minimisation) by inclusion-exclusion over all subsets."""
  total = 0.0
  for size in range(1, len(points) + 1):
    for subset in itertools.combinations(points, size):
      corner = np.max(subset, axis=0)
      total += (-1) ** (size + 1) * np.prod(np.clip(reference - corner, 0, None))
  return total


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(dims):
  rng = np.random.default_rng(dims)
  points = rng.uniform(0, 1, size=(9, dims))
  reference = np.full(dims, 1.0)
  names = ("params", "latency_ms", "flops", "nsp_accuracy")[:dims]
  if dims == 4:  # nsp_accuracy is maximised: flip that column and the reference.
    points_in, reference_in = points * [1, 1, 1, -1], reference * [1, 1, 1, -1]
  else:
    points_in, reference_in = points, reference
  expected = _inclusion_exclusion(points, reference)
  assert hypervolume(points_in.tolist(), reference_in.tolist(), names) == pytest.approx(expected)


def test_hypervolume_matches_grid_count():
  rng = np.random.default_rng(0)
  accuracy = rng.uniform(0.3, 0.7, size=40)
  latency = rng.uniform(1.0, 9.0, size=40)
  params = rng.uniform(0.0, 5.0, size=40)
  reference = (0.3, 9.0, 5.0)
  volume = hypervolume(np.stack([accuracy, latency, params], 1).tolist(), reference,
                       ("mlm_accuracy", "latency_ms", "params"))
  # Count cell centres of a 50^3 grid over the reference box that some point dominates.
  n = 50
  a = 0.3 + (np.arange(n) + 0.5) * 0.4 / n
  l = 1.0 + (np.arange(n) + 0.5) * 8.0 / n
  p = (np.arange(n) + 0.5) * 5.0 / n
  ga, gl, gp = (g.reshape(-1, 1) for g in np.meshgrid(a, l, p, indexing="ij"))
  covered = ((ga <= accuracy) & (gl >= latency) & (gp >= params)).any(axis=1)
  estimate = covered.mean() * 0.4 * 8.0 * 5.0
  assert volume == pytest.approx(estimate, rel=0.05)
  assert 0 < volume < 0.4 * 8.0 * 5.0


def test_hypervolume_rejects_a_bad_reference():
  with pytest.raises(ValueError):
    hypervolume([(1, 2)], (4,), ("params", "latency_ms"))
  with pytest.raises(ValueError):
    hypervolume([(1, 2)], (4, None), ("params", "latency_ms"))
  with pytest.raises(ValueError):
    hypervolume([(1, 2, 3)], (4, 4), ("params", "latency_ms"))


def test_first_dominating_iteration():
  baseline = (0.5, 10.0)
  rows = [None, (0.4, 5.0), (0.6, 8.0), None, (0.6, 8.0), (0.7, 9.0), (0.5, 10.0),
          (None, 1.0), (0.8, 2.0)]
  keys = ["a", "b", "c", "d", "c", "e", "f", "g", "h"]
  assert first_dominating_iteration(rows, baseline, ACC_LAT) == 3
  assert first_dominating_iteration(rows, baseline, ACC_LAT, k=1, keys=keys) == 3
  # Without keys the repeat of "c" counts; with keys it does not.
  assert first_dominating_iteration(rows, baseline, ACC_LAT, k=2) == 5
  assert first_dominating_iteration(rows, baseline, ACC_LAT, k=2, keys=keys) == 6
  assert first_dominating_iteration(rows, baseline, ACC_LAT, k=3, keys=keys) == 9
  assert first_dominating_iteration(rows, baseline, ACC_LAT, k=4, keys=keys) is None
  assert first_dominating_iteration([], baseline, ACC_LAT) is None
  assert first_dominating_iteration([None, None], baseline, ACC_LAT) is None


def test_first_dominating_iteration_counts_a_key_once_it_dominates():
  baseline = (0.5, 10.0)
  # "a" fails to dominate at first (a noisy evaluation), then dominates: it counts then.
  rows = [(0.45, 9.0), (0.55, 9.0), (0.56, 9.0)]
  assert first_dominating_iteration(rows, baseline, ACC_LAT, keys=["a", "a", "a"]) == 2
  assert first_dominating_iteration(rows, baseline, ACC_LAT, k=2, keys=["a", "a", "a"]) is None


def test_first_dominating_iteration_validates():
  with pytest.raises(ValueError):
    first_dominating_iteration([(0.6, 1.0)], (0.5, 2.0), ACC_LAT, k=0)
  with pytest.raises(ValueError):
    first_dominating_iteration([(0.6, 1.0)], (0.5, 2.0), ACC_LAT, keys=["a", "b"])
  with pytest.raises(ValueError):
    first_dominating_iteration([(0.6, 1.0)], (None, 2.0), ACC_LAT)


def _noisy(trial_id, acc, lat, noise, **kwargs):
  """A record whose latency noise (2 standard deviations of its timed calls) is ``noise``."""
  return _record(trial_id, acc, lat, latency_std_ms=noise / 2, **kwargs)


def test_latency_within_the_measured_noise_is_a_tie():
  from autodistill.search.pareto import latency_noise_ms, latency_ties, noise_margins
  base = _noisy(1, 0.50, 10.0, 0.5, is_baseline=True)
  within = _noisy(2, 0.50, 9.7, 0.2)       # 0.3 ms faster, inside the baseline's 0.5 ms noise
  beyond = _noisy(3, 0.50, 9.0, 0.2)       # 1.0 ms faster: beyond both noises
  slower_but_tied = _noisy(4, 0.60, 10.4, 0.3)  # more accurate, 0.4 ms slower: within noise
  assert latency_noise_ms(base) == 0.5 and latency_noise_ms(_record(9, 0.5, 1.0)) == 0.0
  assert noise_margins(base, within, ACC_LAT) == [0.0, 0.5]
  # The raw medians would have 2 and 3 beat the baseline; only 3 does beyond the noise, and 4
  # (more accurate, slower only within the noise) beats it too.
  assert dominates([0.5, 9.7], [0.5, 10.0], ACC_LAT)
  assert not dominates([0.5, 9.7], [0.5, 10.0], ACC_LAT, [0.0, 0.5])
  records = [base, within, beyond, slower_but_tied]
  assert _ids(dominating_baseline(records, ACC_LAT)) == [3, 4]
  # 2 is as accurate as 3 and slower beyond the noise: off the front; 4 ties the baseline's
  # latency and is more accurate: it dominates it.
  assert _ids(pareto_front(records, ACC_LAT)) == [3, 4]
  assert [(a.trial_id, b.trial_id) for a, b in latency_ties(records)] == [(1, 2), (1, 4)]


def test_the_summary_names_latency_ties_on_the_front():
  from autodistill.search.report import summary_table
  records = [_noisy(1, 0.50, 10.0, 0.5, is_baseline=True), _noisy(2, 0.70, 5.0, 0.1),
             _noisy(3, 0.60, 4.95, 0.1), _noisy(4, 0.40, 2.0, 0.1)]
  text = summary_table(records, ACC_LAT)
  assert _ids(pareto_front(records, ACC_LAT)) == [4, 2]  # 3 ties 2's latency, less accurate
  assert "latency ties" not in text  # the tie of 2 and 3 is not on the front
  records.append(_noisy(5, 0.45, 2.05, 0.1))  # ties 4's latency, more accurate: replaces 4
  records.append(_noisy(6, 0.45, 2.12, 0.1))  # ties 5 (within 0.1) but not 4
  text = summary_table(records, ACC_LAT)
  assert _ids(pareto_front(records, ACC_LAT)) == [5, 6, 2]
  ties = [line for line in text.splitlines() if line.startswith("latency ties")]
  assert ties == ["latency ties (a difference within the measured noise, counted as equal): "
                  "#5 2.050 ± 0.100 ms = #6 2.120 ± 0.100 ms"]


def test_metric_noise_and_differences_by_hand():
  from autodistill.search.pareto import difference, metric_noise, ranked_front
  # 10,000 held-out predictions; losses with a standard deviation of 2 nats.
  base = _noisy(1, 0.10, 10.0, 0.5, is_baseline=True, mlm_predictions=10_000.0, mlm_loss=6.0,
                mlm_loss_std=2.0)
  winner = _noisy(2, 0.12, 9.0, 0.3, mlm_predictions=10_000.0, mlm_loss=5.97, mlm_loss_std=2.0)
  # 2 x sqrt(0.1 x 0.9 / 10,000) = 0.006; 2 x 2 / 100 = 0.04 nats; latency: 2 sd = 0.5 ms.
  assert metric_noise(base, "mlm_accuracy") == pytest.approx(0.006)
  assert metric_noise(base, "mlm_loss") == pytest.approx(0.04)
  assert metric_noise(base, "latency_ms") == 0.5
  assert metric_noise(_record(3, 0.1, 1.0), "mlm_accuracy") is None  # predictions unknown
  assert metric_noise(base, "params") is None
  acc = difference(winner, base, "mlm_accuracy")
  # 2 x sqrt(0.12 x 0.88 / 1e4 + 0.1 x 0.9 / 1e4) = 0.0088453
  assert acc.delta == pytest.approx(0.02, abs=1e-12)
  assert acc.noise == pytest.approx(0.0088453, rel=1e-4)
  assert acc.beyond_noise
  loss = difference(winner, base, "mlm_loss")  # 2 x sqrt(2) x 0.02 = 0.0566 > 0.03: a tie
  assert loss.delta == pytest.approx(-0.03) and loss.noise == pytest.approx(0.056569, rel=1e-4)
  assert loss.beyond_noise is False
  lat = difference(winner, base, "latency_ms")  # the larger noise, 0.5 ms < 1 ms
  assert lat.delta == -1.0 and lat.noise == 0.5 and lat.beyond_noise
  assert difference(_record(4, 0.1, None), base, "latency_ms") is None
  assert difference(_record(4, 0.2, 3.0), base, "latency_ms").beyond_noise is None
  faster = _noisy(5, 0.05, 1.0, 0.1)  # on the front, but does not dominate the baseline
  assert _ids(ranked_front([base, winner, faster], ACC_LAT)) == [2, 5]


def test_the_summary_compares_the_winner_with_the_baseline_within_noise():
  from autodistill.search.report import summary_table, versus_baseline
  import dataclasses
  base = dataclasses.replace(_noisy(1, 0.10, 10.0, 0.5, is_baseline=True, mlm_loss=6.0,
                                    mlm_predictions=10_000.0, mlm_loss_std=2.0), name="Base")
  winner = dataclasses.replace(_noisy(2, 0.12, 9.8, 0.3, mlm_predictions=10_000.0,
                                      mlm_loss=5.97, mlm_loss_std=2.0), name="Win")
  lines = versus_baseline([base, winner], ("mlm_loss", "latency_ms"))
  assert lines == [
      "winner #2 Win against the baseline #1 Base:",
      "  MLM loss: 5.9700 vs 6.0000, -0.03 (noise ±0.0566: within it, a tie)",
      "  latency ms: 9.800 vs 10.000, -0.2 (noise ±0.5: within it, a tie)",
      "  MLM acc: 12.00% vs 10.00%, +2 points (noise ±0.885 points: beyond it)",
  ]
  assert summary_table([base, winner], ("mlm_loss", "latency_ms")).endswith(
      "\n".join(lines))
  # Judged paired (the two students on the same held-out predictions), the loss difference is
  # beyond a noise of 2 x 0.01; latency keeps its own rule.
  asked = []

  def paired(a, b, name):
    asked.append((a.trial_id, b.trial_id, name))
    return 0.01 if name == "mlm_loss" else None

  lines = versus_baseline([base, winner], ("mlm_loss", "latency_ms"), paired)
  assert lines[1] == "  MLM loss: 5.9700 vs 6.0000, -0.03 (paired noise ±0.02: beyond it)"
  assert lines[2:] == [
      "  latency ms: 9.800 vs 10.000, -0.2 (noise ±0.5: within it, a tie)",
      "  MLM acc: 12.00% vs 10.00%, +2 points (noise ±0.885 points: beyond it)"]
  assert asked == [(2, 1, "mlm_loss"), (2, 1, "mlm_accuracy")]
  assert versus_baseline([base], ACC_LAT) == []  # the baseline is the winner
  assert versus_baseline([winner], ACC_LAT) == []  # no baseline
