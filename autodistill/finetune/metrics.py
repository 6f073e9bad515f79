"""Downstream-task metrics, computed exactly as the GLUE and SQuAD v1.1 benchmarks define them.

Classification and regression (GLUE, Wang et al. 2019, "GLUE: A Multi-Task Benchmark and Analysis
Platform for Natural Language Understanding"):

* :func:`accuracy` -- SST-2, MNLI, QNLI, RTE, WNLI, and (with F1) MRPC and QQP;
* :func:`f1` -- binary F1 of the positive class, MRPC and QQP;
* :func:`macro_f1` -- unweighted mean of per-class F1 (not a GLUE metric; for multiclass tasks);
* :func:`matthews_corrcoef` -- CoLA (multiclass form, Gorodkin 2004, as scikit-learn computes it);
* :func:`pearson` and :func:`spearman` -- STS-B.

Extractive question answering (SQuAD v1.1, Rajpurkar et al. 2016, "SQuAD: 100,000+ Questions for
Machine Comprehension of Text"), transcribing the official ``evaluate-v1.1.py``:
:func:`normalize_answer`, :func:`squad_exact_match`, :func:`squad_f1` and :func:`squad_scores`.

Everything is pure NumPy and returns a Python float in natural units: fractions in [0, 1] and
correlations in [-1, 1], never percentages. The values agree with ``sklearn.metrics`` (with
``zero_division=0``) and ``scipy.stats`` (tests/finetune/test_metrics.py checks both).
:data:`METRICS` maps names to the classification and regression metrics, each
``fn(predictions, labels) -> float``; :func:`compute` evaluates several by name.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np


def _as_pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
  """``predictions`` and ``labels`` as 1-D arrays of one non-zero length, or a ValueError."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  for name, array in (("predictions", predictions), ("labels", labels)):
    if array.ndim != 1:
      raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}.")
  if len(predictions) != len(labels):
    raise ValueError(f"predictions and labels differ in length: {len(predictions)} predictions "
                     f"for {len(labels)} labels.")
  if not len(labels):
    raise ValueError("predictions and labels are empty; a metric of no examples is undefined.")
  return predictions, labels


def _confusion_matrix(predictions: np.ndarray, labels: np.ndarray,
                      num_classes: Optional[int] = None) -> np.ndarray:
  """Counts C[i, j] of examples of true class i predicted as class j.

  Classes are the sorted union of the values in ``labels`` and ``predictions``, or
  ``range(num_classes)`` when ``num_classes`` is given.
  """
  if num_classes is None:
    classes, index = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    k = len(classes)
    true_index, predicted_index = index[:len(labels)], index[len(labels):]
  else:
    if num_classes < 1:
      raise ValueError(f"num_classes must be positive, got {num_classes}.")
    for name, array in (("predictions", predictions), ("labels", labels)):
      outside = array[(array < 0) | (array >= num_classes) | (array != np.round(array))]
      if len(outside):
        raise ValueError(f"{name} hold {outside[0].item()!r}, which is not a class in "
                         f"range(num_classes={num_classes}).")
    k = num_classes
    true_index, predicted_index = labels.astype(np.int64), predictions.astype(np.int64)
  counts = np.bincount(true_index * k + predicted_index, minlength=k * k)
  return counts.reshape(k, k)


