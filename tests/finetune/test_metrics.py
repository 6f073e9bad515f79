"""GLUE and SQuAD v1.1 metrics against hand-computed values, scikit-learn, scipy, and a
transcription of the official SQuAD v1.1 evaluation script."""

import collections
import importlib
import math
import os
import re
import string
import warnings

import numpy as np
import pytest

from autodistill.finetune.metrics import (
    METRICS,
    accuracy,
    compute,
    f1,
    macro_f1,
    matthews_corrcoef,
    normalize_answer,
    pearson,
    spearman,
    squad_exact_match,
    squad_f1,
    squad_scores,
)

SEEDS = range(8)


def _require(module: str, install: str):
  """Imports ``module``; skips locally but fails in CI (the pattern of tests/conftest.py)."""
  try:
    return importlib.import_module(module)
  except ImportError:
    message = f"{module} is not installed; run `{install}` (make test does)."
    if os.environ.get("CI"):
      pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sk():
  return _require("sklearn.metrics", "pip install 'scikit-learn>=1.5,<2'")


@pytest.fixture(scope="module")
def stats():
  return _require("scipy.stats", "pip install scipy")


# --- Hand-computed references -------------------------------------------------------------------

# A binary example: labels 1 1 1 1 0 0 0 0 0 0, predictions 1 1 1 0 1 1 0 0 0 0.
# tp = 3 (first three), fn = 1 (4th), fp = 2 (5th, 6th), tn = 4.
BINARY_LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
BINARY_PREDICTIONS = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]


def test_accuracy_by_hand():
  # 7 of 10 correct (tp + tn = 3 + 4).
  assert accuracy(BINARY_PREDICTIONS, BINARY_LABELS) == pytest.approx(0.7)
  assert accuracy(["a", "b", "c"], ["a", "b", "b"]) == pytest.approx(2 / 3)


def test_binary_f1_by_hand():
  # precision 3/5, recall 3/4, F1 = 2 * 3 / (2 * 3 + 2 + 1) = 6/9.
  assert f1(BINARY_PREDICTIONS, BINARY_LABELS) == pytest.approx(2 / 3)
  # With 0 as the positive class: tp = 4, fp = 1, fn = 2 -> 8 / 11.
  assert f1(BINARY_PREDICTIONS, BINARY_LABELS, positive=0) == pytest.approx(8 / 11)


def test_binary_f1_without_positives_is_zero():
  assert f1([0, 0, 0], [0, 0, 0]) == 0.0
  # Positives only among the labels, none predicted: tp = 0, fn = 2 -> 0.
  assert f1([0, 0, 0], [1, 1, 0]) == 0.0


def test_binary_mcc_by_hand():
  # (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (12 - 2) / sqrt(5 * 4 * 6 * 5)
  #   = 10 / sqrt(600) = 0.408248...
  assert matthews_corrcoef(BINARY_PREDICTIONS, BINARY_LABELS) == pytest.approx(10 / math.sqrt(600))
  # Swapping the roles of the classes leaves MCC unchanged; inverting every prediction negates it.
  flipped = [1 - p for p in BINARY_PREDICTIONS]
  assert matthews_corrcoef(flipped, BINARY_LABELS) == pytest.approx(-10 / math.sqrt(600))


def test_multiclass_mcc_and_macro_f1_by_hand():
  labels = [0, 0, 1, 1, 2, 2]
  predictions = [0, 1, 1, 1, 2, 0]
  # Confusion C[true, predicted] = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]:
  # t = (2, 2, 2), p = (2, 3, 1), c = 4, s = 6.
  # cov = 4 * 6 - (4 + 6 + 2) = 12; s^2 - sum p^2 = 36 - 14 = 22; s^2 - sum t^2 = 36 - 12 = 24.
  assert matthews_corrcoef(predictions, labels) == pytest.approx(12 / math.sqrt(22 * 24))
  # Per-class (tp, fp, fn): 0: (1, 1, 1) -> 2/4; 1: (2, 1, 0) -> 4/5; 2: (1, 0, 1) -> 2/3.
  expected = (1 / 2 + 4 / 5 + 2 / 3) / 3
  assert macro_f1(predictions, labels) == pytest.approx(expected)
  # num_classes=5 adds classes 3 and 4, absent everywhere, at F1 0.
  assert macro_f1(predictions, labels, num_classes=5) == pytest.approx(expected * 3 / 5)


def test_macro_f1_counts_classes_only_predicted():
  # Class 2 is only predicted: F1 0 for it. Class 0: tp 1, fp 0, fn 1 -> 2/3; class 1: tp 1,
  # fp 0, fn 0 -> 1. Mean over three classes.
  assert macro_f1([0, 1, 2], [0, 1, 0]) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_mcc_degenerate_denominator_is_zero():
  assert matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0
  assert matthews_corrcoef([0, 1, 0], [1, 1, 1]) == 0.0


