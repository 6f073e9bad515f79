"""Tokenizer loading (WordPiece, byte-level BPE, SentencePiece), batch encoding, sentence
splitting, the tokenized-corpus cache and splits."""

import numpy as np
import pytest

from autodistill.data import (CorpusTooSmallError, TextFiles, Tokenizer, split_documents,
                              split_sentences, tokenize_corpus)

SENTENCES = ["The striker's late goal sealed a 2-1 win at Old Trafford.",
             "Naïve investors piled into tech shares, unbelievably.", "Héllo WORLD!"]


def test_vocab_txt_and_tokenizer_json_agree_on_the_teacher_vocab(minilm_dir):
  from_json = Tokenizer.from_path(minilm_dir / "tokenizer.json")
  from_vocab = Tokenizer.from_path(minilm_dir / "vocab.txt")
  assert from_json.vocab_size == from_vocab.vocab_size == 30522
  for a, b in zip(from_json.encode_batch(SENTENCES), from_vocab.encode_batch(SENTENCES)):
    np.testing.assert_array_equal(a, b)
  assert (from_json.cls_id, from_json.sep_id, from_json.mask_id, from_json.pad_id) == \
      (101, 102, 103, 0)


def test_encoding_matches_transformers(minilm_dir):
  transformers = pytest.importorskip("transformers")
  reference = transformers.BertTokenizer(str(minilm_dir / "vocab.txt"), do_lower_case=True)
  ours = Tokenizer.from_path(minilm_dir / "vocab.txt")
  for sentence, ids in zip(SENTENCES, ours.encode_batch(SENTENCES)):
    assert ids.tolist() == reference.encode(sentence, add_special_tokens=False)


def test_bad_vocabularies_and_vocab_size_mismatch(tmp_path, synthetic_tokenizer):
  (tmp_path / "vocab.txt").write_text("hello\nworld\n")
  with pytest.raises(ValueError, match=r"lacks \['\[PAD\]', '\[UNK\]'"):
    Tokenizer.from_path(tmp_path / "vocab.txt")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    Tokenizer.from_path(tmp_path / "nope.txt")
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


@pytest.mark.parametrize("kind", ["roberta", "xlm-roberta"])
def test_roberta_and_xlmr_tokenizers(tmp_path, synthetic_corpus_dir, kind):
  """Byte-level BPE (RoBERTa) and SentencePiece-style Unigram (XLM-R) tokenizers, trained offline
  with ``tokenizers``: their special tokens, one token type, and whole-word pieces."""
  transformers = pytest.importorskip("transformers")
  from synthetic import train_fairseq_tokenizer
  texts = [p.read_text() for p in sorted(synthetic_corpus_dir.glob("*.txt"))]
  path = train_fairseq_tokenizer(texts, tmp_path / "tokenizer.json", kind)
  ours = Tokenizer.from_path(tmp_path)
  reference = (transformers.RobertaTokenizer if kind == "roberta"
               else transformers.XLMRobertaTokenizer)(tokenizer_file=str(path))
  assert ours.family == "fairseq" and ours.second_segment_id == 0
  assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (
      reference.pad_token_id, reference.unk_token_id, reference.cls_token_id,
      reference.sep_token_id, reference.mask_token_id)
  assert set(ours.special_ids.tolist()) == set(reference.all_special_ids)
  text = "D3w5s d3w6. D4w1 d4w2s d4w2."
  ids = ours.encode_batch([text])[0]
  assert ids.tolist() == reference.encode(text, add_special_tokens=False)
  # A piece continues a word exactly when it lacks the word-start marker (its first piece is
  # the text's first word, which has none under byte-level BPE without a prefix space).
  marker = "Ġ" if kind == "roberta" else "▁"
  pieces = reference.convert_ids_to_tokens(ids.tolist())
  assert ours.is_continuation[ids].tolist() == [not p.startswith(marker) for p in pieces]
  assert not ours.is_continuation[ours.special_ids].any()
  # transformers gives RoBERTa pairs no second token type either.
  assert "token_type_ids" not in reference(text, "D5w1.") or \
      set(reference(text, "D5w1.")["token_type_ids"]) == {0}


def test_a_vocabulary_of_neither_family_is_refused(tmp_path):
  from tokenizers import Tokenizer as RustTokenizer, models
  RustTokenizer(models.WordLevel({"<s>": 0, "[PAD]": 1, "x": 2}, unk_token="x")).save(
      str(tmp_path / "tokenizer.json"))
  with pytest.raises(ValueError, match=r"not a BERT, RoBERTa or XLM-R vocabulary.*'<pad>'"):
    Tokenizer.from_path(tmp_path)


def test_pairs_of_a_roberta_tokenizer_have_one_token_type(tmp_path, synthetic_corpus_dir):
  from autodistill.data import ExampleConfig
  from autodistill.data.examples import create_pairs
  from synthetic import train_fairseq_tokenizer
  texts = [p.read_text() for p in sorted(synthetic_corpus_dir.glob("*.txt"))]
  tokenizer = Tokenizer.from_path(train_fairseq_tokenizer(texts, tmp_path / "tokenizer.json"))
  corpus = tokenize_corpus(TextFiles(synthetic_corpus_dir), tokenizer)
  pairs = create_pairs(corpus, np.arange(corpus.num_documents), ExampleConfig(max_seq_length=32),
                       tokenizer, np.random.default_rng(0))
  assert len(pairs) > 10 and not pairs.segment_ids.any()
  assert (pairs.tokens[:, 0] == tokenizer.cls_id).all()  # <s> ... </s> ... </s>
  assert ((pairs.tokens == tokenizer.sep_id).sum(axis=1) == 2).all()
