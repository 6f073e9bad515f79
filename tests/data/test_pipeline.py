"""The input pipeline: determinism, resume, per-process shards, device placement, errors, BBC."""

import itertools

import jax
import numpy as np
import pytest

from autodistill import sharding
from autodistill.data import (FEATURES, BbcNews, CorpusTooSmallError, ExampleConfig,
                              PretrainingData, TextFiles, Tokenizer, pretraining_data,
                              tokenize_corpus)

from synthetic import doc_of_token, write_corpus  # tests/synthetic.py

SMALL = ExampleConfig(max_seq_length=32, max_predictions_per_seq=6)


@pytest.fixture()
def tokenized(synthetic_tokenized):
  return synthetic_tokenized  # tokenized once per session (tests/conftest.py)


def _data(tokenized, tokenizer, **kwargs):
  defaults = dict(split="train", global_batch_size=16, examples=SMALL, eval_fraction=0.2, seed=3)
  return PretrainingData(tokenized, tokenizer, **{**defaults, **kwargs})


def _take(data, n):
  return list(itertools.islice(iter(data), n))


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batches_have_fixed_shapes(tokenized, synthetic_tokenizer):
  data = _data(tokenized, synthetic_tokenizer)
  batches = _take(data, data.batches_per_epoch() + 2)  # crosses an epoch boundary
  for batch in batches:
    assert set(FEATURES) <= set(batch)
    assert batch["input_ids"].shape == (16, 32) and batch["masked_lm_ids"].shape == (16, 6)
    assert batch["next_sentence_labels"].shape == (16,)
    assert batch["example_mask"].all()
  assert data.state_dict()["epoch"] == 1


def test_same_seed_same_batches_new_epoch_new_masks(tokenized, synthetic_tokenizer):
  a = _take(_data(tokenized, synthetic_tokenizer), 3)
  b = _take(_data(tokenized, synthetic_tokenizer, prefetch=0), 3)
  for x, y in zip(a, b):
    _assert_same(x, y)
  other = _take(_data(tokenized, synthetic_tokenizer, seed=4), 1)[0]
  assert not np.array_equal(other["input_ids"], a[0]["input_ids"])
  data = _data(tokenized, synthetic_tokenizer)
  assert not np.array_equal(data.batch(0, 0)["input_ids"], data.batch(1, 0)["input_ids"])


@pytest.mark.parametrize("stop_after", [2, 11])  # within the first epoch, and into the second
def test_resume_continues_with_the_next_batch(tokenized, synthetic_tokenizer, stop_after):
  reference = _data(tokenized, synthetic_tokenizer)
  assert reference.batches_per_epoch() == 9
  expected = _take(reference, stop_after + 3)
  interrupted = _data(tokenized, synthetic_tokenizer)
  _take(interrupted, stop_after)
  state = interrupted.state_dict()
  resumed = _data(tokenized, synthetic_tokenizer)
  resumed.load_state_dict(state)
  for got, want in zip(_take(resumed, 3), expected[stop_after:]):
    _assert_same(got, want)


def test_resume_refuses_other_data(tokenized, synthetic_tokenizer):
  state = _data(tokenized, synthetic_tokenizer).state_dict()
  with pytest.raises(ValueError, match="global_batch_size=16 but this pipeline has 8"):
    _data(tokenized, synthetic_tokenizer, global_batch_size=8).load_state_dict(state)


def test_process_shards_are_disjoint_and_cover_the_global_batch(tokenized, synthetic_tokenizer):
  single = _take(_data(tokenized, synthetic_tokenizer), 3)
  shards = [_take(_data(tokenized, synthetic_tokenizer, process_index=p, process_count=4), 3)
            for p in range(4)]
  for step, whole in enumerate(single):
    parts = [shard[step] for shard in shards]
    assert all(part["input_ids"].shape == (4, 32) for part in parts)
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
  with pytest.raises(ValueError, match="divisible by the 3 processes"):
    _data(tokenized, synthetic_tokenizer, process_count=3, process_index=0)


@pytest.mark.sharding
def test_device_batches_are_sharded_over_the_data_axis(tokenized, synthetic_tokenizer):
  mesh = sharding.make_mesh((-1, 2))  # 4 x 2 on the 8 simulated devices
  batch = next(iter(_data(tokenized, synthetic_tokenizer).device_batches(mesh)))
  ids = batch["input_ids"]
  assert isinstance(ids, jax.Array) and ids.shape == (16, 32)
  assert ids.sharding.spec[0] == "data" and len(ids.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(ids),
                                _data(tokenized, synthetic_tokenizer).batch(0, 0)["input_ids"])


