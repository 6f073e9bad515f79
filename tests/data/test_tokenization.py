"""WordPiece loading, batch encoding, sentence splitting, the tokenized-corpus cache and splits."""

import numpy as np
import pytest

from autodistill.data import (CorpusTooSmallError, TextFiles, WordPiece, split_documents,
                              split_sentences, tokenize_corpus)

SENTENCES = ["The striker's late goal sealed a 2-1 win at Old Trafford.",
             "Naïve investors piled into tech shares, unbelievably.", "Héllo WORLD!"]


def test_vocab_txt_and_tokenizer_json_agree_on_the_teacher_vocab(minilm_dir):
  from_json = WordPiece.from_path(minilm_dir / "tokenizer.json")
  from_vocab = WordPiece.from_path(minilm_dir / "vocab.txt")
  assert from_json.vocab_size == from_vocab.vocab_size == 30522
  for a, b in zip(from_json.encode_batch(SENTENCES), from_vocab.encode_batch(SENTENCES)):
    np.testing.assert_array_equal(a, b)
  assert (from_json.cls_id, from_json.sep_id, from_json.mask_id, from_json.pad_id) == \
      (101, 102, 103, 0)


def test_encoding_matches_transformers(minilm_dir):
  transformers = pytest.importorskip("transformers")
  reference = transformers.BertTokenizer(str(minilm_dir / "vocab.txt"), do_lower_case=True)
  ours = WordPiece.from_path(minilm_dir / "vocab.txt")
  for sentence, ids in zip(SENTENCES, ours.encode_batch(SENTENCES)):
    assert ids.tolist() == reference.encode(sentence, add_special_tokens=False)


def test_bad_vocabularies_and_vocab_size_mismatch(tmp_path, synthetic_tokenizer):
  (tmp_path / "vocab.txt").write_text("hello\nworld\n")
  with pytest.raises(ValueError, match=r"lacks \['\[PAD\]', '\[UNK\]'"):
    WordPiece.from_path(tmp_path / "vocab.txt")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    WordPiece.from_path(tmp_path / "nope.txt")
  with pytest.raises(ValueError, match=f"has {synthetic_tokenizer.vocab_size} tokens but the "
                     "model's vocab_size is 30522"):
    synthetic_tokenizer.check_vocab_size(30522)


def test_special_ids_and_continuations(synthetic_tokenizer):
  tok = synthetic_tokenizer
  assert set(tok.special_ids.tolist()) == set(range(10))  # [PAD], [unused0-4], [UNK], [CLS], ..
  ids = tok.encode_batch(["D3w5s d3w6."])[0]
  assert tok.is_continuation[ids].tolist() == [False, True, False, False]


@pytest.mark.parametrize("paragraph, expected", [
    ("One. Two? Three!", ["One.", "Two?", "Three!"]),
    ("Mr. Brown met Dr. Green in the U.S. Army base. They left.",
     ["Mr. Brown met Dr. Green in the U.S. Army base.", "They left."]),
    ('He said "Stop." Then he went.', ['He said "Stop."', "Then he went."]),
    ("Shares rose 3.5% on Monday. Analysts cheered.",
     ["Shares rose 3.5% on Monday.", "Analysts cheered."]),
    ("J. K. Rowling wrote it. no split here.", ["J. K. Rowling wrote it. no split here."]),
])
def test_split_sentences(paragraph, expected):
  assert split_sentences(paragraph) == expected


class _CountingCorpus:
  """Wraps a corpus and counts how often it is read (to prove the cache is used)."""

  def __init__(self, corpus):
    self.corpus, self.reads = corpus, 0
    self.stats = corpus.stats

  def fingerprint(self):
    return self.corpus.fingerprint()

  def __iter__(self):
    self.reads += 1
    return iter(self.corpus)


def test_tokenized_corpus_is_cached_and_reused(tmp_path, synthetic_corpus, synthetic_tokenizer):
  counting = _CountingCorpus(synthetic_corpus)
  first = tokenize_corpus(counting, synthetic_tokenizer, cache_dir=tmp_path)
  second = tokenize_corpus(counting, synthetic_tokenizer, cache_dir=tmp_path)
  assert counting.reads == 1 and "cached" in second.stats
  np.testing.assert_array_equal(first.tokens, second.tokens)
  np.testing.assert_array_equal(first.document_hashes, second.document_hashes)
  assert first.num_documents == 30
  assert first.document(0)[0].tolist() == \
      synthetic_tokenizer.encode_batch([_first_sentence(synthetic_corpus)])[0].tolist()
  assert not list(tmp_path.glob("*.tmp"))


def _first_sentence(corpus):
  return split_sentences(next(iter(corpus)).paragraphs[0])[0]


def test_empty_corpus_is_a_clear_error(tmp_path, synthetic_tokenizer):
  (tmp_path / "a.txt").write_text("\n\n")
  (tmp_path / "b.txt").write_text("")
  with pytest.raises(CorpusTooSmallError, match="0 documents from 2 files; skipped 2 empty"):
    tokenize_corpus(TextFiles(tmp_path), synthetic_tokenizer)


def test_splits_are_disjoint_deterministic_and_by_content(synthetic_corpus, synthetic_tokenizer):
  corpus = tokenize_corpus(synthetic_corpus, synthetic_tokenizer)
  train, held_out = split_documents(corpus, 0.2, seed=0)
  assert set(train).isdisjoint(held_out)
  assert sorted([*train, *held_out]) == list(range(corpus.num_documents))
  assert 1 <= len(held_out) <= 14
  again = split_documents(corpus, 0.2, seed=0)
  np.testing.assert_array_equal(held_out, again[1])
  assert not np.array_equal(held_out, split_documents(corpus, 0.2, seed=1)[1])
  assert len(split_documents(corpus, 0.0)[1]) == 0
  assert len(split_documents(corpus, 1e-9)[1]) >= 1  # a non-empty held-out set when asked
  with pytest.raises(ValueError, match="eval_fraction"):
    split_documents(corpus, 1.0)
