"""What a downstream example is and what a task is: the types every task definition builds on.

A :class:`Task` names its kind (classification, regression or extractive span QA), its label
names, its metrics (the first is the task's score: early stopping and the report use it) and how
to load each split. Every task has a ``train`` and a ``dev`` split (``dev`` drives early stopping
and the learning-rate sweep) and one or more *test* splits whose scores are reported, e.g. MNLI's
``mnli_m`` and ``mnli_mm``. Where a benchmark hides its test labels (GLUE, SQuAD), ``dev`` is a
fixed slice of the official training set (:func:`carve_dev`) and the official validation set is
the reported test split, so no number in a report was tuned on the data it is measured on.

This module is the floor of the task layer: it imports nothing of :mod:`autodistill`, the task
definitions (:mod:`autodistill.finetune.glue`, :mod:`autodistill.finetune.offline`) build on it,
and the registry of named tasks (:mod:`autodistill.finetune.tasks`) sits above them. How each
kind is modelled, trained and decoded lives with the heads
(:data:`autodistill.finetune.heads.HEADS`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

CLASSIFICATION, REGRESSION, SPAN_QA = "classification", "regression", "span_qa"
KINDS = (CLASSIFICATION, REGRESSION, SPAN_QA)
TRAIN, DEV = "train", "dev"


@dataclasses.dataclass(frozen=True)
class TextExample:
  """One sentence or sentence pair with its label (GLUE style).

  Attributes:
    uid: unique within the task (e.g. ``"glue/mrpc/train/17"``, ``"bbc_topic/tech/042.txt"``).
    text_a: the (first) sentence.
    text_b: the second sentence of a pair task, None for single-sentence tasks.
    label: class index (classification) or score (regression).
  """

  uid: str
  text_a: str
  text_b: Optional[str] = None
  label: Union[int, float] = 0


@dataclasses.dataclass(frozen=True)
class QaExample:
  """One extractive question (SQuAD style).

  Attributes:
    uid: the question's id.
    question: the question text.
    context: the passage the answer is a span of.
    answers: every annotator's answer text (SQuAD v1.1 dev has up to ~3; training has one).
    answer_starts: character offset of each answer in ``context``.
  """

  uid: str
  question: str
  context: str
  answers: tuple[str, ...] = ()
  answer_starts: tuple[int, ...] = ()


Example = Union[TextExample, QaExample]


@dataclasses.dataclass(frozen=True)
class Task:
  """A downstream task.

  Attributes:
    name: registry name, e.g. ``"glue/cola"``, ``"squad"``, ``"bbc_topic"``.
    kind: ``"classification"``, ``"regression"`` or ``"span_qa"``.
    labels: class names (classification); empty otherwise.
    metrics: metric names of :mod:`autodistill.finetune.metrics` (for span QA: ``"f1"`` and
      ``"exact_match"``); ``metrics[0]`` is the task's score.
    test_splits: report column name -> split name passed to ``load`` (``{"CoLA": "test"}``,
      ``{"MNLI-m": "test_matched", "MNLI-mm": "test_mismatched"}``).
    load: ``load(split) -> list of examples`` for ``"train"``, ``"dev"`` and every test split.
    description: one line for listings and reports (source and split sizes).
    in_average: whether the task counts towards the report's average (GLUE leaves WNLI out,
      as BERT and the paper's Table 3 do).
  """

  name: str
  kind: str
  labels: tuple[str, ...]
  metrics: tuple[str, ...]
  test_splits: Mapping[str, str]
  load: Callable[[str], list[Example]] = dataclasses.field(repr=False, compare=False)
  description: str = ""
  in_average: bool = True

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}.")
    if self.kind == CLASSIFICATION and len(self.labels) < 2:
      raise ValueError(f"task {self.name!r}: a classification task needs >= 2 labels.")
    if not self.metrics or not self.test_splits:
      raise ValueError(f"task {self.name!r} needs at least one metric and one test split.")

  @property
  def num_labels(self) -> int:
    """Outputs of the task head: classes, 1 for regression, 2 (start, end) for span QA."""
    return {CLASSIFICATION: len(self.labels), REGRESSION: 1, SPAN_QA: 2}[self.kind]

  @property
  def score_metric(self) -> str:
    return self.metrics[0]


def stable_unit(keys: Sequence[str], salt: str) -> np.ndarray:
  """A number in [0, 1) per key from SHA-256 of ``salt/key``: the same on every machine and
  Python (unlike ``hash()``), independent of order, so splits made from it are fixed."""
  return np.array([int.from_bytes(hashlib.sha256(f"{salt}/{k}".encode()).digest()[:8], "big")
                   / 2.0**64 for k in keys], np.float64)


def carve_dev(examples: Sequence[Example], fraction: float, salt: str,
              keys: Optional[Sequence[str]] = None) -> tuple[list[Example], list[Example]]:
  """Splits ``examples`` into (train, dev) with ``fraction`` of them in dev, by a stable hash of
  ``keys`` (default: the uids). Equal keys (e.g. duplicate texts) land on the same side.

  Used where a benchmark's test labels are hidden, so ``dev`` (early stopping, LR sweep) is
  carved out of the official training set.
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"the dev fraction must be in (0, 1), not {fraction}.")
  keys = [e.uid for e in examples] if keys is None else list(keys)
  is_dev = stable_unit(keys, salt) < fraction
  return ([e for e, d in zip(examples, is_dev) if not d],
          [e for e, d in zip(examples, is_dev) if d])


TaskFactory = Callable[..., Task]
"""``factory(**options) -> Task``: how a task definition module exports a named task."""