def test_pearson_by_hand():
  # x - mean = (-1, 0, 1), y - mean = (-2, -1, 3) (mean 3): cov = 2 + 0 + 3 = 5,
  # r = 5 / sqrt(2 * 14).
  assert pearson([1, 2, 3], [1, 2, 6]) == pytest.approx(5 / math.sqrt(28))
  assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_with_ties_by_hand():
  # x = (10, 20, 20, 30) -> ranks (1, 2.5, 2.5, 4); y = (1, 3, 2, 2) -> ranks (1, 4, 2.5, 2.5).
  # Both rank vectors have mean 2.5: deviations (-1.5, 0, 0, 1.5) and (-1.5, 1.5, 0, 0).
  # cov = 2.25; sums of squares 4.5 and 4.5 -> rho = 2.25 / 4.5 = 0.5.
  assert spearman([10, 20, 20, 30], [1, 3, 2, 2]) == pytest.approx(0.5)
  # A monotone but non-linear relation has rho 1 but r < 1.
  x = np.arange(1.0, 8.0)
  assert spearman(x, np.exp(x)) == pytest.approx(1.0)
  assert pearson(x, np.exp(x)) < 0.95


def test_correlations_of_constant_or_nan_input_are_nan():
  for fn in (pearson, spearman):
    assert math.isnan(fn([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    assert math.isnan(fn([1.0, 2.0, 3.0], [0.1, 0.1, 0.1]))
    assert math.isnan(fn([5.0], [1.0]))
    assert math.isnan(fn([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0]))


def test_results_are_python_floats():
  for name, fn in METRICS.items():
    value = fn([0, 1, 1, 2], [0, 1, 2, 2])
    assert type(value) is float, name


# --- Against scikit-learn and scipy -------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn(sk, seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 200))
  labels = rng.integers(0, 2, n)
  predictions = np.where(rng.random(n) < 0.7, labels, 1 - labels)
  assert accuracy(predictions, labels) == pytest.approx(sk.accuracy_score(labels, predictions))
  assert f1(predictions, labels) == pytest.approx(
      sk.f1_score(labels, predictions, zero_division=0))
  assert f1(predictions, labels, positive=0) == pytest.approx(
      sk.f1_score(labels, predictions, pos_label=0, zero_division=0))
  assert matthews_corrcoef(predictions, labels) == pytest.approx(
      sk.matthews_corrcoef(labels, predictions))


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_metrics_match_sklearn(sk, seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 300))
  k = int(rng.integers(3, 7))
  labels = rng.integers(0, k, n)
  # Mostly right, with some predictions of a class (k) no label has.
  predictions = np.where(rng.random(n) < 0.5, labels, rng.integers(0, k + 1, n))
  assert accuracy(predictions, labels) == pytest.approx(sk.accuracy_score(labels, predictions))
  assert matthews_corrcoef(predictions, labels) == pytest.approx(
      sk.matthews_corrcoef(labels, predictions))
  assert macro_f1(predictions, labels) == pytest.approx(
      sk.f1_score(labels, predictions, average="macro", zero_division=0))
  assert macro_f1(predictions, labels, num_classes=k + 3) == pytest.approx(
      sk.f1_score(labels, predictions, average="macro", labels=range(k + 3), zero_division=0))


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_match_scipy(stats, seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(3, 100))
  labels = rng.uniform(0, 5, n)
  predictions = labels + rng.normal(0, 1.5, n)
  assert pearson(predictions, labels) == pytest.approx(
      stats.pearsonr(predictions, labels).statistic, abs=1e-12)
  assert spearman(predictions, labels) == pytest.approx(
      stats.spearmanr(predictions, labels).statistic, abs=1e-12)
  # STS-B-like scores on a coarse grid, so both sides have many ties.
  coarse_labels = np.round(labels * 2) / 2
  coarse_predictions = np.round(np.clip(predictions, 0, 5))
  assert spearman(coarse_predictions, coarse_labels) == pytest.approx(
      stats.spearmanr(coarse_predictions, coarse_labels).statistic, abs=1e-12)
  assert pearson(coarse_predictions, coarse_labels) == pytest.approx(
      stats.pearsonr(coarse_predictions, coarse_labels).statistic, abs=1e-12)


def test_scipy_also_returns_nan_on_constant_input(stats):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # scipy warns ConstantInputWarning
    assert math.isnan(stats.pearsonr([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]).statistic)
    assert math.isnan(stats.spearmanr([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]).statistic)
  assert math.isnan(pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
  assert math.isnan(spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))


# --- SQuAD v1.1 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, normalized", [
    ("The  Cat!", "cat"),
    ("an apple", "apple"),
    ("A theatre", "theatre"),          # \b keeps "the" inside "theatre"
    ("Anne and the man", "anne and man"),
    ("  Hello,\tWorld.\n", "hello world"),
    ("the-end", "theend"),             # punctuation goes first, so "the-end" is one word
    ("a.", ""),                        # "a" then removed as an article
    ("U.S.A", "usa"),
    ("THE", ""),
    # Curly quotes are not in string.punctuation: the article between them becomes a space.
    ("\u201cThe\u201d end", "\u201c \u201d end"),
])
def test_normalize_answer(raw, normalized):
  assert normalize_answer(raw) == normalized


