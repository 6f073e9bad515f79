"""GLUE (nine tasks) and SQuAD v1.1 from TensorFlow Datasets, as downstream tasks.

Both benchmarks hide their test labels (TFDS gives -1 for GLUE's test split and has no SQuAD test
split), so, as :mod:`autodistill.finetune.task_types` describes, ``train`` and ``dev`` are
carved from the official training split (:func:`task_types.carve_dev`, fixed by a hash) and the
official validation split is the reported test split: ``glue/mnli`` reports
``validation_matched`` as MNLI-m and ``validation_mismatched`` as MNLI-mm. The report columns are
the paper's Table 3 names.

Datasets are read from a local ``data_dir`` through :mod:`autodistill.data.tfds_corpus` (never
downloaded; prepare them once with ``tfds build glue/cola --data_dir=DIR
--file_format=array_record``). This module imports without the ``tfds`` extra; building a task
asks for it. Building a task opens its TFDS splits, so a missing extra or an unprepared dataset
fails at :func:`~autodistill.finetune.tasks.get_task`; the examples are read on the first
``load`` and kept. :data:`FACTORIES` is what the registry (:mod:`autodistill.finetune.tasks`)
reads; this module does not import it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from autodistill.data import tfds_corpus
from autodistill.finetune import task_types

SQUAD_TASK = "squad"
# The config is pinned: TFDS's squad also has v2.0 (unanswerable questions), a different task.
SQUAD_TFDS_NAME = "squad/v1.1"
DEFAULT_DEV_FRACTION = 0.05

# TFDS gives this label to every example of GLUE's test splits, whose labels are not public.
_HIDDEN_LABEL = -1


@dataclasses.dataclass(frozen=True)
class _GlueSpec:
  """How one GLUE task reads from its TFDS config (feature names from TFDS ``text/glue.py``).

  Attributes:
    title: the task's name in the GLUE paper (``"CoLA"``).
    text_keys: the TFDS features holding ``text_a`` (and ``text_b`` for pair tasks).
    labels: the TFDS ClassLabel names; empty for STS-B, whose label is a float score.
    metrics: the GLUE score first.
    tests: (report column, split name for ``load``, TFDS split) of each reported split.
    in_average: whether the task counts towards the GLUE average.
  """

  title: str
  text_keys: tuple[str, ...]
  labels: tuple[str, ...]
  metrics: tuple[str, ...]
  tests: tuple[tuple[str, str, str], ...]
  in_average: bool = True


def _validation_as_test(column: str) -> tuple[tuple[str, str, str], ...]:
  return ((column, "test", "validation"),)


_NLI_LABELS = ("entailment", "not_entailment")
# In the column order of the paper's Table 3 (MNLI gives two columns).
_GLUE_SPECS: dict[str, _GlueSpec] = {
    "glue/cola": _GlueSpec("CoLA", ("sentence",), ("unacceptable", "acceptable"),
                           ("mcc", "accuracy"), _validation_as_test("CoLA")),
    "glue/mnli": _GlueSpec("MNLI", ("premise", "hypothesis"),
                           ("entailment", "neutral", "contradiction"), ("accuracy",),
                           (("MNLI-m", "test_matched", "validation_matched"),
                            ("MNLI-mm", "test_mismatched", "validation_mismatched"))),
    "glue/mrpc": _GlueSpec("MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
                           ("f1", "accuracy"), _validation_as_test("MRPC")),
    "glue/qnli": _GlueSpec("QNLI", ("question", "sentence"), _NLI_LABELS, ("accuracy",),
                           _validation_as_test("QNLI")),
    "glue/qqp": _GlueSpec("QQP", ("question1", "question2"), ("not_duplicate", "duplicate"),
                          ("f1", "accuracy"), _validation_as_test("QQP")),
    "glue/rte": _GlueSpec("RTE", ("sentence1", "sentence2"), _NLI_LABELS, ("accuracy",),
                          _validation_as_test("RTE")),
    "glue/sst2": _GlueSpec("SST-2", ("sentence",), ("negative", "positive"), ("accuracy",),
                           _validation_as_test("SST-2")),
    "glue/stsb": _GlueSpec("STS-B", ("sentence1", "sentence2"), (), ("spearman", "pearson"),
                           _validation_as_test("STS-B")),
    # WNLI's labels are in the opposite order to RTE's and QNLI's in TFDS. BERT and the paper's
    # Table 3 leave WNLI out of the average (its dev set is adversarial to memorising train).
    "glue/wnli": _GlueSpec("WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
                           ("accuracy",), _validation_as_test("WNLI"), in_average=False),
}
# The GLUE task names in Table 3 order.
GLUE_TASKS = tuple(_GLUE_SPECS)


def glue_task_names(in_average_only: bool = False) -> tuple[str, ...]:
  """The GLUE task names in Table 3 order; ``in_average_only`` leaves out WNLI."""
  return tuple(name for name in GLUE_TASKS
               if _GLUE_SPECS[name].in_average or not in_average_only)


def _check_fraction(name: str, dev_fraction: float) -> None:
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"task {name!r}: dev_fraction must be in (0, 1), not {dev_fraction}.")


def _carve_description(dev_fraction: float) -> str:
  return f"train/dev carved {100 * (1 - dev_fraction):g}/{100 * dev_fraction:g} from train"


def _sizes(builder: Any, splits: Sequence[str]) -> str:
  """``"; TFDS sizes train 8551, validation 1043"`` where the prepared dataset records them."""
  try:
    known = {str(name): int(info.num_examples) for name, info in builder.info.splits.items()}
  except (AttributeError, TypeError):
    return ""
  if not all(split in known for split in splits):
    return ""  # Not prepared (e.g. under tfds.testing.mock_data).
  return "; TFDS sizes " + ", ".join(f"{split} {known[split]}" for split in splits)


def _check_features(name: str, builder: Any, keys: Sequence[str],
                    labels: Sequence[str] = ()) -> None:
  """Fails at build time, not mid-run, where a prepared copy has other features or labels."""
  features = builder.info.features
  if features is None:
    return
  missing = [key for key in keys if key not in features.keys()]
  if missing:
    raise ValueError(f"TFDS dataset {name!r} has no feature(s) {missing}; its features are "
                     f"{sorted(features.keys())} (prepared by another TFDS version?).")
  names = tuple(getattr(features["label"], "names", None) or ()) if labels else ()
  if labels and names != tuple(labels):
    raise ValueError(f"TFDS dataset {name!r} has labels {list(names)}, expected "
                     f"{list(labels)} (prepared by another TFDS version?).")


def _scalar(value: Any) -> Any:
  """A Python scalar from a NumPy scalar or 0-d array (what TFDS sources give) or a scalar."""
  return value.item() if isinstance(value, (np.ndarray, np.generic)) else value


def _text(value: Any, name: str, key: str) -> str:
  """A text feature as str: data sources give str, TensorFlow pipelines give UTF-8 bytes."""
  value = _scalar(value)
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, str):
    return str(value)  # np.str_ is a str; plain str keeps examples simple to compare and pickle.
  raise TypeError(f"feature {key!r} of TFDS dataset {name!r} is {type(value).__name__}, "
                  "not text.")


# What a converter returns: the examples, and the keys to carve dev by (None: the uids).
_Converted = tuple[list[task_types.Example], Optional[list[str]]]


def _make_load(name: str, sources: Mapping[str, Iterable[Any]],
               convert: Callable[[str, Iterable[Any]], _Converted],
               tests: Mapping[str, str], dev_fraction: float) -> Callable[[str], list[Any]]:
  """``load(split)`` of a task whose train/dev are carved from TFDS ``train`` and whose test
  splits (``tests``: split name -> TFDS split) are read as they are.

  Each TFDS split is read and converted once, on first use, and kept; ``train`` and ``dev`` are
  the two sides of one carve. Every call returns a new list.
  """
  read: dict[str, list[task_types.Example]] = {}

  def load(split: str) -> list[task_types.Example]:
    if split in (task_types.TRAIN, task_types.DEV):
      if task_types.TRAIN not in read:
        examples, keys = convert("train", sources["train"])
        read[task_types.TRAIN], read[task_types.DEV] = task_types.carve_dev(
            examples, dev_fraction, salt=name, keys=keys)
      return list(read[split])
    if split in tests:
      if split not in read:
        read[split] = convert(tests[split], sources[tests[split]])[0]
      return list(read[split])
    raise ValueError(f"task {name!r} has no split {split!r}; choose from "
                     f"{[task_types.TRAIN, task_types.DEV, *tests]}.")

  return load


def _glue_examples(name: str, spec: _GlueSpec, tfds_split: str,
                   source: Iterable[Any]) -> _Converted:
  """The TextExamples of one TFDS split of a GLUE task (uid ``{name}/{tfds_split}/{idx}``)."""
  regression = not spec.labels
  examples = []
  for example in source:
    uid = f"{name}/{tfds_split}/{int(_scalar(example['idx']))}"
    label = _scalar(example["label"])
    if label == _HIDDEN_LABEL:
      raise ValueError(
          f"{uid} has label -1, which TFDS gives to GLUE's test examples (their labels are "
          f"hidden): {name!r} reads train/dev from TFDS 'train' and test from its validation "
          "split(s), so these are not the examples TFDS prepares there.")
    if regression:
      label = float(label)
    else:
      label = int(label)
      if not 0 <= label < len(spec.labels):
        raise ValueError(f"{uid} has label {label}, not one of the {len(spec.labels)} classes "
                         f"{list(spec.labels)}.")
    texts = [_text(example[key], name, key) for key in spec.text_keys]
    examples.append(task_types.TextExample(uid=uid, text_a=texts[0],
                                           text_b=texts[1] if len(texts) > 1 else None,
                                           label=label))
  return examples, None


def _glue_task(name: str, spec: _GlueSpec, data_dir: str | os.PathLike | None,
               dev_fraction: float) -> task_types.Task:
  _check_fraction(name, dev_fraction)
  data_dir = None if data_dir is None else os.fspath(data_dir)
  builder = tfds_corpus.load_builder(name, data_dir, user=f"GLUE task {name!r}")
  _check_features(name, builder, (*spec.text_keys, "label", "idx"), spec.labels)
  tfds_splits = ("train", *(tfds_split for _, _, tfds_split in spec.tests))
  # Opened now, so an unprepared dataset fails here; read on the first load.
  sources = {split: tfds_corpus.open_split(builder, name, split, data_dir)
             for split in tfds_splits}
  tests = ", ".join(f"{tfds_split} ({column})" if len(spec.tests) > 1 else tfds_split
                    for column, _, tfds_split in spec.tests)
  return task_types.Task(
      name=name,
      kind=task_types.CLASSIFICATION if spec.labels else task_types.REGRESSION,
      labels=spec.labels,
      metrics=spec.metrics,
      test_splits={column: split for column, split, _ in spec.tests},
      load=_make_load(name, sources,
                      lambda split, source: _glue_examples(name, spec, split, source),
                      {split: tfds_split for _, split, tfds_split in spec.tests}, dev_fraction),
      description=(f"GLUE {spec.title} (TFDS {name}): {_carve_description(dev_fraction)}, "
                   f"test = {tests}{_sizes(builder, tfds_splits)}"),
      in_average=spec.in_average)


def _glue_factory(name: str) -> task_types.TaskFactory:
  spec = _GLUE_SPECS[name]

  def factory(data_dir: str | os.PathLike | None = None,
              dev_fraction: float = DEFAULT_DEV_FRACTION) -> task_types.Task:
    return _glue_task(name, spec, data_dir, dev_fraction)

  factory.__name__ = factory.__qualname__ = f"glue_{name.split('/')[1]}"
  factory.__doc__ = f"""GLUE {spec.title} from TFDS ``{name}`` prepared under ``data_dir``.

  ``train``/``dev`` are carved from TFDS ``train`` (``dev_fraction`` of it in dev, fixed by a
  hash of the uid); {", ".join(f"``{s}`` ({c}) is TFDS ``{t}``" for c, s, t in spec.tests)}.

  Raises:
    ImportError: the ``tfds`` extra is not installed.
    FileNotFoundError: the dataset is not prepared under ``data_dir`` (the message says how).
  """
  return factory


def _squad_examples(source: Iterable[Any]) -> _Converted:
  """QaExamples of one TFDS split of SQuAD v1.1, and each one's article title to carve by."""
  examples, titles = [], []
  for example in source:
    uid = _text(example["id"], SQUAD_TFDS_NAME, "id")
    answers = example["answers"]
    texts = tuple(_text(text, SQUAD_TFDS_NAME, "answers/text") for text in answers["text"])
    starts = tuple(int(start) for start in answers["answer_start"])
    if len(texts) != len(starts):
      raise ValueError(f"SQuAD question {uid!r} has {len(texts)} answer texts but {len(starts)} "
                       "answer starts.")
    context = _text(example["context"], SQUAD_TFDS_NAME, "context")
    question = _text(example["question"], SQUAD_TFDS_NAME, "question")
    examples.append(task_types.QaExample(uid=uid, question=question, context=context,
                                         answers=texts, answer_starts=starts))
    # An article's questions share passages, so they go to the same side of the carve.
    titles.append(_text(example["title"], SQUAD_TFDS_NAME, "title") or context)
  return examples, titles