def _f1_from_counts(tp, fp, fn):
  """F1 = 2 tp / (2 tp + fp + fn), 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
  tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))
  denominator = 2 * tp + fp + fn
  return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def accuracy(predictions, labels) -> float:
  """Fraction of examples whose prediction equals the label.

  Args:
    predictions: predicted classes, shape [n].
    labels: true classes, shape [n].

  Returns:
    The accuracy in [0, 1].

  Raises:
    ValueError: the inputs are empty, not 1-D, or differ in length.
  """
  predictions, labels = _as_pair(predictions, labels)
  return float(np.mean(predictions == labels))


def f1(predictions, labels, positive=1) -> float:
  """Binary F1 of the positive class, as GLUE reports for MRPC and QQP.

  F1 = 2 tp / (2 tp + fp + fn), the harmonic mean of precision tp / (tp + fp) and recall
  tp / (tp + fn). Every value other than ``positive`` counts as negative. When there are neither
  true nor predicted positives F1 is 0.0, as ``sklearn.metrics.f1_score(zero_division=0)`` gives.

  Args:
    predictions: predicted classes, shape [n].
    labels: true classes, shape [n].
    positive: the class whose F1 is returned.

  Returns:
    The F1 score in [0, 1].

  Raises:
    ValueError: the inputs are empty, not 1-D, or differ in length.
  """
  predictions, labels = _as_pair(predictions, labels)
  predicted, actual = predictions == positive, labels == positive
  tp = np.sum(predicted & actual)
  fp = np.sum(predicted & ~actual)
  fn = np.sum(~predicted & actual)
  return float(_f1_from_counts(tp, fp, fn))


def macro_f1(predictions, labels, num_classes: Optional[int] = None) -> float:
  """Unweighted mean of the per-class F1 scores (``sklearn.metrics.f1_score(average='macro')``).

  Each class's F1 is 2 tp / (2 tp + fp + fn) with that class as positive, 0.0 for a class that
  is neither a label nor a prediction (possible only with ``num_classes``).

  Args:
    predictions: predicted classes, shape [n].
    labels: true classes, shape [n].
    num_classes: if given, average over classes ``range(num_classes)`` (inputs must be integers
      in that range); otherwise over the union of the values in ``labels`` and ``predictions``.

  Returns:
    The macro F1 score in [0, 1].

  Raises:
    ValueError: the inputs are empty, not 1-D, differ in length, or hold a value outside
      ``range(num_classes)``.
  """
  predictions, labels = _as_pair(predictions, labels)
  matrix = _confusion_matrix(predictions, labels, num_classes)
  tp = np.diag(matrix)
  fp = matrix.sum(axis=0) - tp
  fn = matrix.sum(axis=1) - tp
  return float(np.mean(_f1_from_counts(tp, fp, fn)))


def matthews_corrcoef(predictions, labels) -> float:
  """Matthews correlation coefficient, the GLUE metric of CoLA.

  The multiclass form (Gorodkin 2004, "Comparing two K-category assignments by a K-category
  correlation coefficient", R_K), which ``sklearn.metrics.matthews_corrcoef`` computes. With C the
  confusion matrix over all classes, t_k = sum_j C[k, j] the true and p_k = sum_i C[i, k] the
  predicted count of class k, c = trace(C) the correct and s the total count:

    MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)).

  For two classes this is (tp tn - fp fn) / sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn)). When the
  denominator is 0 (all labels or all predictions one class) the result is 0.0, as in sklearn.

  Args:
    predictions: predicted classes, shape [n].
    labels: true classes, shape [n].

  Returns:
    The MCC in [-1, 1].

  Raises:
    ValueError: the inputs are empty, not 1-D, or differ in length.
  """
  predictions, labels = _as_pair(predictions, labels)
  # float64 throughout: the product of the two variances grows as n^4 and overflows int64.
  matrix = _confusion_matrix(predictions, labels).astype(np.float64)
  t = matrix.sum(axis=1)
  p = matrix.sum(axis=0)
  correct = np.trace(matrix)
  s = matrix.sum()
  covariance = correct * s - p @ t
  variance_predicted = s * s - p @ p
  variance_true = s * s - t @ t
  if variance_predicted * variance_true == 0:
    return 0.0
  return float(covariance / np.sqrt(variance_true * variance_predicted))


def _as_real_pair(predictions, labels) -> Optional[tuple[np.ndarray, np.ndarray]]:
  """Float64 1-D arrays of the inputs, or None where a correlation of them is undefined (NaN)."""
  predictions, labels = _as_pair(predictions, labels)
  predictions, labels = predictions.astype(np.float64), labels.astype(np.float64)
  if np.isnan(predictions).any() or np.isnan(labels).any():
    return None
  # Exact comparison, as scipy does: centring a constant like [0.1, 0.1, 0.1] on its rounded
  # mean leaves tiny non-zero residuals that would otherwise correlate.
  if (predictions == predictions[0]).all() or (labels == labels[0]).all():
    return None
  return predictions, labels


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson's r of non-constant finite x and y, computed the way scipy.stats.pearsonr does."""
  xm, ym = x - x.mean(), y - y.mean()
  # Scaling by the largest deviation first keeps the squared norms from overflowing.
  xm /= np.abs(xm).max()
  ym /= np.abs(ym).max()
  r = (xm / np.linalg.norm(xm)) @ (ym / np.linalg.norm(ym))
  return float(np.clip(r, -1.0, 1.0))


