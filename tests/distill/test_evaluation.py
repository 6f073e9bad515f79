"""Held-out evaluation sums, checked against NumPy on logits fixed by hand."""

import jax
import jax.numpy as jnp
import numpy as np

from autodistill import sharding
from autodistill.distill.evaluation import held_out_predictions, make_pretraining_evaluator

VOCAB, IDS = 7, 50


class _Batches:
  """An evaluation split of fixed batches (all the evaluator reads of a pipeline)."""

  def __init__(self, batches):
    self.batches = batches

  def device_batches(self, mesh, data_axis="data"):
    del mesh, data_axis
    yield from ({k: jnp.asarray(v) for k, v in b.items()} for b in self.batches)

  def reset(self):
    pass


class _Output:
  def __init__(self, mlm_logits, nsp_logits):
    self.mlm_logits, self.nsp_logits = mlm_logits, nsp_logits


def test_counts_accuracies_and_the_spread_of_the_losses_match_numpy():
  rng = np.random.default_rng(0)
  # A "model" whose logits are fixed rows of two tables, picked by the input ids.
  mlm_table = rng.normal(size=(IDS, VOCAB)).astype(np.float32)
  nsp_table = rng.normal(size=(IDS, 2)).astype(np.float32)

  def apply_fn(params, ids, segments, mask, positions):
    del params, segments, mask
    picked = jnp.take_along_axis(ids, positions, axis=1)
    return _Output(jnp.asarray(mlm_table)[picked], jnp.asarray(nsp_table)[ids[:, 0]])

  batches = [{
      "input_ids": rng.integers(0, IDS, (4, 8)).astype(np.int32),
      "segment_ids": np.zeros((4, 8), np.int32), "input_mask": np.ones((4, 8), np.int32),
      "masked_lm_positions": rng.integers(0, 8, (4, 3)).astype(np.int32),
      "masked_lm_ids": rng.integers(0, VOCAB, (4, 3)).astype(np.int32),
      "masked_lm_weights": np.array([[1, 1, 0]] * 3 + [[1, 0, 0]], np.float32),
      "next_sentence_labels": np.array([1, 1, 1, 0], np.int32),
      "example_mask": np.array([1, 1, 1, 0], np.float32),  # the last row is padding
  } for _ in range(2)]
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  got = make_pretraining_evaluator(apply_fn, _Batches(batches), mesh)({})

  nll, hit, nsp_hit = [], [], []
  for b in batches:
    logits = mlm_table[np.take_along_axis(b["input_ids"], b["masked_lm_positions"], 1)]
    logp = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    w = b["masked_lm_weights"] > 0
    nll += list(-np.take_along_axis(logp, b["masked_lm_ids"][..., None], -1)[..., 0][w])
    hit += list((logits.argmax(-1) == b["masked_lm_ids"])[w])
    real = b["example_mask"] > 0
    nsp = nsp_table[b["input_ids"][:, 0]]
    nsp_hit += list((nsp.argmax(-1) == b["next_sentence_labels"])[real])
  nll = np.array(nll)
  assert got["mlm_predictions"] == len(nll) == 14
  np.testing.assert_allclose(got["mlm_accuracy"], np.mean(hit), rtol=1e-6)
  np.testing.assert_allclose(got["mlm_loss"], nll.mean(), rtol=1e-5)
  np.testing.assert_allclose(got["mlm_loss_std"], nll.std(), rtol=1e-4)
  assert got["examples"] == 6
  np.testing.assert_allclose(got["nsp_accuracy"], np.mean(nsp_hit), rtol=1e-6)
  assert got["nsp_majority"] == 1.0  # every real example is labelled 1
  # Per prediction, in the split's order, padding left out: the paired comparison's input.
  each = held_out_predictions(apply_fn, {}, _Batches(batches), mesh)
  np.testing.assert_allclose(each["mlm_loss"], nll, rtol=1e-5)
  np.testing.assert_array_equal(each["mlm_correct"], np.array(hit, np.float64))
  np.testing.assert_allclose(each["mlm_loss"].mean(), got["mlm_loss"], rtol=1e-6)