def test_squad_exact_match_takes_the_best_ground_truth():
  assert squad_exact_match("The Eiffel Tower", ["eiffel tower!", "Paris"]) == 1.0
  assert squad_exact_match("Eiffel", ["eiffel tower", "Paris"]) == 0.0
  assert squad_exact_match("paris.", ["eiffel tower", "Paris"]) == 1.0


def test_squad_f1_partial_overlap_by_hand():
  # "the big red dog" -> [big, red, dog]; "red dog barked" -> [red, dog, barked].
  # Common: red, dog (2). Precision 2/3, recall 2/3, F1 2/3.
  assert squad_f1("the big red dog", ["red dog barked"]) == pytest.approx(2 / 3)
  # Against also "a dog": [dog], common 1, precision 1/3, recall 1 -> F1 = 2 * (1/3) / (4/3)
  # = 1/2. The max over ground truths stays 2/3.
  assert squad_f1("the big red dog", ["a dog", "red dog barked"]) == pytest.approx(2 / 3)
  assert squad_f1("the big red dog", ["a dog"]) == pytest.approx(0.5)
  # Repeated tokens count as a multiset: [dog, dog] vs [dog] -> common 1, P 1/2, R 1 -> 2/3.
  assert squad_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)
  assert squad_f1("cat", ["dog"]) == 0.0


def test_squad_empty_normalized_answers_match_exactly_but_have_no_f1():
  # The official v1.1 behaviour: "" == "" is an exact match, but no common token gives F1 0.
  assert squad_exact_match("the", ["A."]) == 1.0
  assert squad_f1("the", ["A."]) == 0.0


