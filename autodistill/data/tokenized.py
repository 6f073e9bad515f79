"""A corpus tokenized once per (corpus, vocabulary) and cached on disk, and its document splits.

Tokenizing BBC News takes seconds, Wikipedia hours; either way it happens once. The cache file is
keyed by the corpus fingerprint, the tokenizer fingerprint and the sentence-splitter version, is
written to a temporary name and renamed (a killed run never leaves a corrupt cache), and is shared by
every trial and run that uses the same text and vocabulary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
import zipfile
from typing import Iterable, Optional

import numpy as np

from autodistill import files
from autodistill.data.corpora import Corpus, CorpusStats
from autodistill.data.tokenization import SPLITTER_VERSION, Tokenizer, split_sentences
from autodistill.errors import UserError

_ENCODE_CHUNK = 8192  # sentences per encode_batch call: large enough to keep the tokenizer busy


class CorpusTooSmallError(UserError, ValueError):
  """The corpus (or one of its splits) cannot fill what was asked of it."""


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
  """Token ids of every sentence of every document, in flat arrays.

  Attributes:
    tokens: int32 [num_tokens], all sentences concatenated.
    sentence_starts: int64 [num_sentences + 1], offsets of sentences into ``tokens``.
    document_starts: int64 [num_documents + 1], offsets of documents into the sentences.
    document_hashes: uint64 [num_documents], hash of each document's text (assigns splits, so
      duplicated documents always land in the same split).
    fingerprint: the cache key this corpus was built under.
    stats: what reading the corpus saw (documents, skipped, replaced bytes, ...).
  """

  tokens: np.ndarray
  sentence_starts: np.ndarray
  document_starts: np.ndarray
  document_hashes: np.ndarray
  fingerprint: str
  stats: dict

  @property
  def num_documents(self) -> int:
    return len(self.document_starts) - 1

  @property
  def num_tokens(self) -> int:
    return int(self.tokens.size)

  def document(self, index: int) -> list[np.ndarray]:
    """The sentences (token-id arrays) of one document."""
    first, last = self.document_starts[index], self.document_starts[index + 1]
    starts = self.sentence_starts[first:last + 1]
    return [self.tokens[a:b] for a, b in zip(starts[:-1], starts[1:])]

  def document_tokens(self, indices: Iterable[int]) -> int:
    """Total tokens in the given documents."""
    indices = np.asarray(list(indices), dtype=np.int64)
    first = self.sentence_starts[self.document_starts[indices]]
    last = self.sentence_starts[self.document_starts[indices + 1]]
    return int(np.sum(last - first))


def document_hash(paragraphs: Iterable[str]) -> int:
  """The 64-bit hash of a document's text that decides its train/eval split."""
  digest = hashlib.blake2b("\n".join(paragraphs).encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little")


def tokenize_corpus(corpus: Corpus, tokenizer: Tokenizer,
                    cache_dir: Optional[str | os.PathLike] = None,
                    progress: bool = False) -> TokenizedCorpus:
  """Tokenizes a corpus sentence by sentence, or loads the cached result.

  Args:
    corpus: any :class:`~autodistill.data.corpora.Corpus`.
    tokenizer: the tokenizer (normally the teacher's).
    cache_dir: where cached corpora live; None disables the cache.
    progress: print a line per 500 documents while tokenizing.

  Raises:
    CorpusTooSmallError: the corpus yielded no non-empty document.
  """
  key = hashlib.sha256(f"{corpus.fingerprint()}|{tokenizer.fingerprint()}|{SPLITTER_VERSION}"
                       .encode()).hexdigest()[:24]
  path = pathlib.Path(cache_dir) / f"tokenized-{key}.npz" if cache_dir is not None else None
  if path is not None and path.exists():
    try:
      return _load(path, key)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
      # A cache, derived from the corpus alone: safe to rebuild (the write is atomic).
      print(f"  the tokenized-corpus cache {path} cannot be read ({type(error).__name__}); "
            "tokenizing the corpus again", flush=True)

  start = time.perf_counter()
  sentences: list[str] = []
  sentence_counts: list[int] = []
  hashes: list[int] = []
  for document in corpus:
    doc_sentences = [s for p in document.paragraphs for s in split_sentences(p)]
    if not doc_sentences:
      continue
    sentences.extend(doc_sentences)
    sentence_counts.append(len(doc_sentences))
    hashes.append(document_hash(document.paragraphs))
    if progress and len(hashes) % 500 == 0:
      print(f"  read {len(hashes)} documents ({len(sentences)} sentences)", flush=True)
  stats = dataclasses.asdict(corpus.stats) if isinstance(corpus.stats, CorpusStats) else {}
  if not hashes:
    raise CorpusTooSmallError(
        f"the corpus yielded no text ({corpus.stats.describe()}); check the paths or patterns.")

  lengths = np.zeros(len(sentences), np.int64)
  pieces = []
  for offset in range(0, len(sentences), _ENCODE_CHUNK):
    encoded = tokenizer.encode_batch(sentences[offset:offset + _ENCODE_CHUNK])
    lengths[offset:offset + len(encoded)] = [len(e) for e in encoded]
    pieces.extend(encoded)
  tokens = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
  sentence_starts = np.concatenate([[0], np.cumsum(lengths)])
  document_starts = np.concatenate([[0], np.cumsum(sentence_counts)])
  stats.update(sentences=len(sentences), tokens=int(tokens.size),
               seconds=round(time.perf_counter() - start, 3))
  result = TokenizedCorpus(tokens=tokens, sentence_starts=sentence_starts,
                           document_starts=document_starts,
                           document_hashes=np.asarray(hashes, np.uint64), fingerprint=key,
                           stats=stats)
  if path is not None:
    _save(path, result)
  return result


def _save(path: pathlib.Path, corpus: TokenizedCorpus) -> None:
  def write(tmp: pathlib.Path) -> None:
    with open(tmp, "wb") as f:
      np.savez(f, tokens=corpus.tokens, sentence_starts=corpus.sentence_starts,
               document_starts=corpus.document_starts, document_hashes=corpus.document_hashes,
               stats=np.array(json.dumps(corpus.stats)))

  files.atomic_write(path, write)


def _load(path: pathlib.Path, key: str) -> TokenizedCorpus:
  with np.load(path) as data:
    return TokenizedCorpus(tokens=data["tokens"], sentence_starts=data["sentence_starts"],
                           document_starts=data["document_starts"],
                           document_hashes=data["document_hashes"], fingerprint=key,
                           stats={**json.loads(str(data["stats"])), "cached": str(path)})


def split_documents(corpus: TokenizedCorpus, eval_fraction: float,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic train/eval split by document (the paper's held-out pre-training accuracy).

  A document goes to eval when a hash of (its text, seed) falls below ``eval_fraction``, so the
  split does not depend on file order, machine or process, and duplicated documents share a split.
  A non-empty eval split is guaranteed whenever ``eval_fraction`` > 0 and there are two documents.

  Returns:
    (train document indices, eval document indices), disjoint, sorted.
  """
  is_eval = held_out_mask(corpus.document_hashes, eval_fraction, seed)
  return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)


def held_out_mask(document_hashes: np.ndarray, eval_fraction: float, seed: int = 0) -> np.ndarray:
  """True for the documents :func:`split_documents` holds out, given their
  :func:`document_hash` values (e.g. to keep downstream-task splits away from them)."""
  if not 0.0 <= eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}.")
  document_hashes = np.asarray(document_hashes, np.uint64)
  mixed = document_hashes ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
  # splitmix64 finaliser: spreads the seed through every bit before thresholding.
  mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  mixed = mixed ^ (mixed >> np.uint64(31))
  unit = mixed.astype(np.float64) / 2.0**64
  is_eval = unit < eval_fraction
  # Forced members move together with their duplicates (equal hashes give equal values).
  if eval_fraction > 0 and not is_eval.any() and len(document_hashes) > 1:
    is_eval = unit <= unit.min()
  if eval_fraction > 0 and is_eval.all():
    is_eval = unit < unit.max()
  return is_eval