def squad(data_dir: str | os.PathLike | None = None,
          dev_fraction: float = DEFAULT_DEV_FRACTION) -> task_types.Task:
  """SQuAD v1.1 (extractive QA) from TFDS ``squad/v1.1`` prepared under ``data_dir``.

  ``train``/``dev`` are carved from TFDS ``train`` by article (title), so dev questions ask
  about passages training never shows, as in the official split; ``dev_fraction`` is the share
  of articles, not exactly of questions. The ``"SQuAD"`` test split is TFDS ``validation``,
  whose questions carry every annotator's answer.

  Raises:
    ImportError: the ``tfds`` extra is not installed.
    FileNotFoundError: the dataset is not prepared under ``data_dir`` (the message says how).
  """
  _check_fraction(SQUAD_TASK, dev_fraction)
  data_dir = None if data_dir is None else os.fspath(data_dir)
  builder = tfds_corpus.load_builder(SQUAD_TFDS_NAME, data_dir,
                                     user=f"task {SQUAD_TASK!r}")
  _check_features(SQUAD_TFDS_NAME, builder, ("id", "title", "context", "question", "answers"))
  sources = {split: tfds_corpus.open_split(builder, SQUAD_TFDS_NAME, split, data_dir)
             for split in ("train", "validation")}
  return task_types.Task(
      name=SQUAD_TASK,
      kind=task_types.SPAN_QA,
      labels=(),
      metrics=("f1", "exact_match"),
      test_splits={"SQuAD": "test"},
      load=_make_load(SQUAD_TASK, sources, lambda split, source: _squad_examples(source),
                      {"test": "validation"}, dev_fraction),
      description=(f"SQuAD v1.1 (TFDS {SQUAD_TFDS_NAME}): "
                   f"{_carve_description(dev_fraction)} by article, test = validation"
                   f"{_sizes(builder, ('train', 'validation'))}"))


FACTORIES: dict[str, task_types.TaskFactory] = {
    **{name: _glue_factory(name) for name in GLUE_TASKS}, SQUAD_TASK: squad}
"""The tasks this module defines, for the registry :data:`autodistill.finetune.tasks.TASKS`."""