def test_eval_split_is_one_padded_pass_over_held_out_documents(tokenized, synthetic_tokenizer):
  train = _data(tokenized, synthetic_tokenizer)
  held_out = _data(tokenized, synthetic_tokenizer, split="eval", global_batch_size=16)
  batches = list(held_out)
  assert len(batches) == held_out.batches_per_epoch() >= 1
  assert batches[-1]["example_mask"].sum() < 16 or len(held_out._pairs(0)) % 16 == 0
  assert sum(int(b["example_mask"].sum()) for b in batches) == len(held_out._pairs(0))
  assert np.all(batches[-1]["masked_lm_weights"][batches[-1]["example_mask"] == 0] == 0)
  docs = lambda batches: {doc_of_token(synthetic_tokenizer, t)  # noqa: E731
                          for b in batches for t in np.unique(b["masked_lm_ids"])} - {-1}
  assert docs(batches).isdisjoint(docs(_take(train, train.batches_per_epoch())))
  assert held_out.state_dict()["batch"] == held_out.batches_per_epoch()
  assert list(held_out) == []  # the pass is over until reset
  held_out.reset()
  for again, first in zip(held_out, batches):
    _assert_same(again, first)


def test_too_small_corpus_says_how_much_was_found(tmp_path, synthetic_tokenizer):
  corpus = tokenize_corpus(TextFiles(write_corpus(tmp_path / "tiny", num_docs=3)),
                           synthetic_tokenizer)
  with pytest.raises(CorpusTooSmallError, match=r"train split has \d+ documents and \d+ tokens, "
                     r"giving \d+ examples of length 32; one batch needs 4096"):
    _data(corpus, synthetic_tokenizer, global_batch_size=4096)


def test_pretraining_data_checks_the_model_vocab(synthetic_corpus, synthetic_tokenizer):
  with pytest.raises(ValueError, match="model's vocab_size is 30522"):
    pretraining_data(synthetic_corpus, synthetic_tokenizer, global_batch_size=8,
                     model_vocab_size=30522)


def test_real_bbc_pipeline(tmp_path, bbc_dir, minilm_dir):
  tokenizer = Tokenizer.from_path(minilm_dir)
  train, held_out = pretraining_data(BbcNews(), tokenizer, global_batch_size=64,
                                     cache_dir=tmp_path, model_vocab_size=30522)
  assert len(train.documents) + len(held_out.documents) == 2225
  assert set(train.documents).isdisjoint(held_out.documents)
  assert 0.03 < len(held_out.documents) / 2225 < 0.07
  batches = _take(train, 20)
  weights = np.concatenate([b["masked_lm_weights"] for b in batches])
  real_tokens = sum(int(b["input_mask"].sum()) - 3 * 64 for b in batches)
  assert abs(weights.sum() / real_tokens - 0.15) < 0.01
  labels = np.concatenate([b["next_sentence_labels"] for b in batches])
  assert abs(labels.mean() - 0.5) < 0.07
  ids = np.concatenate([b["masked_lm_ids"][b["masked_lm_weights"] > 0] for b in batches])
  assert not np.isin(ids, tokenizer.special_ids).any()
  assert any((tmp_path).glob("tokenized-*.npz"))


def test_a_proxy_set_is_a_fixed_subset_of_the_training_documents(tokenized, synthetic_tokenizer):
  """KD-NAS's proxy set: the same seeded documents every time, only their text in the batches,
  no held-out document, and a resume state that only fits the same subset."""
  data = _data(tokenized, synthetic_tokenizer, global_batch_size=4)
  proxy = data.proxy(6)
  again = _data(tokenized, synthetic_tokenizer, global_batch_size=4).proxy(6)
  assert len(proxy.documents) == 6 and set(proxy.documents) <= set(data.documents)
  np.testing.assert_array_equal(proxy.documents, again.documents)
  assert proxy.proxy_of == len(data.documents) and "a proxy set of the split's" in proxy.describe()
  held_out = _data(tokenized, synthetic_tokenizer, split="eval", global_batch_size=4)
  assert not set(proxy.documents) & set(held_out.documents)
  seen = set()
  for batch in _take(proxy, 2 * proxy.batches_per_epoch()):
    ids = batch["input_ids"].copy()
    rows = np.arange(len(ids))[:, None]
    ids[rows, batch["masked_lm_positions"]] = 0  # a masked token may be a random replacement
    seen |= {doc_of_token(synthetic_tokenizer, int(t)) for t in ids.ravel()}
  assert seen - {-1} <= set(proxy.documents.tolist()) and len(seen - {-1}) > 1
  assert proxy.batches_per_epoch() < data.batches_per_epoch()
  assert data.state_dict()["epoch"] == 0  # the full pipeline's position is its own
  with pytest.raises(ValueError, match="documents=.*resume with the same data settings"):
    data.load_state_dict(proxy.state_dict())
  assert data.proxy(len(data.documents)) is data
  with pytest.raises(CorpusTooSmallError, match="a proxy set of 1 of the train split's .*"
                     "raise search.proxy_documents"):
    _data(tokenized, synthetic_tokenizer, global_batch_size=64).proxy(1)
