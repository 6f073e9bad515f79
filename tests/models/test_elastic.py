"""The elastic student runs every student of its envelope as that student's own model does."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill.models import hf
from autodistill.models.configs import StudentConfig
from autodistill.models.elastic import Envelope, pad_tree, slice_tree

_SMALL = dict(vocab_size=50, max_position_embeddings=16, embedding_size=32,
              attention_dropout_prob=0.0)
# Students that differ in every elastic field: hidden, bottleneck, heads and head size (16, 12,
# 32), intermediate size, FFNs and blocks. Two wirings: MobileBERT's (NoNorm, shared key/query
# bottleneck, ReLU) and a LayerNorm one reading attention from the input bottleneck (GELU).
_WIRINGS = {
    "mobilebert": {},
    "layer_norm": dict(normalization="layer_norm", key_query_shared_bottleneck=False,
                       use_bottleneck_attention=True, hidden_act="gelu"),
}
_SHAPES = ["Model_64_32_2_64_2-num_blocks=1", "Model_96_48_4_96_3-num_blocks=2",
           "Model_64_64_2_128_1-num_blocks=3"]


def _students(wiring):
  return [StudentConfig.from_name(name, **_SMALL, **_WIRINGS[wiring]) for name in _SHAPES]


def _random_params(student, seed):
  """Parameters of ``student`` with no entry trivially 0 or 1 (kernels, biases, norms all random)."""
  shapes = jax.eval_shape(hf.make_model(student).init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, 8), jnp.int32))["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(0, 0.05, x.shape).astype(np.float32),
                      flax.linen.unbox(shapes))


def _inputs():
  ids = jax.random.randint(jax.random.PRNGKey(7), (2, 12), 0, 50)
  segments = jnp.zeros_like(ids).at[:, 6:].set(1)
  mask = jnp.ones_like(ids).at[1, 9:].set(0)
  return ids, segments, mask


@pytest.fixture(scope="module", params=sorted(_WIRINGS))
def elastic_case(request):
  students = _students(request.param)
  envelope = Envelope.of(students)
  model = envelope.model()
  ids, segments, mask = _inputs()

  @jax.jit
  def forward(params, arch):
    return model.apply({"params": params}, ids, segments, mask, arch=arch)

  return students, envelope, forward


def test_envelope_is_the_largest_of_every_factor():
  envelope = Envelope.of(_students("mobilebert"))
  c = envelope.config
  assert (c.hidden_size, c.bottleneck_size, c.intermediate_size, c.num_ffn, c.num_blocks) == (
      96, 64, 128, 3, 3)
  assert (envelope.num_heads, envelope.head_size) == (4, 32)
  assert envelope.describe() == ("hidden 96, bottleneck 64, 4 heads of 32, intermediate 128, "
                                 "3 FFNs, 3 blocks")


def test_masked_forward_equals_each_students_own_forward_in_one_program(elastic_case):
  students, envelope, forward = elastic_case
  ids, segments, mask = _inputs()
  for seed, student in enumerate(students):
    params = _random_params(student, seed)
    want = jax.jit(hf.make_model(student).apply)({"params": params}, ids, segments, mask)
    got = forward(envelope.embed(student, params), envelope.arch(student))
    h, heads = student.hidden_size, student.num_heads
    np.testing.assert_allclose(got.mlm_logits, want.mlm_logits, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(got.nsp_logits, want.nsp_logits, atol=2e-5, rtol=1e-5)
    for k in range(student.num_blocks + 1):
      np.testing.assert_allclose(got.hidden_states[k][..., :h], want.hidden_states[k],
                                 atol=2e-5, rtol=1e-5)
      # The padded features are zero, not merely ignored.
      assert not np.any(np.asarray(got.hidden_states[k][..., h:]))
    for k in range(student.num_blocks):
      np.testing.assert_allclose(got.attentions[k][:, :heads], want.attentions[k], atol=1e-6)
    # Blocks the student lacks pass the last real block's output through.
    for k in range(student.num_blocks + 1, envelope.config.num_blocks + 1):
      np.testing.assert_array_equal(got.hidden_states[k], got.hidden_states[student.num_blocks])
  assert forward._cache_size() == 1  # pylint: disable=protected-access


def test_gradients_are_the_students_own_and_zero_on_the_padding(elastic_case):
  students, envelope, _ = elastic_case
  ids, segments, mask = _inputs()
  model = envelope.model()
  weights = np.random.default_rng(0).normal(size=(2, 12, 50)).astype(np.float32)

  def objective(out):
    return jnp.sum(out.mlm_logits * weights) + jnp.sum(out.nsp_logits[:, 0])

  student = students[1]
  params = _random_params(student, 1)
  want = jax.jit(jax.grad(lambda p: objective(hf.make_model(student).apply(
      {"params": p}, ids, segments, mask))))(params)
  got = jax.jit(jax.grad(lambda p: objective(model.apply({"params": p}, ids, segments, mask,
                                                 arch=envelope.arch(student)))))(
      envelope.embed(student, params))
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, atol=2e-5, rtol=1e-4),
               envelope.extract(student, got), want)
  # Everything outside the student's corner has an exactly zero gradient.
  padded_back = envelope.embed(student, envelope.extract(student, got))
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, got), padded_back)


def test_extract_inverts_embed_and_the_padding_is_zero():
  students = _students("mobilebert")
  envelope = Envelope.of(students)
  student = students[0]
  params = _random_params(student, 0)
  embedded = envelope.embed(student, params)
  jax.tree.map(np.testing.assert_array_equal, envelope.extract(student, embedded), params)
  assert "block_2" in embedded["encoder"] and "block_1" not in params["encoder"]
  assert not np.any(embedded["encoder"]["block_2"]["attention"]["query"]["kernel"])
  kernel = embedded["encoder"]["block_0"]["attention"]["query"]["kernel"]  # [in, heads, size]
  assert kernel.shape == (64, 4, 32)  # queries read the 64-wide bottleneck
  assert not np.any(kernel[:, 2:]) and not np.any(kernel[:, :, 16:])
  assert np.all(kernel[:32, :2, :16] == params["encoder"]["block_0"]["attention"]["query"]["kernel"])


def test_pad_and_slice_name_a_parameter_that_does_not_fit():
  with pytest.raises(ValueError, match=r"shape \(3, 5\) does not fit the envelope's \(4, 4\)"):
    pad_tree({"w": np.ones((3, 5))}, {"w": jax.ShapeDtypeStruct((4, 4), np.float32)})
  with pytest.raises(ValueError, match=r"parameters \['extra'\] have no place"):
    pad_tree({"extra": np.ones(2)}, {"w": jax.ShapeDtypeStruct((4,), np.float32)})
  np.testing.assert_array_equal(
      slice_tree({"w": np.arange(12).reshape(3, 4)}, {"w": jax.ShapeDtypeStruct((2, 2), np.float32)})["w"],
      [[0, 1], [4, 5]])


def test_envelope_rejects_students_it_cannot_run():
  students = _students("mobilebert")
  with pytest.raises(ValueError, match="differ in {'normalization'"):
    Envelope.of([students[0], students[1].replace(normalization="layer_norm")])
  envelope = Envelope.of(students[:2])
  with pytest.raises(ValueError, match="exceeds the envelope in {'head_size': 32, 'bottleneck_size': 64, "
                     "'intermediate_size': 128, 'num_blocks': 3}"):
    envelope.arch(students[2])
  plain = StudentConfig.from_name("Model_32_32_2_64_2", **_SMALL, trigram_input=False)
  with pytest.raises(ValueError, match="lacks the embedding transformation"):
    Envelope.of([plain, plain.replace(hidden_size=64)])


def test_scanned_envelope_runs_each_student_as_the_unrolled_envelope_does(elastic_case):
  """The elastic student under ``scan_blocks`` (the blocks a student lacks skipped by the scanned
  ``arch.blocks`` mask) equals the unrolled envelope, block for block."""
  from autodistill.models.student import stack_blocks
  students, envelope, forward = elastic_case
  ids, segments, mask = _inputs()
  scanned = jax.jit(lambda p, arch: envelope.model(scan_blocks=True).apply(
      {"params": p}, ids, segments, mask, arch=arch))
  for seed, student in enumerate(students[:2]):
    params = envelope.embed(student, _random_params(student, seed))
    want, got = forward(params, envelope.arch(student)), scanned(stack_blocks(params),
                                                                 envelope.arch(student))
    np.testing.assert_allclose(got.mlm_logits, want.mlm_logits, atol=2e-5, rtol=1e-5)
    for x, y in zip(got.hidden_states + got.attentions, want.hidden_states + want.attentions,
                    strict=True):
      np.testing.assert_allclose(x, y, atol=2e-5, rtol=1e-5)


def test_masked_norm_under_vmap_over_many_masks_matches_each_mask():
  # The SuperLM scores 16 subnets per call through jax.vmap; XLA's CPU fusion once returned
  # wrong rows for masked sums written as sum(x * mask) at 16+ masks (jax 0.10.2).
  from autodistill.models.layers import MaskedNorm
  x = jnp.asarray(np.random.RandomState(0).randn(8, 32, 24), jnp.float32)
  norm = MaskedNorm("layer_norm", "embed")
  params = flax.linen.unbox(norm.init(jax.random.PRNGKey(0), x, jnp.ones(24), 1e-5))
  widths = [16] * 4 + [24] * 4 + [16] * 8
  masks = np.stack([(np.arange(24) < w).astype(np.float32) for w in widths])
  batched = jax.jit(jax.vmap(lambda m: norm.apply(params, x, m, 1e-5)))(masks)
  for i, w in enumerate(widths):
    own = flax.linen.LayerNorm(epsilon=1e-5).apply(
        {"params": {"scale": params["params"]["scale"][:w], "bias": params["params"]["bias"][:w]}},
        x[..., :w])
    np.testing.assert_allclose(batched[i][..., :w], own, atol=1e-5, err_msg=f"row {i}")
    assert not np.any(np.asarray(batched[i][..., w:]))
