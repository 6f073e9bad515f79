"""The pre-training input pipeline: deterministic, resumable, per-host sharded, prefetched.

One epoch of a split is a fixed function of (seed, epoch): segment pairs are re-drawn and shuffled
per epoch (:func:`~autodistill.data.examples.create_pairs`) and every row is masked with its own
generator seeded by (seed, epoch, row). Global batch ``b`` of an epoch is rows
``[b * B, (b + 1) * B)`` of that order; process ``p`` of ``P`` produces the contiguous slice
``[p * B / P, (p + 1) * B / P)`` of it. Hence:

* a run resumed from ``state_dict()`` continues with exactly the next batch;
* per-process shards are disjoint and together are the single-process batch, whatever the
  number of processes (a run can resume on a different topology);
* :meth:`PretrainingData.device_batches` assembles the global ``jax.Array`` with
  ``jax.make_array_from_process_local_data``, sharded over the mesh's ``data`` axis.

Why not grain: building an epoch is a cross-document operation (NSP draws its random segment from
another document; packing consumes a variable number of sentences), which does not fit grain's
per-record map/batch model without materialising the pairs first, and once they are materialised
the remaining work is a slice and a vectorisable masking pass. A thread with a bounded queue
keeps the input ahead of the training step (see ``bench/data_pipeline.py``) with no extra dependency.
"""

from __future__ import annotations

import copy
import queue
import threading
from typing import Any, Iterator, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from autodistill import sharding
from autodistill.data.corpora import Corpus
from autodistill.data.examples import FEATURES, ExampleConfig, Pairs, create_pairs, mask_batch
from autodistill.data.tokenization import Tokenizer
from autodistill.data.tokenized import (CorpusTooSmallError, TokenizedCorpus, split_documents,
                                        tokenize_corpus)

Batch = dict[str, np.ndarray]
_PAIRS, _MASKS, _PROXY = 0, 1, 2  # stream ids mixed into the seeds


