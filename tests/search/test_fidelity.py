"""Rank agreement of a cheap and an expensive evaluation, against SciPy."""

import math

import numpy as np
import pytest
from scipy import stats

from autodistill.search.fidelity import (detection_auc, kendall_tau_b, paired_standard_error,
                                         rank_agreement, resolved_concordance, spearman)


def test_kendall_tau_b_equals_scipy_with_and_without_ties():
  rng = np.random.default_rng(3)
  for n in (2, 3, 7, 12, 30):
    x, y = rng.normal(size=n), rng.normal(size=n)
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    # Ties on both sides, as held-out accuracies of students that all predict one token give.
    tx, ty = np.round(x), np.round(y * 0.5)
    if len(set(tx)) > 1 and len(set(ty)) > 1:
      assert kendall_tau_b(tx, ty) == pytest.approx(stats.kendalltau(tx, ty).statistic,
                                                    abs=1e-12)


def test_kendall_tau_b_by_hand():
  # Pairs of [1, 2, 3, 4] vs [1, 3, 2, 4]: 5 concordant, 1 discordant, no ties -> 4 / 6.
  assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
  # A tie in x: 5 pairs untied in x, 6 in y; concordant 4, discordant 1 -> 3 / sqrt(30).
  assert kendall_tau_b([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(
      stats.kendalltau([1, 1, 2, 3], [1, 2, 3, 4]).statistic)
  assert kendall_tau_b([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(5 * 6))


@pytest.mark.parametrize("x, y", [([1, 1, 1], [1, 2, 3]), ([1.0], [2.0]),
                                  ([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])])
def test_undefined_rank_statistics_are_nan_as_in_scipy(x, y):
  with np.errstate(all="ignore"):
    assert math.isnan(kendall_tau_b(x, y))
    assert math.isnan(spearman(x, y))


def test_rank_agreement_point_estimates_are_scipys():
  rng = np.random.default_rng(0)
  x = rng.normal(size=12)
  y = x + rng.normal(scale=0.7, size=12)
  out = rank_agreement(x, y, resamples=200)
  assert out["students"] == 12
  assert out["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
  assert out["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_bootstrap_interval_matches_scipys_percentile_bootstrap():
  rng = np.random.default_rng(1)
  x = rng.normal(size=16)
  y = x + rng.normal(scale=1.0, size=16)
  ours = rank_agreement(x, y, resamples=4000, seed=5)

  def statistic(a, b):
    return stats.spearmanr(a, b).statistic

  theirs = stats.bootstrap((x, y), statistic, paired=True, vectorized=False,
                           n_resamples=4000, method="percentile", confidence_level=0.95,
                           random_state=np.random.default_rng(11)).confidence_interval
  # Two independent Monte Carlo estimates of the same percentiles: they agree to within the
  # resampling error (about 0.02 at 4,000 resamples here), not exactly.
  assert ours["spearman_ci"][0] == pytest.approx(theirs.low, abs=0.05)
  assert ours["spearman_ci"][1] == pytest.approx(theirs.high, abs=0.05)
  assert ours["spearman_ci"][0] < ours["spearman"] < ours["spearman_ci"][1]
  assert ours["kendall_ci"][0] < ours["kendall"] < ours["kendall_ci"][1]
  assert ours["spearman_resamples_used"] == 4000


def test_bootstrap_is_seeded_and_drops_undefined_resamples():
  x = [0.1, 0.1, 0.1, 0.2]  # many resamples draw only the tied students
  y = [1.0, 2.0, 3.0, 4.0]
  a, b = rank_agreement(x, y, resamples=300, seed=2), rank_agreement(x, y, resamples=300, seed=2)
  assert a == b
  assert 0 < a["spearman_resamples_used"] < 300
  assert a["kendall_resamples_used"] == a["spearman_resamples_used"]


def test_rank_agreement_refuses_mismatched_input():
  with pytest.raises(ValueError, match="one length"):
    rank_agreement([1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match="resamples"):
    rank_agreement([1, 2, 3], [1, 2, 3], resamples=0)


def test_resolved_concordance_counts_only_pairs_the_reference_separates():
  # Reference: two groups far apart (0.10 vs 0.20, error 0.01) and noise inside each group.
  y = [0.100, 0.101, 0.200, 0.202]
  err = [0.01] * 4
  # The cheap score orders the groups right, and inside the low group the wrong way round.
  x = [2.0, 1.0, 5.0, 5.0]
  out = resolved_concordance(x, y, err)
  # Resolved: the 4 cross-group pairs (0.1 apart > 3 * 0.0141); the 2 within-group ones are not.
  assert out == {"resolved_pairs": 4, "pairs": 6, "concordant": 4, "discordant": 0, "tied": 0,
                 "share": 1.0}
  flipped = resolved_concordance([-v for v in x], y, err)
  assert flipped["discordant"] == 4 and flipped["share"] == 0.0
  tied = resolved_concordance([1.0, 1.0, 1.0, 2.0], y, err)
  assert (tied["concordant"], tied["tied"]) == (2, 2)
  assert math.isnan(resolved_concordance(x, y, [1.0] * 4)["share"])
  with pytest.raises(ValueError, match="one value per student or per pair"):
    resolved_concordance(x, y, [0.01] * 3)
  # Paired errors (one per pair): only the pair (0, 1) is tight enough to count.
  pairs = np.full((4, 4), 1.0)
  pairs[0, 1] = pairs[1, 0] = 1e-4
  out = resolved_concordance(x, y, pairs)
  assert (out["resolved_pairs"], out["discordant"]) == (1, 1)  # x orders 0 above 1, y below


def test_paired_standard_error_is_scipys_paired_t_denominator():
  rng = np.random.default_rng(4)
  shared = rng.normal(size=500)  # both models err on the same items
  a, b = shared + rng.normal(scale=0.1, size=500), shared + 0.05 + rng.normal(scale=0.1, size=500)
  se = paired_standard_error(a, b)
  t = stats.ttest_rel(a, b).statistic
  assert se == pytest.approx((a.mean() - b.mean()) / t, rel=1e-10)
  unpaired = math.hypot(a.std(ddof=1), b.std(ddof=1)) / math.sqrt(500)
  assert se < unpaired / 5
  with pytest.raises(ValueError, match="at least 2"):
    paired_standard_error([1.0], [2.0])


def test_detection_auc_equals_scipys_mann_whitney_u_and_hand_cases():
  rng = np.random.default_rng(5)
  for n, k in ((5, 1), (12, 4), (40, 10)):
    scores = np.round(rng.normal(size=n), 1)  # rounded: ties between the two groups too
    positive = np.zeros(n, bool)
    positive[rng.choice(n, k, replace=False)] = True
    u = stats.mannwhitneyu(scores[positive], scores[~positive]).statistic
    assert detection_auc(scores, positive) == pytest.approx(u / (k * (n - k)), abs=1e-12)
  assert detection_auc([3, 2, 1], [True, False, False]) == 1.0
  assert detection_auc([1, 2, 3], [True, False, False]) == 0.0
  assert detection_auc([1, 1, 2, 0], [True, False, False, False]) == pytest.approx(1.5 / 3)
  with pytest.raises(ValueError, match="positive and negative"):
    detection_auc([1, 2], [True, True])
