"""BERT pre-training examples: segment pairs for NSP and masked tokens for MLM.

Follows the recipe of BERT's ``create_pretraining_data`` (Devlin et al. 2019), which MobileBERT and
AutoDistill pre-train on:

* :func:`create_pairs` packs consecutive sentences of a document into segment A and B up to a target
  length (shorter with probability ``short_seq_prob``); with probability ``random_next_prob``
  segment B comes from a random other document (NSP label 1, "not next"), and the unused sentences
  are put back. The pair is trimmed to fit ``[CLS] A [SEP] B [SEP]``. Unlike BERT, a chunk of a
  single sentence does not force a random B, so NSP labels follow ``random_next_prob`` exactly.
* :func:`mask_batch` masks ``masked_lm_prob`` of the real tokens (at most
  ``max_predictions_per_seq``, at least one), never a special token; each chosen position becomes
  ``[MASK]`` 80% of the time, stays 10% and becomes a random token 10%. With whole-word masking a
  word's pieces are masked together. Masking is applied per batch, so every epoch sees new masks
  (dynamic masking, RoBERTa-style) while staying reproducible from (seed, epoch, batch).

All outputs have fixed shapes, so a jitted step never recompiles.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from autodistill.data.tokenization import Tokenizer
from autodistill.data.tokenized import TokenizedCorpus

FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels")


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
  """How examples are built (BERT's defaults; MobileBERT pre-trains at length 128 with 20)."""

  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  random_next_prob: float = 0.5
  whole_word_masking: bool = False

  def __post_init__(self):
    if self.max_seq_length < 8:
      raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}.")
    if not 0 < self.max_predictions_per_seq <= self.max_seq_length:
      raise ValueError(f"max_predictions_per_seq must be in [1, max_seq_length], got "
                       f"{self.max_predictions_per_seq}.")
    for name in ("masked_lm_prob", "short_seq_prob", "random_next_prob"):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")


