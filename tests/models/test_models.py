"""Model behaviour under jit: no retracing, masked-position logits, padding, dropout."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill.models import BertConfig, StudentConfig, hf

STUDENT = StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=48,
                        num_ffn=2, num_blocks=2, embedding_size=16, vocab_size=100,
                        max_position_embeddings=32, hidden_dropout_prob=0.1)
TEACHER = BertConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                     intermediate_size=64, max_position_embeddings=32)


@pytest.fixture(params=[STUDENT, TEACHER], ids=["student", "teacher"])
def config(request):
  return request.param


def _batch(seed=0, batch=2, seq=12, vocab=100):
  rng = np.random.RandomState(seed)
  ids = jnp.asarray(rng.randint(1, vocab, (batch, seq)))
  mask = jnp.ones((batch, seq), jnp.int32).at[1, seq - 4:].set(0)
  return ids, mask


def test_second_call_with_same_shapes_does_not_retrace(config):
  model = hf.make_model(config)
  params = hf.init_params(config, jax.random.PRNGKey(0))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(params, ids, mask):
    return model.apply({"params": params}, ids, attention_mask=mask).mlm_logits

  chex.clear_trace_counter()
  first = forward(params, *_batch(0))
  second = forward(params, *_batch(1))  # new values, same shapes: cached executable
  assert first.shape == second.shape == (2, 12, config.vocab_size)
  assert not np.allclose(first, second)
  with pytest.raises(AssertionError, match="traced > 1 times"):  # the guard itself can fail
    forward(params, *_batch(2, seq=16))


def test_masked_positions_select_the_same_logits(config):
  model = hf.make_model(config)
  params = hf.init_params(config, jax.random.PRNGKey(1))
  ids, mask = _batch()
  positions = jnp.asarray([[1, 5, 0], [2, 3, 7]])
  full = model.apply({"params": params}, ids, attention_mask=mask)
  picked = model.apply({"params": params}, ids, attention_mask=mask, masked_positions=positions)
  assert picked.mlm_logits.shape == (2, 3, config.vocab_size)
  expected = np.take_along_axis(np.asarray(full.mlm_logits), np.asarray(positions)[..., None], 1)
  np.testing.assert_allclose(picked.mlm_logits, expected, atol=1e-5)
  np.testing.assert_allclose(picked.nsp_logits, full.nsp_logits, atol=1e-6)


def test_padding_does_not_change_real_tokens(config):
  """Changing the ids under padding must leave every unpadded position's output unchanged."""
  model = hf.make_model(config)
  params = hf.init_params(config, jax.random.PRNGKey(2))
  ids, mask = _batch()
  other = ids.at[1, 8:].set(7)
  if isinstance(config, StudentConfig) and config.trigram_input:
    keep = 7  # the trigram embedding reads the next token, so position 7 sees position 8
  else:
    keep = 8
  a = model.apply({"params": params}, ids, attention_mask=mask)
  b = model.apply({"params": params}, other, attention_mask=mask)
  np.testing.assert_allclose(a.last_hidden_state[1, :keep], b.last_hidden_state[1, :keep],
                             atol=1e-5)
  # The padded keys get zero attention probability everywhere.
  for probs in a.attentions:
    assert float(jnp.max(probs[1, :, :, 8:])) == 0.0
    np.testing.assert_allclose(jnp.sum(probs, -1), 1.0, atol=1e-5)


def test_dropout_only_when_not_deterministic(config):
  model = hf.make_model(config)
  params = hf.init_params(config, jax.random.PRNGKey(3))
  ids, mask = _batch()
  eval_a = model.apply({"params": params}, ids, attention_mask=mask)
  eval_b = model.apply({"params": params}, ids, attention_mask=mask)
  np.testing.assert_array_equal(eval_a.last_hidden_state, eval_b.last_hidden_state)
  train = model.apply({"params": params}, ids, attention_mask=mask, deterministic=False,
                      rngs={"dropout": jax.random.PRNGKey(4)})
  assert not np.allclose(train.last_hidden_state, eval_a.last_hidden_state)


def test_bfloat16_compute_keeps_float32_params():
  model = hf.make_model(STUDENT, dtype=jnp.bfloat16)
  params = hf.init_params(STUDENT, jax.random.PRNGKey(0))
  ids, mask = _batch()
  out = jax.jit(lambda p: model.apply({"params": p}, ids, attention_mask=mask))(params)
  assert out.last_hidden_state.dtype == jnp.bfloat16
  assert out.attentions[0].dtype == jnp.float32  # softmax runs in float32
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
  reference = model.clone(dtype=jnp.float32).apply({"params": params}, ids, attention_mask=mask)
  np.testing.assert_allclose(np.asarray(out.mlm_logits, np.float32), reference.mlm_logits,
                             atol=0.1)


