"""Model inputs for sequence tasks, and the in-memory streams the trainer and evaluators read.

:func:`encode_examples` turns sentences and sentence pairs into BERT's input layout
``[CLS] a [SEP] (b [SEP])``, truncating the longer text first, one token at a time, as BERT's
``run_classifier.py`` does. :class:`ArrayStream` serves shuffled, fixed-size global batches of
any feature arrays forever (epoch after epoch), with a checkpointable position, to
:func:`~autodistill.train.run_phases`. :func:`padded_batches` serves an evaluation split
once, in order, padded to full batches with a mask.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from autodistill import sharding
from autodistill.data.tokenization import Tokenizer
from autodistill.finetune.task_types import CLASSIFICATION, REGRESSION, TextExample

INPUTS = ("input_ids", "token_type_ids", "attention_mask")
# How a sentence task of each kind stores its labels: class ids or scores.
LABEL_DTYPES = {CLASSIFICATION: np.int32, REGRESSION: np.float32}


def _truncate_pair(a: np.ndarray, b: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
  """Longest-first truncation (BERT's ``_truncate_seq_pair``): drop from the end of the longer
  text until both fit in ``budget`` tokens."""
  la, lb = len(a), len(b)
  while la + lb > budget:
    if la > lb:
      la -= 1
    else:
      lb -= 1
  return a[:la], b[:lb]


def encode_examples(examples: Sequence[TextExample], tokenizer: Tokenizer, seq_len: int,
                    kind: str = CLASSIFICATION) -> dict[str, np.ndarray]:
  """``input_ids``, ``token_type_ids``, ``attention_mask`` [n, seq_len] and ``labels`` [n].

  Pairs are ``[CLS] a [SEP] b [SEP]`` with token type 0 for ``[CLS] a [SEP]`` and 1 for
  ``b [SEP]`` (0 for both under RoBERTa / XLM-R tokenizers, whose models have one token type:
  ``Tokenizer.second_segment_id``); single sentences ``[CLS] a [SEP]``. Labels are int32
  (classification) or float32 (regression), as :data:`LABEL_DTYPES` says.
  """
  if seq_len < 4:
    raise ValueError(f"seq_len must be at least 4 ([CLS] a [SEP] b [SEP]), not {seq_len}.")
  if kind not in LABEL_DTYPES:
    raise ValueError(f"sentence tasks are {list(LABEL_DTYPES)}, not {kind!r}.")
  n = len(examples)
  firsts = tokenizer.encode_batch([e.text_a for e in examples])
  pairs = [i for i, e in enumerate(examples) if e.text_b is not None]
  seconds = dict(zip(pairs, tokenizer.encode_batch([examples[i].text_b for i in pairs])))
  ids = np.full((n, seq_len), tokenizer.pad_id, np.int32)
  types = np.zeros((n, seq_len), np.int32)
  mask = np.zeros((n, seq_len), np.int32)
  for i, a in enumerate(firsts):
    if i in seconds:
      a, b = _truncate_pair(a, seconds[i], seq_len - 3)
      row = np.concatenate([[tokenizer.cls_id], a, [tokenizer.sep_id], b, [tokenizer.sep_id]])
      types[i, len(a) + 2:len(row)] = tokenizer.second_segment_id
    else:
      row = np.concatenate([[tokenizer.cls_id], a[:seq_len - 2], [tokenizer.sep_id]])
    ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
  labels = np.asarray([e.label for e in examples], LABEL_DTYPES[kind])
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


def _fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
  digest = hashlib.sha256()
  for name in sorted(arrays):
    digest.update(name.encode())
    digest.update(np.ascontiguousarray(arrays[name]).tobytes())
  return digest.hexdigest()[:16]


def _shard(mesh: Mesh, data_axis: str, value: np.ndarray) -> jax.Array:
  """A global batch (every process holds all of it) as a ``jax.Array`` split over ``data_axis``."""
  split = sharding.batch_sharding(mesh, value.ndim, data_axis)
  return jax.make_array_from_callback(value.shape, split, lambda index: value[index])


class ArrayStream:
  """Shuffled global batches of in-memory arrays, forever, with a resumable position.

  Batch ``k`` holds stream positions ``k*B .. k*B+B-1``; position ``p`` is row
  ``perm(p // n)[p % n]``, where ``perm(e)`` is a permutation drawn from ``(seed, e)``. So every
  epoch sees every example once, batches span epoch boundaries (no example is dropped, shapes
  stay static), and the stream is a pure function of its position: a resumed run reads exactly
  the batches the interrupted one would have.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], global_batch_size: int, seed: int = 0):
    sizes = {len(v) for v in arrays.values()}
    if len(sizes) != 1 or not sizes.pop():
      raise ValueError("the training arrays are empty or differ in length; "
                       f"got {{name: len}} = { {k: len(v) for k, v in arrays.items()} }.")
    if global_batch_size < 1:
      raise ValueError(f"global_batch_size must be >= 1, not {global_batch_size}.")
    self.arrays = dict(arrays)
    self.num_examples = len(next(iter(arrays.values())))
    self.global_batch_size = int(global_batch_size)
    self.seed = int(seed)
    self.position = 0
    self._fingerprint = _fingerprint(self.arrays)

  def _permutation(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

  def batch_indices(self, position: int) -> np.ndarray:
    """Rows of the batch that starts at stream ``position``."""
    positions = position + np.arange(self.global_batch_size)
    epochs = positions // self.num_examples
    rows = np.empty(self.global_batch_size, np.int64)
    for epoch in np.unique(epochs):
      where = epochs == epoch
      rows[where] = self._permutation(int(epoch))[positions[where] % self.num_examples]
    return rows

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    while True:
      rows = self.batch_indices(self.position)
      self.position += self.global_batch_size
      yield {name: value[rows] for name, value in self.arrays.items()}

  def device_batches(self, mesh: Mesh, data_axis: str = "data") -> Iterator[dict[str, jax.Array]]:
    """Global batches as ``jax.Array``s sharded over ``data_axis`` of ``mesh``."""
    for batch in self:
      yield {name: _shard(mesh, data_axis, value) for name, value in batch.items()}

  def state_dict(self) -> dict[str, Any]:
    return {"position": self.position, "seed": self.seed,
            "global_batch_size": self.global_batch_size, "data": self._fingerprint}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    for key in ("seed", "global_batch_size", "data"):
      if state.get(key) != self.state_dict()[key]:
        raise ValueError(f"cannot resume: the saved data position has {key}={state.get(key)!r} "
                         f"but this run has {self.state_dict()[key]!r}; resume with the same "
                         "task, tokenizer and batch settings, or use a fresh workdir.")
    self.position = int(state["position"])


def padded_batches(arrays: Mapping[str, np.ndarray], batch_size: int, mesh: Mesh,
                   data_axis: str = "data") -> Iterator[tuple[dict[str, jax.Array], int]]:
  """One ordered pass in batches of ``batch_size`` rows, the last padded by repeating row 0.

  Yields:
    (device batch, number of real rows in it); padded rows come last.
  """
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    rows = np.arange(start, min(start + batch_size, n))
    real = len(rows)
    rows = np.concatenate([rows, np.zeros(batch_size - real, np.int64)])
    yield {name: _shard(mesh, data_axis, value[rows]) for name, value in arrays.items()}, real