def pearson(predictions, labels) -> float:
  """Pearson correlation coefficient, a GLUE metric of STS-B.

  r = sum_i (x_i - mean x)(y_i - mean y) / sqrt(sum_i (x_i - mean x)^2 sum_i (y_i - mean y)^2).

  Where r is undefined the result is ``float('nan')``, as ``scipy.stats.pearsonr`` returns (with
  a ConstantInputWarning, which this function does not emit): when either input is constant,
  including a single example, or holds a NaN. (scipy raises a ValueError for a single example
  instead; here one value counts as constant.)

  Args:
    predictions: predicted scores, shape [n].
    labels: true scores, shape [n].

  Returns:
    r in [-1, 1], or NaN.

  Raises:
    ValueError: the inputs are empty, not 1-D, or differ in length.
  """
  pair = _as_real_pair(predictions, labels)
  return float("nan") if pair is None else _pearson(*pair)


def _average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing their mean rank (``scipy.stats.rankdata(method='average')``)."""
  order = np.argsort(values, kind="mergesort")
  sorted_values = values[order]
  starts_group = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
  group_of_sorted = np.cumsum(starts_group) - 1
  bounds = np.concatenate([np.flatnonzero(starts_group), [len(values)]])
  # Group g holds sorted positions bounds[g] .. bounds[g + 1] - 1, i.e. ranks bounds[g] + 1 ..
  # bounds[g + 1]; their mean is (bounds[g] + 1 + bounds[g + 1]) / 2.
  group_rank = 0.5 * (bounds[:-1] + 1 + bounds[1:])
  ranks = np.empty(len(values), np.float64)
  ranks[order] = group_rank[group_of_sorted]
  return ranks


def spearman(predictions, labels) -> float:
  """Spearman rank correlation, a GLUE metric of STS-B.

  Pearson's r of the ranks of predictions and labels, tied values sharing the mean of the ranks
  they span (``scipy.stats.rankdata(method='average')``), which is what ``scipy.stats.spearmanr``
  computes. Where it is undefined the result is ``float('nan')``, as scipy returns: when either
  input is constant (including a single example) or holds a NaN.

  Args:
    predictions: predicted scores, shape [n].
    labels: true scores, shape [n].

  Returns:
    rho in [-1, 1], or NaN.

  Raises:
    ValueError: the inputs are empty, not 1-D, or differ in length.
  """
  pair = _as_real_pair(predictions, labels)
  if pair is None:
    return float("nan")
  return _pearson(*map(_average_ranks, pair))


# --- SQuAD v1.1 ---------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
  """Normalizes an answer as the official SQuAD v1.1 ``evaluate-v1.1.py`` does.

  In this order: lower-case; delete every character of ``string.punctuation``; replace the
  articles a, an, the (whole words, regex ``\\b(a|an|the)\\b``) by spaces; collapse white space
  to single spaces and strip it. E.g. ``"The  Cat!"`` -> ``"cat"``; ``"theatre"`` is kept.
  """
  text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def _check_ground_truths(ground_truths: Sequence[str]) -> Sequence[str]:
  if isinstance(ground_truths, str):
    raise TypeError(f"ground_truths must be a sequence of answers, not the string "
                    f"{ground_truths!r}; wrap a single answer in a list.")
  if not len(ground_truths):
    raise ValueError("ground_truths is empty; a prediction needs at least one reference answer.")
  return ground_truths


def _token_f1(prediction: str, ground_truth: str) -> float:
  prediction_tokens = normalize_answer(prediction).split()
  truth_tokens = normalize_answer(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision = num_same / len(prediction_tokens)
  recall = num_same / len(truth_tokens)
  return 2 * precision * recall / (precision + recall)


def squad_exact_match(prediction: str, ground_truths: Sequence[str]) -> float:
  """1.0 if the normalized prediction equals any normalized ground truth, else 0.0 (SQuAD v1.1).

  Args:
    prediction: the predicted answer text.
    ground_truths: the reference answers of the question (at least one).

  Returns:
    1.0 or 0.0.

  Raises:
    TypeError: ``ground_truths`` is a single string.
    ValueError: ``ground_truths`` is empty.
  """
  ground_truths = _check_ground_truths(ground_truths)
  normalized = normalize_answer(prediction)
  return float(any(normalized == normalize_answer(truth) for truth in ground_truths))


def squad_f1(prediction: str, ground_truths: Sequence[str]) -> float:
  """Token-level F1 of the prediction against its best-matching ground truth (SQuAD v1.1).

  Both answers are normalized (:func:`normalize_answer`) and split on white space; the common
  tokens are the multiset intersection, precision = common / prediction tokens, recall = common /
  ground-truth tokens, F1 their harmonic mean, and 0.0 when no token is common (so two answers
  that both normalize to nothing score EM 1 but F1 0, as in the official script). The score is
  the maximum over ``ground_truths``.

  Args:
    prediction: the predicted answer text.
    ground_truths: the reference answers of the question (at least one).

  Returns:
    The F1 score in [0, 1].

  Raises:
    TypeError: ``ground_truths`` is a single string.
    ValueError: ``ground_truths`` is empty.
  """
  ground_truths = _check_ground_truths(ground_truths)
  return max(_token_f1(prediction, truth) for truth in ground_truths)


def squad_scores(predictions: Mapping[str, str],
                 references: Mapping[str, Sequence[str]]) -> dict[str, float]:
  """Exact match and F1 of a set of answers, as the official SQuAD v1.1 ``evaluate`` computes them.

  Both are averaged over every question of ``references``. A question without a prediction
  scores 0 (the official script also prints a message; this does not). Predictions for ids
  absent from ``references`` are ignored, as in the official script. The official script reports
  percentages (x 100); these are fractions.

  Args:
    predictions: question id -> predicted answer text.
    references: question id -> that question's reference answers (at least one each).

  Returns:
    ``{"exact_match": float, "f1": float}``, both in [0, 1].

  Raises:
    TypeError: a question's references are a single string.
    ValueError: ``references`` is empty, or a question has no reference answer.
  """
  if not references:
    raise ValueError("references is empty; SQuAD scores of no questions are undefined.")
  exact_match = f1_total = 0.0
  for question_id, ground_truths in references.items():
    try:
      ground_truths = _check_ground_truths(ground_truths)
    except (TypeError, ValueError) as error:
      raise type(error)(f"question {question_id!r}: {error}") from None
    if question_id not in predictions:
      continue
    exact_match += squad_exact_match(predictions[question_id], ground_truths)
    f1_total += squad_f1(predictions[question_id], ground_truths)
  return {"exact_match": exact_match / len(references), "f1": f1_total / len(references)}


# --- Registry -----------------------------------------------------------------------------------

# Classification and regression metrics by name, each fn(predictions, labels) -> float. The SQuAD
# metrics (exact match and F1 of text answers) are not here: squad_scores computes both at once.
METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: Union[str, Iterable[str]], predictions, labels) -> dict[str, float]:
  """Evaluates the metrics of :data:`METRICS` named ``names`` on one set of predictions.

  Args:
    names: a metric name or several, e.g. ``("accuracy", "f1")`` for MRPC.
    predictions: predicted classes or scores, shape [n].
    labels: true classes or scores, shape [n].

  Returns:
    Metric name -> value, in the order of ``names``.

  Raises:
    ValueError: an unknown metric name (before any metric is computed), or bad inputs.
  """
  names = [names] if isinstance(names, str) else list(names)
  unknown = [name for name in names if name not in METRICS]
  if unknown:
    raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known metrics: "
                     f"{', '.join(sorted(METRICS))} (SQuAD exact_match and f1 come from "
                     f"squad_scores).")
  return {name: METRICS[name](predictions, labels) for name in names}