def test_host_init_draws_what_the_modules_initialisers_declare():
  """hf.init_params draws on the host; it must give what each module's own init gives: zero
  biases, unit norm scales, N(0, 0.02) kernels and tables (an independent check: Flax's init)."""
  config = StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=64,
                         num_ffn=2, num_blocks=2, embedding_size=32, vocab_size=500,
                         max_position_embeddings=64, normalization="layer_norm")
  ours = hf.init_params(config, jax.random.PRNGKey(0))
  flax_init = jax.jit(hf.make_model(config).init)(jax.random.PRNGKey(0),
                                                   jnp.zeros((1, 8), jnp.int32))
  theirs = flax.linen.unbox(flax_init["params"])
  flat_ours = flax.traverse_util.flatten_dict(ours)
  flat_theirs = flax.traverse_util.flatten_dict(flax.core.unfreeze(theirs))
  assert flat_ours.keys() == flat_theirs.keys()
  for path, want in flat_theirs.items():
    got, want = np.asarray(flat_ours[path]), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, path
    if not want.any() or np.all(want == 1):
      np.testing.assert_array_equal(got, want, err_msg=str(path))
    elif want.size >= 1000:
      assert abs(got.std() - 0.02) < 0.002 and abs(want.std() - 0.02) < 0.002, path
      assert abs(got.mean()) < 0.002, path
  # Same key, same values; a leaf's values do not depend on the rest of the tree.
  again = hf.init_params(config.replace(num_blocks=3), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(again["encoder"]["block_1"]["attention"]["query"]["kernel"],
                                ours["encoder"]["block_1"]["attention"]["query"]["kernel"])
  other = hf.init_params(config, jax.random.PRNGKey(1))
  assert not np.array_equal(other["encoder"]["block_1"]["attention"]["query"]["kernel"],
                            ours["encoder"]["block_1"]["attention"]["query"]["kernel"])


def test_scanned_blocks_compute_what_the_unrolled_blocks_do():
  """``scan_blocks``: the same forward (logits, every hidden state and attention map, the Q/K/V
  intermediates the relation loss reads) and the same gradients, stacked, as one leaf per block;
  stack_blocks/unstack_blocks convert exactly."""
  from autodistill.models.student import StudentForPreTraining, stack_blocks, unstack_blocks
  student = STUDENT.replace(num_blocks=3)
  params = hf.init_params(student, jax.random.PRNGKey(1))
  stacked = stack_blocks(params)
  assert jax.tree.map(np.shape, stacked["encoder"]["blocks"]) == jax.tree.map(
      lambda x: (3, *np.shape(x)), params["encoder"]["block_0"])
  chex.assert_trees_all_equal(unstack_blocks(stacked), params)
  ids, mask = _batch()
  unrolled, scanned = StudentForPreTraining(student), StudentForPreTraining(student,
                                                                            scan_blocks=True)
  a, a_vars = unrolled.apply({"params": params}, ids, None, mask, mutable=["intermediates"])
  b, b_vars = scanned.apply({"params": stacked}, ids, None, mask, mutable=["intermediates"])
  np.testing.assert_allclose(b.mlm_logits, a.mlm_logits, atol=1e-5, rtol=1e-5)
  for x, y in zip(b.hidden_states + b.attentions, a.hidden_states + a.attentions, strict=True):
    np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5)
  a_qkv = [a_vars["intermediates"]["encoder"][f"block_{i}"]["attention"]["qkv"][0]
           for i in range(3)]
  b_qkv = b_vars["intermediates"]["encoder"]["blocks"]["attention"]["qkv"][0]
  for i in range(3):
    for x, y in zip(b_qkv, a_qkv[i], strict=True):
      np.testing.assert_allclose(x[i], y, atol=1e-5, rtol=1e-5)

  def loss(model):
    return lambda p: jnp.sum(model.apply({"params": p}, ids, None, mask).mlm_logits ** 2)

  chex.assert_trees_all_close(jax.grad(loss(scanned))(stacked),
                              stack_blocks(jax.grad(loss(unrolled))(params)),
                              atol=1e-4, rtol=1e-4)