def test_squad_scores_by_hand_with_a_missing_prediction():
  references = {
      "q1": ["Denver Broncos", "The Broncos"],
      "q2": ["red dog barked"],
      "q3": ["1999"],
      "q4": ["Paris"],
  }
  predictions = {"q1": "broncos", "q2": "the big red dog", "q4": "paris", "other": "ignored"}
  # q1: EM 1 ("broncos" == normalized "The Broncos"), F1 1; q2: EM 0, F1 2/3;
  # q3: missing, 0 and 0; q4: EM 1, F1 1. Averages over the 4 reference questions.
  scores = squad_scores(predictions, references)
  assert scores["exact_match"] == pytest.approx(2 / 4)
  assert scores["f1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
  assert set(scores) == {"exact_match", "f1"}


# A transcription of the official SQuAD v1.1 script (evaluate-v1.1.py), the independent reference.

def _official_normalize_answer(s):
  """Lower text and remove punctuation, articles and extra whitespace."""
  def remove_articles(text):
    return re.sub(r'\b(a|an|the)\b', ' ', text)

  def white_space_fix(text):
    return ' '.join(text.split())

  def remove_punc(text):
    exclude = set(string.punctuation)
    return ''.join(ch for ch in text if ch not in exclude)

  def lower(text):
    return text.lower()

  return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1_score(prediction, ground_truth):
  prediction_tokens = _official_normalize_answer(prediction).split()
  ground_truth_tokens = _official_normalize_answer(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0
  precision = 1.0 * num_same / len(prediction_tokens)
  recall = 1.0 * num_same / len(ground_truth_tokens)
  f1 = (2 * precision * recall) / (precision + recall)
  return f1


def _official_exact_match_score(prediction, ground_truth):
  return (_official_normalize_answer(prediction) == _official_normalize_answer(ground_truth))


def _official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
  scores_for_ground_truths = []
  for ground_truth in ground_truths:
    score = metric_fn(prediction, ground_truth)
    scores_for_ground_truths.append(score)
  return max(scores_for_ground_truths)


def _official_evaluate(dataset, predictions):
  f1 = exact_match = total = 0
  for article in dataset:
    for paragraph in article['paragraphs']:
      for qa in paragraph['qas']:
        total += 1
        if qa['id'] not in predictions:
          continue  # the official script prints 'Unanswered question ... will receive score 0.'
        ground_truths = list(map(lambda x: x['text'], qa['answers']))
        prediction = predictions[qa['id']]
        exact_match += _official_metric_max_over_ground_truths(
            _official_exact_match_score, prediction, ground_truths)
        f1 += _official_metric_max_over_ground_truths(
            _official_f1_score, prediction, ground_truths)

  exact_match = 100.0 * exact_match / total
  f1 = 100.0 * f1 / total

  return {'exact_match': exact_match, 'f1': f1}


_WORDS = ["the", "The", "a", "A", "an", "An", "THE", "theatre", "anne", "cat", "dog", "Red",
          "red", "big", "1999", "U.S.", "Broncos", "denver", "an-apple", "the,", "(a)", "it's",
          "\u201cthe\u201d", "caf\u00e9"]
_GLUE = [" ", " ", " ", "  ", "\t", ", ", ". ", "! ", " - ", "'"]


def _random_answer(rng) -> str:
  n = int(rng.integers(0, 6))
  parts = []
  for _ in range(n):
    parts.append(str(rng.choice(_WORDS)))
    parts.append(str(rng.choice(_GLUE)))
  return "".join(parts)


def _random_squad(seed, num_questions=50):
  rng = np.random.default_rng(seed)
  references, predictions = {}, {}
  for i in range(num_questions):
    answers = [_random_answer(rng) for _ in range(int(rng.integers(1, 4)))]
    references[f"q{i}"] = answers
    roll = rng.random()
    if roll < 0.1:
      continue  # unanswered
    # Some predictions copy (a variant of) a reference, so exact matches and overlaps occur.
    predictions[f"q{i}"] = (answers[0].upper() + "." if roll < 0.4 else _random_answer(rng))
  return references, predictions


@pytest.mark.parametrize("seed", range(3))
def test_squad_matches_the_official_script(seed):
  references, predictions = _random_squad(seed)
  for question_id, prediction in predictions.items():
    truths = references[question_id]
    assert normalize_answer(prediction) == _official_normalize_answer(prediction)
    assert squad_exact_match(prediction, truths) == float(
        _official_metric_max_over_ground_truths(_official_exact_match_score, prediction, truths))
    assert squad_f1(prediction, truths) == pytest.approx(
        _official_metric_max_over_ground_truths(_official_f1_score, prediction, truths))
  dataset = [{"paragraphs": [{"qas": [
      {"id": question_id, "answers": [{"text": text} for text in answers]}
      for question_id, answers in references.items()]}]}]
  official = _official_evaluate(dataset, predictions)
  ours = squad_scores(predictions, references)
  assert ours["exact_match"] * 100 == pytest.approx(official["exact_match"])
  assert ours["f1"] * 100 == pytest.approx(official["f1"])
  # The generated data exercises both metrics: neither score is trivially 0 or 100.
  assert 0 < official["exact_match"] < 100 and 0 < official["f1"] < 100


# --- Registry and bad input ---------------------------------------------------------------------

def test_registry_names():
  assert set(METRICS) == {"accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman"}
  assert METRICS["mcc"] is matthews_corrcoef


def test_compute_evaluates_named_metrics_in_order():
  result = compute(("accuracy", "f1", "mcc"), BINARY_PREDICTIONS, BINARY_LABELS)
  assert list(result) == ["accuracy", "f1", "mcc"]
  assert result["accuracy"] == pytest.approx(0.7)
  assert result["f1"] == pytest.approx(2 / 3)
  assert result["mcc"] == pytest.approx(10 / math.sqrt(600))
  assert compute("accuracy", [1, 0], [1, 1]) == {"accuracy": 0.5}


def test_compute_rejects_unknown_metric_and_lists_known_ones():
  with pytest.raises(ValueError, match=r"'bleu'.*accuracy, f1, macro_f1, mcc, pearson, spearman"):
    compute(["accuracy", "bleu"], [1, 0], [1, 1])


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_reject_mismatched_and_empty_inputs(name):
  fn = METRICS[name]
  with pytest.raises(ValueError, match="differ in length: 3 predictions for 2 labels"):
    fn([0, 1, 1], [0, 1])
  with pytest.raises(ValueError, match="empty"):
    fn([], [])
  with pytest.raises(ValueError, match="one-dimensional"):
    fn([[0, 1]], [[0, 1]])


def test_macro_f1_rejects_labels_outside_num_classes():
  with pytest.raises(ValueError, match=r"labels hold 3.*range\(num_classes=3\)"):
    macro_f1([0, 1, 2], [0, 1, 3], num_classes=3)


def test_squad_rejects_bad_references():
  with pytest.raises(ValueError, match="ground_truths is empty"):
    squad_f1("x", [])
  with pytest.raises(TypeError, match="wrap a single answer in a list"):
    squad_exact_match("x", "x")
  with pytest.raises(ValueError, match="references is empty"):
    squad_scores({"q": "x"}, {})
  with pytest.raises(ValueError, match="question 'q2'.*empty"):
    squad_scores({"q1": "x"}, {"q1": ["x"], "q2": []})