class PretrainingData:
  """Batches of BERT pre-training examples from one split of a tokenized corpus.

  Iterating yields this process's share of each global batch as NumPy arrays named by
  :data:`~autodistill.data.examples.FEATURES` (plus ``example_mask``, 0 on rows that pad a final
  partial batch). ``state_dict()``/``load_state_dict()`` checkpoint the position: the next batch
  to be *consumed*, whatever the prefetch thread has produced ahead.
  """

  def __init__(self, corpus: TokenizedCorpus, tokenizer: Tokenizer, *, split: str,
               global_batch_size: int, examples: ExampleConfig = ExampleConfig(),
               eval_fraction: float = 0.05, seed: int = 0, repeat: Optional[bool] = None,
               drop_remainder: Optional[bool] = None, process_index: Optional[int] = None,
               process_count: Optional[int] = None, prefetch: int = 4):
    if split not in ("train", "eval"):
      raise ValueError(f"split must be 'train' or 'eval', got {split!r}.")
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size <= 0 or global_batch_size % self.process_count:
      raise ValueError(f"global_batch_size={global_batch_size} must be positive and divisible "
                       f"by the {self.process_count} processes.")
    self.corpus, self.tokenizer, self.examples = corpus, tokenizer, examples
    self.split, self.seed = split, seed
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // self.process_count
    # Training repeats and drops the ragged tail; evaluation makes one full pass.
    self.repeat = split == "train" if repeat is None else repeat
    self.drop_remainder = split == "train" if drop_remainder is None else drop_remainder
    self.prefetch = prefetch
    train_docs, eval_docs = split_documents(corpus, eval_fraction, seed)
    self.documents = train_docs if split == "train" else eval_docs
    self.proxy_of: Optional[int] = None  # the split's document count, for a proxy subset
    self._cached_epoch: tuple[int, Pairs] | None = None
    self._state = {"epoch": 0, "batch": 0}
    self._check_fills_a_batch(", or raise eval_fraction." if split == "eval" else ".")

  def _check_fills_a_batch(self, fix: str) -> None:
    pairs = self._pairs(0)
    if len(pairs) < (self.global_batch_size if self.drop_remainder else 1):
      what = (f"a proxy set of {len(self.documents)} of the {self.split} split's {self.proxy_of}"
              if self.proxy_of else f"the {self.split} split has {len(self.documents)}")
      raise CorpusTooSmallError(
          f"{what} documents and "
          f"{self.corpus.document_tokens(self.documents) if len(self.documents) else 0} tokens, "
          f"giving {len(pairs)} examples of length {self.examples.max_seq_length}; one batch "
          f"needs {self.global_batch_size}. Add text, lower the batch size{fix}")

  def proxy(self, num_documents: int) -> "PretrainingData":
    """This pipeline on a fixed subset of ``num_documents`` of its documents (KD-NAS's "small
    proxy set" that candidates are distilled on; Trivedi et al. 2023), drawn once from the seed:
    every trial of a search, and every process, sees the same subset. The whole split when it
    has no more documents than that.

    Raises:
      CorpusTooSmallError: the subset cannot fill one batch.
    """
    if num_documents <= 0:
      raise ValueError(f"a proxy set needs at least one document, not {num_documents}.")
    if num_documents >= len(self.documents):
      return self
    subset = copy.copy(self)
    rng = np.random.default_rng([self.seed, _PROXY])
    subset.documents = np.sort(rng.choice(self.documents, num_documents, replace=False))
    subset.proxy_of = len(self.documents)
    subset._cached_epoch, subset._state = None, {"epoch": 0, "batch": 0}
    subset._check_fills_a_batch(", or raise search.proxy_documents.")
    return subset

  # -- epochs and batches ------------------------------------------------------------------------

  def _pairs(self, epoch: int) -> Pairs:
    """The shuffled segment pairs of an epoch (the last epoch's are kept)."""
    if self._cached_epoch is None or self._cached_epoch[0] != epoch:
      rng = np.random.default_rng([self.seed, epoch, _PAIRS])
      pairs = create_pairs(self.corpus, self.documents, self.examples, self.tokenizer, rng)
      self._cached_epoch = (epoch, pairs.take(rng.permutation(len(pairs))))
    return self._cached_epoch[1]

  def batches_per_epoch(self, epoch: int = 0) -> int:
    n = len(self._pairs(epoch))
    return n // self.global_batch_size if self.drop_remainder else -(-n // self.global_batch_size)

  def batch(self, epoch: int, index: int) -> Batch:
    """This process's rows of global batch ``index`` of ``epoch`` (pure function of both)."""
    pairs = self._pairs(epoch)
    start = index * self.global_batch_size + self.process_index * self.local_batch_size
    rows = np.arange(start, start + self.local_batch_size)
    valid = rows < len(pairs)
    chosen = pairs.take(np.where(valid, rows, 0))  # pad a ragged tail with row 0, masked out
    rngs = [np.random.default_rng([self.seed, epoch, int(r), _MASKS]) for r in rows]
    batch = mask_batch(chosen, self.examples, self.tokenizer, rngs)
    batch["example_mask"] = valid.astype(np.int32)
    batch["masked_lm_weights"] = batch["masked_lm_weights"] * valid[:, None]
    return batch

  def _positions(self) -> Iterator[tuple[int, int]]:
    epoch, index = self._state["epoch"], self._state["batch"]
    while True:
      if index >= self.batches_per_epoch(epoch):
        if not self.repeat:
          return
        epoch, index = epoch + 1, 0
        continue
      yield epoch, index
      index += 1

  # -- iteration ---------------------------------------------------------------------------------

  def __iter__(self) -> Iterator[Batch]:
    """Yields local batches, produced ``prefetch`` ahead by a background thread."""
    if self.prefetch <= 0:
      for epoch, index in self._positions():
        batch = self.batch(epoch, index)
        self._state = {"epoch": epoch, "batch": index + 1}
        yield batch
      return
    slots: queue.Queue = queue.Queue(maxsize=self.prefetch)
    stop = threading.Event()
    done = object()

    def produce():
      try:
        for epoch, index in self._positions():
          item = (epoch, index, self.batch(epoch, index))
          while not stop.is_set():
            try:
              slots.put(item, timeout=0.1)
              break
            except queue.Full:
              continue
          if stop.is_set():
            return
        slots.put(done)
      except BaseException as error:  # surfaced in the consumer, never swallowed
        slots.put(error)

    thread = threading.Thread(target=produce, name="autodistill-data", daemon=True)
    thread.start()
    try:
      while True:
        item = slots.get()
        if item is done:
          return
        if isinstance(item, BaseException):
          raise item
        epoch, index, batch = item
        self._state = {"epoch": epoch, "batch": index + 1}
        yield batch
    finally:
      # Stop and join the producer, so no thread is left running into interpreter shutdown.
      stop.set()
      while thread.is_alive():
        try:
          slots.get_nowait()  # unblock a producer waiting on a full queue
        except queue.Empty:
          thread.join(timeout=0.05)

  def device_batches(self, mesh: Mesh, data_axis: str = "data") -> Iterator[dict[str, jax.Array]]:
    """Global batches as ``jax.Array``s sharded over ``data_axis`` of ``mesh``."""
    for local in self:
      yield {name: jax.make_array_from_process_local_data(
          sharding.batch_sharding(mesh, value.ndim, data_axis), value)
          for name, value in local.items()}

  # -- checkpointing ---------------------------------------------------------------------------

  def reset(self) -> None:
    """Back to the first batch of epoch 0 (e.g. before another evaluation pass)."""
    self._state = {"epoch": 0, "batch": 0}

  def state_dict(self) -> dict[str, Any]:
    """The position of the next batch to consume, plus what must match on resume."""
    return {**self._state, "seed": self.seed, "split": self.split,
            "global_batch_size": self.global_batch_size, "corpus": self.corpus.fingerprint,
            "documents": len(self.documents)}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Continues from ``state``; refuses a state saved for other data or another batch size."""
    for key in ("seed", "split", "global_batch_size", "corpus", "documents"):
      if key in state and state[key] != self.state_dict()[key]:
        raise ValueError(f"cannot resume: the saved data position has {key}={state[key]!r} but "
                         f"this pipeline has {self.state_dict()[key]!r}; resume with the same "
                         "data settings or start a fresh workdir.")
    self._state = {"epoch": int(state["epoch"]), "batch": int(state["batch"])}

  def describe(self) -> str:
    of = f" (a proxy set of the split's {self.proxy_of})" if self.proxy_of else ""
    return (f"{self.split}: {len(self.documents)} documents{of}, "
            f"{self.corpus.document_tokens(self.documents)} tokens, "
            f"{len(self._pairs(0))} examples/epoch of length {self.examples.max_seq_length}, "
            f"{self.batches_per_epoch()} batches of {self.global_batch_size}")


def pretraining_data(corpus: Corpus, tokenizer: Tokenizer, *, global_batch_size: int,
                     eval_batch_size: Optional[int] = None,
                     examples: ExampleConfig = ExampleConfig(), eval_fraction: float = 0.05,
                     seed: int = 0, cache_dir: Optional[str] = None,
                     model_vocab_size: Optional[int] = None,
                     **kwargs) -> tuple[PretrainingData, PretrainingData]:
  """Tokenizes (or loads from ``cache_dir``) a corpus and returns (train, eval) pipelines.

  Raises:
    ValueError: the tokenizer does not fit ``model_vocab_size``.
    CorpusTooSmallError: a split cannot fill one batch (the message gives the counts).
  """
  if model_vocab_size is not None:
    tokenizer.check_vocab_size(model_vocab_size)
  tokenized = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir)
  common = dict(examples=examples, eval_fraction=eval_fraction, seed=seed, **kwargs)
  train = PretrainingData(tokenized, tokenizer, split="train",
                          global_batch_size=global_batch_size, **common)
  evaluation = PretrainingData(tokenized, tokenizer, split="eval",
                               global_batch_size=eval_batch_size or global_batch_size, **common)
  return train, evaluation


__all__ = ["FEATURES", "PretrainingData", "pretraining_data"]
