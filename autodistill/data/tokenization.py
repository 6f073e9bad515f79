"""Tokenizers of BERT (WordPiece), RoBERTa (byte-level BPE) and XLM-R (SentencePiece) teachers,
through Hugging Face ``tokenizers``, and a BERT-style sentence splitter.

Texts are always encoded in batches (the Rust tokenizer parallelises them); nothing here tokenizes
one word at a time in Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
from typing import Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers

from autodistill import files

# The special tokens of each family, in the order pad, unk, cls (sequence start), sep (segment
# end), mask. BERT writes them in brackets; RoBERTa and XLM-R (fairseq) in angle brackets.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FAIRSEQ_SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")
# Word-start markers of byte-level BPE (RoBERTa: "Ġ" encodes a leading space) and SentencePiece
# (XLM-R: "▁").
_WORD_START_MARKERS = ("\u0120", "\u2581")


class Tokenizer:
  """A teacher's vocabulary and its fast tokenizer: BERT WordPiece, or RoBERTa / XLM-R.

  BERT vocabularies (``[CLS]`` ... ``[MASK]``) come from ``vocab.txt`` or ``tokenizer.json``;
  RoBERTa's byte-level BPE and XLM-R's SentencePiece vocabularies (``<s>`` ... ``<mask>``) from
  their ``tokenizer.json``. A sequence pair is always encoded ``cls A sep B sep`` (RoBERTa's own
  pair format has two ``</s>`` between the segments; with one, every family shares the data
  pipeline: our reading, as good for distillation since teacher and student see the same input).

  Attributes:
    vocab_size: number of entries in the vocabulary.
    pad_id, unk_id, cls_id, sep_id, mask_id: ids of the special tokens.
    family: ``"bert"`` (bracketed special tokens) or ``"fairseq"`` (RoBERTa / XLM-R).
    second_segment_id: the token type of a pair's second segment: 1 for BERT, 0 for RoBERTa and
      XLM-R, whose models have a single token type (``type_vocab_size=1``).
    special_ids: every special token id (``[PAD]`` ... plus ``[unusedN]``-style bracketed tokens,
      and every token the tokenizer declares special); these are never masked and never drawn as
      random replacements.
    is_continuation: bool [vocab_size], True for pieces that continue a word (whole-word
      masking): WordPiece's ``##`` pieces; for BPE and SentencePiece, pieces without the
      word-start marker (``Ġ``, ``▁``).
  """

  def __init__(self, tokenizer: tokenizers.Tokenizer, source: str):
    self._tokenizer = tokenizer
    self._tokenizer.no_padding()
    self._tokenizer.no_truncation()
    self.source = source
    vocab = tokenizer.get_vocab()
    self.vocab_size = len(vocab)
    if sorted(vocab.values()) != list(range(self.vocab_size)):
      raise ValueError(f"{source}: vocabulary ids are not 0..{self.vocab_size - 1}.")
    families = {"bert": SPECIAL_TOKENS, "fairseq": FAIRSEQ_SPECIAL_TOKENS}
    found = [name for name, tokens in families.items() if all(t in vocab for t in tokens)]
    if not found:
      missing = [t for t in SPECIAL_TOKENS if t not in vocab]
      raise ValueError(f"{source} is not a BERT, RoBERTa or XLM-R vocabulary: it lacks {missing} "
                       f"(BERT) and {[t for t in FAIRSEQ_SPECIAL_TOKENS if t not in vocab]} "
                       "(RoBERTa / XLM-R).")
    self.family = found[0]
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
        vocab[t] for t in families[self.family])
    self.second_segment_id = 1 if self.family == "bert" else 0
    by_id = sorted(vocab, key=vocab.get)
    declared = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    bracketed = {i for t, i in vocab.items() if t.startswith("[") and t.endswith("]")}
    self.special_ids = np.array(sorted(
        declared | {vocab[t] for t in families[self.family]}
        | (bracketed if self.family == "bert" else set())), np.int32)
    self.is_continuation = _continuations(tokenizer, by_id, self.special_ids)
    self._fingerprint = hashlib.sha256(
        (tokenizer.to_str() if hasattr(tokenizer, "to_str") else "\n".join(by_id)).encode()
    ).hexdigest()[:16]

  @classmethod
  def from_path(cls, path: str | os.PathLike, lowercase: bool | None = None) -> "Tokenizer":
    """Loads ``tokenizer.json`` or ``vocab.txt``, or a directory holding one of them.

    Args:
      path: a file or a Hugging Face model directory (``tokenizer.json`` is preferred).
      lowercase: for ``vocab.txt``, whether to lowercase and strip accents (uncased BERT). By
        default read from a neighbouring ``tokenizer_config.json`` (``do_lower_case``), else True.
    """
    path = pathlib.Path(path)
    if path.is_dir():
      for name in ("tokenizer.json", "vocab.txt"):
        if (path / name).exists():
          return cls.from_path(path / name, lowercase)
      raise FileNotFoundError(f"{path} holds neither tokenizer.json nor vocab.txt.")
    if not path.exists():
      raise FileNotFoundError(f"tokenizer file {path} does not exist; pass a BERT vocab.txt, a "
                              "tokenizer.json, or the teacher's checkpoint directory.")
    if path.suffix == ".json":
      return cls(tokenizers.Tokenizer.from_file(str(path)), str(path))
    if lowercase is None:
      config = path.parent / "tokenizer_config.json"
      lowercase = files.read_json(config, fix="repair or delete it (the default lower-cases)").get(
          "do_lower_case", True) if config.exists() else True
    vocab = {}
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
      token = line.rstrip("\n")
      if token in vocab:
        raise ValueError(f"{path}: token {token!r} appears twice (lines {vocab[token] + 1} and "
                         f"{index + 1}).")
      vocab[token] = index
    tokenizer = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return cls(tokenizer, str(path))

  def fingerprint(self) -> str:
    """Changes whenever the tokenizer would produce different ids."""
    return self._fingerprint

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each text, without special tokens (one batched, parallel call)."""
    encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

  def encode_batch_with_offsets(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Token ids of each text (no special tokens) and each token's span in the original text.

    ``tokenizers`` tracks the alignment through the normalizer, so the spans index the text as
    given (before lowercasing, accent stripping or control-character removal): for a token,
    ``text[start:end]`` is the original characters it was made from, e.g. ``"Café"`` for
    ``cafe`` and ``"ème"`` for the ``##eme`` of "crème". Offsets count Python ``str`` characters
    (code points); characters the normalizer drops at a token's edge (a decomposed accent's
    combining mark after a word's last letter, control characters) fall outside every span.

    Returns:
      One ``(ids, offsets)`` pair per text: ``ids`` int32 [n] and ``offsets`` int32 [n, 2] of
      ``(start, end)`` character offsets, non-decreasing along the tokens.
    """
    encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [(np.asarray(e.ids, dtype=np.int32),
             np.asarray(e.offsets, dtype=np.int32).reshape(len(e.ids), 2)) for e in encodings]

  def decode(self, ids: Sequence[int]) -> str:
    return self._tokenizer.decode(list(map(int, ids)), skip_special_tokens=False)

  def check_vocab_size(self, model_vocab_size: int) -> None:
    """Raises a clear error when the model's embedding table does not fit this vocabulary."""
    if model_vocab_size != self.vocab_size:
      raise ValueError(
          f"the tokenizer ({self.source}) has {self.vocab_size} tokens but the model's "
          f"vocab_size is {model_vocab_size}; use the teacher's tokenizer, or build the student "
          f"with vocab_size={self.vocab_size}.")


def _continuations(tokenizer: tokenizers.Tokenizer, by_id: Sequence[str],
                   special_ids: np.ndarray) -> np.ndarray:
  """bool [vocab]: which pieces continue the word before them (see :class:`Tokenizer`)."""
  model = json.loads(tokenizer.to_str())["model"] if hasattr(tokenizer, "to_str") else {}
  if model.get("type", "WordPiece") == "WordPiece":
    prefix = model.get("continuing_subword_prefix", "##")
    return np.array([t.startswith(prefix) for t in by_id])
  # BPE or Unigram: the vocabulary marks word starts instead; take the marker it uses most.
  counts = [sum(t.startswith(m) for t in by_id) for m in _WORD_START_MARKERS]
  if max(counts) == 0:
    return np.zeros(len(by_id), bool)  # no markers: every piece is a word of its own
  marker = _WORD_START_MARKERS[int(np.argmax(counts))]
  continuation = np.array([not t.startswith(marker) for t in by_id])
  continuation[special_ids] = False
  return continuation


# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets), then whitespace and
# an upper-case letter, digit or opening quote. Heuristic, deterministic and dependency-free; BERT's
# own data was pre-split by an external tool.
_SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e u.s u.k u.n no inc ltd co corp gen gov sen rep "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split())
SPLITTER_VERSION = "1"  # bump when the splitter changes: it is part of the cache key


def split_sentences(paragraph: str) -> list[str]:
  """Splits a paragraph into sentences, keeping common abbreviations ("Mr.", "U.S.") intact."""
  pieces, start = [], 0
  for match in _SENTENCE_BOUNDARY.finditer(paragraph):
    candidate = paragraph[start:match.start()].rstrip()
    last_word = candidate.rsplit(None, 1)[-1].rstrip(".!?\"'").lower() if candidate else ""
    if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
      continue  # "Mr. Smith", "J. Smith": not a boundary
    pieces.append(paragraph[start:match.end()].strip())
    start = match.end()
  pieces.append(paragraph[start:].strip())
  return [p for p in pieces if p]