@dataclasses.dataclass(frozen=True)
class Pairs:
  """Unmasked segment pairs: ``tokens`` [n, max_seq_length] (``[PAD]``-filled), ``segment_ids``,
  ``lengths`` [n] and ``is_random_next`` [n] (the NSP label)."""

  tokens: np.ndarray
  segment_ids: np.ndarray
  lengths: np.ndarray
  is_random_next: np.ndarray

  def __len__(self) -> int:
    return len(self.lengths)

  def take(self, indices: np.ndarray) -> "Pairs":
    return Pairs(self.tokens[indices], self.segment_ids[indices], self.lengths[indices],
                 self.is_random_next[indices])


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
  """Trims the longer segment, from a random end, until both fit (BERT's truncate_seq_pair)."""
  while len(a) + len(b) > max_tokens:
    longer = a if len(a) > len(b) else b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def create_pairs(corpus: TokenizedCorpus, documents: Sequence[int], config: ExampleConfig,
                 tokenizer: Tokenizer, rng: np.random.Generator) -> Pairs:
  """Segment pairs from ``documents`` (indices into ``corpus``); random B segments are drawn from
  the same set of documents, so train and eval never mix."""
  documents = np.asarray(documents)
  max_tokens = config.max_seq_length - 3  # [CLS], [SEP], [SEP]
  doc_sentences = {int(d): [s.tolist() for s in corpus.document(int(d))] for d in documents}
  rows_a: list[list[int]] = []
  rows_b: list[list[int]] = []
  random_next: list[bool] = []
  for doc in documents:
    sentences = doc_sentences[int(doc)]
    target = max_tokens
    if rng.random() < config.short_seq_prob:
      target = int(rng.integers(2, max_tokens + 1))
    chunk: list[list[int]] = []
    length = 0
    i = 0
    while i < len(sentences):
      chunk.append(sentences[i])
      length += len(sentences[i])
      if i == len(sentences) - 1 or length >= target:
        is_random = len(documents) > 1 and rng.random() < config.random_next_prob
        split_single = False
        if len(chunk) == 1 and not is_random:
          # BERT forces a random B here, which skews NSP labels towards "random" (56% on BBC
          # News). We keep the coin's decision: take the next sentence as B, or, at the end of
          # the document, split this sentence in two (B still truly follows A).
          if i + 1 < len(sentences):
            i += 1
            chunk.append(sentences[i])
          elif len(chunk[0]) >= 2:
            split_single = True
          else:
            is_random = len(documents) > 1
        if split_single:
          cut = int(rng.integers(1, len(chunk[0])))
          a_end, chunk = 1, [chunk[0][:cut], chunk[0][cut:]]
        else:
          a_end = 1 if len(chunk) < 2 else int(rng.integers(1, len(chunk)))
        tokens_a = [t for s in chunk[:a_end] for t in s]
        tokens_b: list[int] = []
        if is_random:
          other = int(doc)
          while other == int(doc):
            other = int(documents[rng.integers(len(documents))])
          other_sentences = doc_sentences[other]
          start = int(rng.integers(len(other_sentences)))
          for sentence in other_sentences[start:]:
            tokens_b.extend(sentence)
            if len(tokens_b) >= target - len(tokens_a):
              break
          i -= len(chunk) - a_end  # put the unused sentences back
        else:
          tokens_b = [t for s in chunk[a_end:] for t in s]
        _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
        if tokens_a and tokens_b:
          rows_a.append(tokens_a)
          rows_b.append(tokens_b)
          random_next.append(is_random)
        chunk, length = [], 0
      i += 1

  n = len(rows_a)
  tokens = np.full((n, config.max_seq_length), tokenizer.pad_id, np.int32)
  segment_ids = np.zeros((n, config.max_seq_length), np.int32)
  lengths = np.zeros(n, np.int32)
  for row, (a, b) in enumerate(zip(rows_a, rows_b)):
    sequence = [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
    tokens[row, :len(sequence)] = sequence
    segment_ids[row, len(a) + 2:len(sequence)] = tokenizer.second_segment_id
    lengths[row] = len(sequence)
  return Pairs(tokens, segment_ids, lengths, np.asarray(random_next, bool))


def mask_batch(pairs: Pairs, config: ExampleConfig, tokenizer: Tokenizer,
               rngs: Sequence[np.random.Generator]) -> dict[str, np.ndarray]:
  """Masks a batch of pairs for MLM; returns the arrays of :data:`FEATURES`.

  ``rngs`` holds one generator per row, so a row's masks depend only on its own seed, not on
  which batch, process or host it lands in.
  """
  if len(rngs) != len(pairs):
    raise ValueError(f"mask_batch needs one generator per row: {len(rngs)} for {len(pairs)} rows.")
  n, seq = pairs.tokens.shape
  max_pred = config.max_predictions_per_seq
  input_ids = pairs.tokens.copy()
  positions = np.zeros((n, max_pred), np.int32)
  labels = np.zeros((n, max_pred), np.int32)
  weights = np.zeros((n, max_pred), np.float32)
  input_mask = (np.arange(seq)[None, :] < pairs.lengths[:, None]).astype(np.int32)
  maskable = input_mask.astype(bool) & ~np.isin(pairs.tokens, tokenizer.special_ids)
  replaceable = np.setdiff1d(np.arange(tokenizer.vocab_size), tokenizer.special_ids)

  for row, rng in enumerate(rngs):
    candidates = np.flatnonzero(maskable[row])
    if candidates.size == 0:
      continue
    budget = min(max_pred, max(1, int(round(candidates.size * config.masked_lm_prob))))
    if config.whole_word_masking:
      # Group each ## piece with the word it continues, then take whole words in random order
      # while they fit the budget (BERT skips a word that would overflow it).
      starts = ~tokenizer.is_continuation[pairs.tokens[row, candidates]]
      starts[1:] |= np.diff(candidates) > 1  # a ## piece right after [SEP] starts its own group
      starts[0] = True
      words = np.split(candidates, np.flatnonzero(starts)[1:])
      chosen: list[int] = []
      for w in rng.permutation(len(words)):
        if len(chosen) + len(words[w]) <= budget:
          chosen.extend(words[w].tolist())
        if len(chosen) == budget:
          break
      chosen_positions = np.sort(np.asarray(chosen, np.int64))
    else:
      chosen_positions = np.sort(rng.choice(candidates, size=budget, replace=False))
    k = chosen_positions.size
    positions[row, :k] = chosen_positions
    labels[row, :k] = pairs.tokens[row, chosen_positions]
    weights[row, :k] = 1.0
    action = rng.random(k)
    new_ids = labels[row, :k].copy()
    new_ids[action < 0.8] = tokenizer.mask_id
    randomised = action >= 0.9
    new_ids[randomised] = rng.choice(replaceable, size=int(randomised.sum()))
    input_ids[row, chosen_positions] = new_ids

  return {
      "input_ids": input_ids,
      "input_mask": input_mask,
      "segment_ids": pairs.segment_ids,
      "masked_lm_positions": positions,
      "masked_lm_ids": labels,
      "masked_lm_weights": weights,
      "next_sentence_labels": pairs.is_random_next.astype(np.int32),
  }
