"""Segment pairs and MLM masking: BERT's statistics, special tokens, shapes, provenance."""

import numpy as np
import pytest

from autodistill.data import ExampleConfig, create_pairs, mask_batch, split_documents

from synthetic import doc_of_token  # tests/synthetic.py


@pytest.fixture()
def tokenized(synthetic_tokenized):
  return synthetic_tokenized  # tokenized once per session (tests/conftest.py)


def _pairs(tokenized, tokenizer, config=ExampleConfig(max_seq_length=32, max_predictions_per_seq=8),
           seed=0, documents=None):
  documents = np.arange(tokenized.num_documents) if documents is None else documents
  return create_pairs(tokenized, documents, config, tokenizer, np.random.default_rng(seed))


def _mask(pairs, config, tokenizer, seed=0):
  return mask_batch(pairs, config, tokenizer,
                    [np.random.default_rng([seed, i]) for i in range(len(pairs))])


def test_pair_layout_segments_and_padding(tokenized, synthetic_tokenizer):
  tok = synthetic_tokenizer
  pairs = _pairs(tokenized, tok)
  assert len(pairs) > 100
  for tokens, segments, length in zip(pairs.tokens, pairs.segment_ids, pairs.lengths):
    assert tokens[0] == tok.cls_id and tokens[length - 1] == tok.sep_id
    seps = np.flatnonzero(tokens == tok.sep_id)
    assert len(seps) == 2 and seps[1] == length - 1
    assert np.all(segments[:seps[0] + 1] == 0) and np.all(segments[seps[0] + 1:length] == 1)
    assert np.all(tokens[length:] == tok.pad_id) and np.all(segments[length:] == 0)
    assert seps[0] >= 2 and seps[1] - seps[0] >= 2  # both segments non-empty


def test_next_segments_come_from_the_right_document(tokenized, synthetic_tokenizer):
  pairs = _pairs(tokenized, synthetic_tokenizer)
  checked = 0
  for tokens, length, is_random in zip(pairs.tokens, pairs.lengths, pairs.is_random_next):
    sep = int(np.flatnonzero(tokens == synthetic_tokenizer.sep_id)[0])
    docs_a = {doc_of_token(synthetic_tokenizer, t) for t in tokens[1:sep]} - {-1}
    docs_b = {doc_of_token(synthetic_tokenizer, t) for t in tokens[sep + 1:length - 1]} - {-1}
    assert len(docs_a) <= 1 and len(docs_b) <= 1
    if docs_a and docs_b:  # (a segment cut down to "." or "##s" names no document)
      checked += 1
      assert (docs_a != docs_b) == bool(is_random)
  assert checked > 0.9 * len(pairs)


def test_nsp_labels_are_balanced(tokenized, synthetic_tokenizer):
  labels = np.concatenate([_pairs(tokenized, synthetic_tokenizer, seed=s).is_random_next
                           for s in range(10)])
  assert labels.size > 1500
  assert abs(labels.mean() - 0.5) < 0.04


def test_short_sequences_appear_with_their_probability(tokenized, synthetic_tokenizer):
  config = ExampleConfig(max_seq_length=64, short_seq_prob=0.0)
  never = _pairs(tokenized, synthetic_tokenizer, config).lengths
  often = _pairs(tokenized, synthetic_tokenizer, config.__class__(max_seq_length=64,
                                                                   short_seq_prob=1.0)).lengths
  assert often.mean() < 0.8 * never.mean()


