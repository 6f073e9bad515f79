"""How well a cheap evaluation ranks students as an expensive one does (paper section 4.7).

AutoDistill's search rests on one claim: a *flash* distillation of about 5% of the regular
recipe's steps orders students as the regular one would (Figures 5 and 6), so a search can judge
each student cheaply. :func:`rank_agreement` measures that claim for two lists of scores of the
same students (flash and regular held-out accuracy, a SuperLM's score and a stand-alone loss):
Spearman's rho and Kendall's tau-b, each with a percentile bootstrap interval over the students.

* Spearman's rho is Pearson's r of the ranks, ties sharing their mean rank
  (:func:`autodistill.finetune.metrics.spearman`, which equals ``scipy.stats.spearmanr``).
* Kendall's tau-b is (concordant - discordant) / sqrt((n0 - n1) (n0 - n2)) over the n0 pairs,
  n1 and n2 the pairs tied in x and in y (``scipy.stats.kendalltau``'s default). It counts pairs,
  so it reads as "the share of pairs ordered alike, minus the share ordered the other way".
* :func:`resolved_concordance` asks the question the correlations blur when the reference is
  itself noisy: of the student pairs the expensive evaluation separates beyond its noise, how
  many does the cheap one order the same way? (Ties in the reference within noise cannot be
  ranked by anything, so a correlation over them measures noise.)
* The bootstrap resamples whole students (x and y together) with replacement; a resample on
  which a statistic is undefined (every x or every y equal) is left out, and how many were kept
  is reported. With a dozen students the intervals are wide; they say how far one table can be
  trusted, not more.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from autodistill.finetune.metrics import spearman

__all__ = ["detection_auc", "kendall_tau_b", "paired_standard_error", "rank_agreement",
           "resolved_concordance", "spearman"]


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if a.ndim != 1 or a.shape != b.shape:
    raise ValueError(f"rank statistics need two 1-D lists of one length, got shapes {a.shape} "
                     f"and {b.shape}")
  return a, b


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
  """Kendall's tau-b of ``x`` and ``y`` (NaN where undefined, as ``scipy.stats.kendalltau``).

  Undefined when either list is constant, has fewer than two values, or holds a NaN.
  """
  a, b = _pair(x, y)
  if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any():
    return float("nan")
  i, j = np.triu_indices(len(a), k=1)
  sx, sy = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
  pairs = len(i)
  untied_x, untied_y = pairs - np.sum(sx == 0), pairs - np.sum(sy == 0)
  if untied_x == 0 or untied_y == 0:
    return float("nan")
  return float(np.sum(sx * sy) / math.sqrt(untied_x * untied_y))


STATISTICS: dict[str, Callable[[Any, Any], float]] = {"spearman": spearman,
                                                      "kendall": kendall_tau_b}


def rank_agreement(x: Sequence[float], y: Sequence[float], *, resamples: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
  """Spearman and Kendall rank correlations of ``x`` and ``y`` with bootstrap intervals.

  Args:
    x: one score per student (e.g. held-out accuracy after flash distillation).
    y: the same students' reference scores (e.g. after regular distillation), in the same order.
    resamples: bootstrap resamples of the students.
    confidence: the intervals' coverage (percentile bootstrap).
    seed: the resampling seed (the result is a function of the inputs and the seed).

  Returns:
    ``{"students", "spearman", "kendall", "spearman_ci", "kendall_ci",
    "spearman_resamples_used", "kendall_resamples_used"}``; an interval is ``[low, high]``
    (``[nan, nan]`` when no resample defines the statistic).

  Raises:
    ValueError: the lists are empty, differ in length or are not 1-D, or ``resamples`` /
      ``confidence`` are out of range.
  """
  a, b = _pair(x, y)
  if resamples < 1 or not 0 < confidence < 1:
    raise ValueError(f"rank_agreement needs resamples >= 1 and 0 < confidence < 1, got "
                     f"{resamples} and {confidence}")
  out: dict[str, Any] = {"students": len(a)}
  out.update({name: fn(a, b) for name, fn in STATISTICS.items()})
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, len(a), size=(resamples, len(a)))
  tail = 100 * (1 - confidence) / 2
  for name, fn in STATISTICS.items():
    values = np.array([fn(a[d], b[d]) for d in draws])
    values = values[~np.isnan(values)]
    out[f"{name}_ci"] = ([float(np.percentile(values, tail)),
                          float(np.percentile(values, 100 - tail))] if len(values)
                         else [float("nan"), float("nan")])
    out[f"{name}_resamples_used"] = int(len(values))
  return out


def resolved_concordance(x: Sequence[float], y: Sequence[float], y_error: Sequence[float], *,
                         k: float = 3.0) -> dict[str, Any]:
  """Of the pairs whose ``y`` differ by more than ``k`` standard errors of the difference, the
  share that ``x`` orders the same way.

  Args:
    x: the cheap scores.
    y: the reference scores, same students and order.
    y_error: the standard error of each ``y`` ([n]; a pair's is the ``hypot`` of the two), or of
      each pair's difference ([n, n], e.g. paired over the same held-out predictions).
    k: how many standard errors of the difference make a pair resolved.

  Returns:
    ``{"resolved_pairs", "pairs", "concordant", "discordant", "tied", "share"}``: ``tied`` pairs
    have equal ``x``; ``share`` is concordant / resolved (NaN when no pair is resolved).
  """
  a, b = _pair(x, y)
  e = np.asarray(y_error, np.float64)
  i, j = np.triu_indices(len(a), k=1)
  if e.shape == b.shape:
    pair_error = np.hypot(e[i], e[j])
  elif e.shape == (len(b), len(b)):
    pair_error = e[i, j]
  else:
    raise ValueError(f"y_error needs one value per student or per pair, got shape {e.shape} "
                     f"for {len(b)} students")
  resolved = np.abs(b[i] - b[j]) > k * pair_error
  agree = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
  concordant = int(np.sum(resolved & (agree > 0)))
  discordant = int(np.sum(resolved & (agree < 0)))
  count = int(np.sum(resolved))
  return {"resolved_pairs": count, "pairs": len(i), "concordant": concordant,
          "discordant": discordant, "tied": count - concordant - discordant,
          "share": concordant / count if count else float("nan")}


def paired_standard_error(a: Sequence[float], b: Sequence[float]) -> float:
  """The standard error of ``mean(a) - mean(b)`` when ``a[i]`` and ``b[i]`` score the same item
  (e.g. two students on one held-out masked prediction): the sample standard deviation of the
  differences over sqrt(n). Far below the unpaired ``hypot`` of the two errors when the two
  models err on the same items.

  Raises:
    ValueError: the lists differ in length or have fewer than two items.
  """
  x, y = _pair(a, b)
  if len(x) < 2:
    raise ValueError(f"a paired standard error needs at least 2 items, got {len(x)}")
  return float(np.std(x - y, ddof=1) / math.sqrt(len(x)))


def detection_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
  """How well ``scores`` single out the ``positive`` items: the area under the ROC curve, i.e.
  the share of (positive, negative) pairs in which the positive scores higher, ties counted as
  half (the Mann-Whitney U over the product of the two counts). 0.5 is chance, 1 a perfect
  ordering. Used to ask whether a model of the table knows which unseen students beat the
  baseline (``bench/gp_prediction.py``).

  Raises:
    ValueError: the lists differ in length, or there is no positive or no negative item.
  """
  s = np.asarray(scores, np.float64)
  p = np.asarray(positive, bool)
  if s.shape != p.shape or s.ndim != 1:
    raise ValueError(f"scores and positive must be two lists of one length, got {s.shape} and "
                     f"{p.shape}")
  k = int(p.sum())
  if k == 0 or k == len(p):
    raise ValueError(f"an AUC needs positive and negative items, got {k} of {len(p)} positive")
  above = (s[p][:, None] > s[~p][None, :]).sum() + 0.5 * (s[p][:, None] == s[~p][None, :]).sum()
  return float(above / (k * (len(p) - k)))