def test_masking_statistics_follow_bert(tokenized, synthetic_tokenizer):
  tok = synthetic_tokenizer
  config = ExampleConfig(max_seq_length=64, max_predictions_per_seq=20)
  pairs = _pairs(tokenized, tok, config)
  batch = _mask(pairs, config, tok)
  weights = batch["masked_lm_weights"].astype(bool)
  real = (batch["input_mask"].sum(1) - 3)  # minus [CLS] and two [SEP]
  assert abs(weights.sum() / real.sum() - 0.15) < 0.01
  positions, labels = batch["masked_lm_positions"], batch["masked_lm_ids"]
  rows = np.repeat(np.arange(len(pairs)), weights.sum(1))
  chosen_pos, chosen_label = positions[weights], labels[weights]
  # Labels are the original tokens; no special token and no padding is ever a target.
  np.testing.assert_array_equal(pairs.tokens[rows, chosen_pos], chosen_label)
  assert not np.isin(chosen_label, tok.special_ids).any()
  assert np.all(chosen_pos < pairs.lengths[rows]) and np.all(chosen_pos > 0)
  # 80% [MASK], 10% unchanged, 10% random.
  new = batch["input_ids"][rows, chosen_pos]
  masked, kept = new == tok.mask_id, new == chosen_label
  assert abs(masked.mean() - 0.8) < 0.02
  assert abs((kept & ~masked).mean() - 0.1) < 0.02  # a random token can equal the original
  assert not np.isin(new[~masked], tok.special_ids).any()
  # Unchosen positions are untouched, padding stays padding, shapes are fixed.
  untouched = np.ones_like(pairs.tokens, bool)
  untouched[rows, chosen_pos] = False
  np.testing.assert_array_equal(batch["input_ids"][untouched], pairs.tokens[untouched])
  assert positions.shape == labels.shape == (len(pairs), 20)
  assert np.all(positions[~weights] == 0) and np.all(labels[~weights] == 0)
  np.testing.assert_array_equal(batch["next_sentence_labels"], pairs.is_random_next)


def test_predictions_are_capped(tokenized, synthetic_tokenizer):
  config = ExampleConfig(max_seq_length=64, max_predictions_per_seq=3, masked_lm_prob=0.5)
  batch = _mask(_pairs(tokenized, synthetic_tokenizer, config), config, synthetic_tokenizer)
  assert batch["masked_lm_weights"].sum(1).max() == 3


def test_whole_word_masking_masks_words_together(tokenized, synthetic_tokenizer):
  tok = synthetic_tokenizer
  config = ExampleConfig(max_seq_length=64, whole_word_masking=True)
  pairs = _pairs(tokenized, tok, config)
  batch = _mask(pairs, config, tok)
  continuation_targets = 0
  for row in range(len(pairs)):
    chosen = set(batch["masked_lm_positions"][row][batch["masked_lm_weights"][row] > 0].tolist())
    for pos in range(2, pairs.lengths[row]):
      previous_is_word = not np.isin(pairs.tokens[row, pos - 1], tok.special_ids)
      if tok.is_continuation[pairs.tokens[row, pos]] and previous_is_word:
        # A ## piece is a target exactly when the piece before it (its word) is.
        assert (pos in chosen) == (pos - 1 in chosen)
        continuation_targets += pos in chosen
  assert continuation_targets > 20
  ratio = batch["masked_lm_weights"].sum() / (batch["input_mask"].sum() - 3 * len(pairs))
  assert 0.12 < ratio < 0.16


def test_masking_is_reproducible_per_row(tokenized, synthetic_tokenizer):
  config = ExampleConfig(max_seq_length=32, max_predictions_per_seq=8)
  pairs = _pairs(tokenized, synthetic_tokenizer, config)
  a = _mask(pairs, config, synthetic_tokenizer, seed=1)
  b = _mask(pairs, config, synthetic_tokenizer, seed=1)
  c = _mask(pairs, config, synthetic_tokenizer, seed=2)
  np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
  assert not np.array_equal(a["masked_lm_positions"], c["masked_lm_positions"])
  with pytest.raises(ValueError, match="one generator per row"):
    mask_batch(pairs, config, synthetic_tokenizer, [np.random.default_rng(0)])


def test_pairs_stay_inside_their_split(tokenized, synthetic_tokenizer):
  train, held_out = split_documents(tokenized, 0.3, seed=0)
  pairs = _pairs(tokenized, synthetic_tokenizer, documents=held_out)
  seen = {doc_of_token(synthetic_tokenizer, t) for t in np.unique(pairs.tokens)} - {-1}
  doc_names = {int(tokenized_doc) for tokenized_doc in held_out}
  assert seen and len(seen) <= len(doc_names)
  train_pairs = _pairs(tokenized, synthetic_tokenizer, documents=train)
  train_seen = {doc_of_token(synthetic_tokenizer, t) for t in np.unique(train_pairs.tokens)}
  assert seen.isdisjoint(train_seen - {-1})


def test_invalid_example_config_is_rejected():
  with pytest.raises(ValueError, match="max_predictions_per_seq"):
    ExampleConfig(max_seq_length=16, max_predictions_per_seq=32)
  with pytest.raises(ValueError, match="masked_lm_prob"):
    ExampleConfig(masked_lm_prob=1.5)
