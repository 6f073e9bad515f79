"""Distillation losses (paper eqs. 1-3, MiniLM-v2 relations) against hand-written NumPy.

The NumPy references below are written from the equations, not from the library: attention
maps are softmaxes of random logits whose masked keys get exactly zero probability (as the
model produces them with ``finfo.min`` scores), and every average runs over real positions only.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill.distill import losses

RTOL, ATOL = 1e-5, 1e-6

# Jitted once per shape: on a 2-core CPU with 8 fake devices, op-by-op dispatch of the eager
# losses (and especially of their gradients) costs seconds per test.
attention_kl = jax.jit(losses.attention_kl)
match_heads = jax.jit(losses.match_heads)
feature_map_mse = jax.jit(losses.feature_map_mse)
mlm_loss = jax.jit(losses.mlm_loss)
mlm_distill_loss = jax.jit(losses.mlm_distill_loss, static_argnames="temperature")
nsp_loss = jax.jit(losses.nsp_loss)
pretraining_distill_loss = jax.jit(losses.pretraining_distill_loss,
                                   static_argnames=("alpha", "temperature"))
relation_probs = jax.jit(losses.relation_probs, static_argnums=2)
attention_relation_kl = jax.jit(losses.attention_relation_kl, static_argnums=3)


def _grad(fn, argnums, **static):
  return jax.jit(jax.grad(fn, argnums=argnums), **static)


# ---------------------------------------------------------------------------------------------
# NumPy references


def _np_softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _token_mask(batch, seq, lengths):
  mask = np.zeros((batch, seq), np.float32)
  for b, n in enumerate(lengths):
    mask[b, :n] = 1.0
  return mask


def _attention_probs(rng, batch, heads, seq, mask):
  """Random attention maps [batch, heads, S, S]; keys outside ``mask`` get probability 0."""
  logits = rng.normal(size=(batch, heads, seq, seq)) * 2.0
  keys = mask[:, None, None, :].astype(bool)
  probs = np.where(keys, np.exp(logits - logits.max(-1, keepdims=True)), 0.0)
  return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def _np_kl(p, q):
  """KL(p || q) along the last axis, 0 log 0 = 0, in float64."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.where(p > 0, q, 1.0))),
                   0.0)
  return terms.sum(-1)


def _np_head_groups(probs, groups):
  """Mean of contiguous head groups, written as an explicit loop."""
  size = probs.shape[1] // groups
  return np.stack([probs[:, g * size:(g + 1) * size].mean(axis=1) for g in range(groups)], axis=1)


def _np_masked_row_mean(kl, mask):
  """Mean of kl [batch, heads, S] over real query rows (mask [batch, S]), heads and batch."""
  rows = np.broadcast_to(mask[:, None, :], kl.shape)
  return (kl * rows).sum() / rows.sum()


def _np_relations(x, mask, num_relation_heads):
  """MiniLM-v2 relations: concatenate heads, re-split into R heads, scaled dot-product softmax."""
  b, s, h, _ = x.shape
  flat = np.concatenate([x[:, :, i, :] for i in range(h)], axis=-1).astype(np.float64)
  d = flat.shape[-1] // num_relation_heads
  out = np.zeros((b, num_relation_heads, s, s))
  for r in range(num_relation_heads):
    part = flat[:, :, r * d:(r + 1) * d]
    scores = np.einsum("bsd,btd->bst", part, part) / np.sqrt(d)
    scores = np.where(mask[:, None, :] > 0, scores, -np.inf)
    out[:, r] = _np_softmax(scores)
  return out


# ---------------------------------------------------------------------------------------------
# Attention-map KL (eq. 1)


@pytest.fixture
def rng():
  return np.random.RandomState(0)


def test_attention_kl_matches_numpy_with_padding(rng):
  mask = _token_mask(3, 6, [6, 4, 2])
  teacher = _attention_probs(rng, 3, 4, 6, mask)
  student = _attention_probs(rng, 3, 4, 6, mask)
  expected = _np_masked_row_mean(_np_kl(teacher, student), mask)
  got = attention_kl(jnp.asarray(teacher), jnp.asarray(student), jnp.asarray(mask))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
  assert expected > 0.05  # a real, non-trivial divergence was compared


def test_attention_kl_ignores_padded_query_rows(rng):
  mask = _token_mask(2, 5, [5, 3])
  teacher = _attention_probs(rng, 2, 2, 5, mask)
  student = _attention_probs(rng, 2, 2, 5, mask)
  base = attention_kl(teacher, student, mask)
  # Replace every padded query row (example 1, rows 3 and 4) on both sides by other distributions.
  other_t = _attention_probs(rng, 2, 2, 5, mask)
  other_s = _attention_probs(rng, 2, 2, 5, mask)
  teacher2, student2 = teacher.copy(), student.copy()
  teacher2[1, :, 3:] = other_t[1, :, 3:]
  student2[1, :, 3:] = other_s[1, :, 3:]
  np.testing.assert_allclose(attention_kl(teacher2, student2, mask), base, rtol=RTOL)
  # ... while a change at a real query row does change it.
  student3 = student.copy()
  student3[1, :, 2] = other_s[1, :, 2]
  assert abs(float(attention_kl(teacher, student3, mask)) - float(base)) > 1e-4


def test_attention_kl_is_zero_for_identical_maps(rng):
  mask = _token_mask(2, 5, [5, 2])
  probs = _attention_probs(rng, 2, 3, 5, mask)
  np.testing.assert_allclose(attention_kl(probs, probs, mask), 0.0, atol=1e-6)


@pytest.mark.parametrize("teacher_heads,student_heads", [(12, 4), (4, 8), (3, 2)])
def test_attention_kl_head_count_mismatch(rng, teacher_heads, student_heads):
  mask = _token_mask(2, 5, [5, 3])
  teacher = _attention_probs(rng, 2, teacher_heads, 5, mask)
  student = _attention_probs(rng, 2, student_heads, 5, mask)
  if teacher_heads % student_heads == 0:  # 12 -> 4: teacher heads (0,1,2), (3,4,5), ...
    t, s = _np_head_groups(teacher, student_heads), student
  elif student_heads % teacher_heads == 0:  # 4 vs 8: student heads (0,1), (2,3), ...
    t, s = teacher, _np_head_groups(student, teacher_heads)
  else:  # 3 vs 2: both sides head-averaged
    t, s = teacher.mean(1, keepdims=True), student.mean(1, keepdims=True)
  expected = _np_masked_row_mean(_np_kl(t, s), mask)
  got = attention_kl(jnp.asarray(teacher), jnp.asarray(student), jnp.asarray(mask))
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("teacher_heads,student_heads", [(12, 4), (4, 8), (3, 2), (4, 4)])
def test_grouped_attention_kl_matches_numpy_for_a_student_padded_to_more_heads(
    rng, teacher_heads, student_heads):
  """The elastic student's eq. 1: its maps padded to 10 heads (junk in the padding), the head
  matching given as data; the same value as the NumPy reference of the unpadded student."""
  mask = _token_mask(2, 5, [5, 3])
  teacher = _attention_probs(rng, 2, teacher_heads, 5, mask)
  student = _attention_probs(rng, 2, student_heads, 5, mask)
  padded = _attention_probs(rng, 2, 10, 5, mask)
  padded[:, :student_heads] = student
  if teacher_heads % student_heads == 0:
    t, s = _np_head_groups(teacher, student_heads), student
  elif student_heads % teacher_heads == 0:
    t, s = teacher, _np_head_groups(student, teacher_heads)
  else:
    t, s = teacher.mean(1, keepdims=True), student.mean(1, keepdims=True)
  expected = _np_masked_row_mean(_np_kl(t, s), mask)
  groups = losses.head_groups(teacher_heads, student_heads, 10, min(teacher_heads, 10))
  got = losses.grouped_attention_kl(jnp.asarray(teacher), jnp.asarray(padded), jnp.asarray(mask),
                                    *groups)
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
  assert groups[2].sum() == t.shape[1]


def test_head_groups_must_fit_the_matrices():
  with pytest.raises(ValueError, match="compare 4 maps; the matrices hold 2 maps"):
    losses.head_groups(12, 4, 8, 2)


@pytest.mark.parametrize("teacher_heads,student_heads,common", [(12, 4, 4), (4, 8, 4), (3, 2, 1),
                                                                (4, 4, 4)])
def test_match_heads_shapes_and_groups(rng, teacher_heads, student_heads, common):
  mask = _token_mask(1, 3, [3])
  teacher = _attention_probs(rng, 1, teacher_heads, 3, mask)
  student = _attention_probs(rng, 1, student_heads, 3, mask)
  t, s = match_heads(jnp.asarray(teacher), jnp.asarray(student))
  assert t.shape == s.shape == (1, common, 3, 3)
  if teacher_heads == 12:
    np.testing.assert_allclose(t[0, 1], teacher[0, 3:6].mean(0), rtol=RTOL)
  if student_heads == 8:
    np.testing.assert_allclose(s[0, 2], student[0, 4:6].mean(0), rtol=RTOL)
  # Grouped maps are still distributions over keys.
  np.testing.assert_allclose(np.asarray(t).sum(-1), 1.0, rtol=RTOL)
  np.testing.assert_allclose(np.asarray(s).sum(-1), 1.0, rtol=RTOL)


def test_group_heads_rejects_uneven_groups():
  with pytest.raises(ValueError, match="cannot group"):
    losses.group_heads(jnp.ones((1, 6, 2, 2)), 4)


def test_attention_kl_gradient_only_reaches_the_student(rng):
  mask = _token_mask(2, 4, [4, 2])
  teacher = jnp.asarray(_attention_probs(rng, 2, 2, 4, mask))
  student = jnp.asarray(_attention_probs(rng, 2, 2, 4, mask))
  g_teacher = _grad(losses.attention_kl, 0)(teacher, student, mask)
  g_student = _grad(losses.attention_kl, 1)(teacher, student, mask)
  np.testing.assert_array_equal(g_teacher, 0.0)
  # d/dq of (1/N) sum p (log p - log q) is -p / (q N) on real rows; N = heads * real tokens.
  n = 2 * mask.sum()
  expected = -np.asarray(teacher) / np.where(np.asarray(student) > 0, student, 1.0) / n
  expected = expected * mask[:, None, :, None]
  assert np.all(np.isfinite(g_student))
  np.testing.assert_allclose(g_student, expected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Feature-map MSE (eq. 2)


def test_feature_map_mse_matches_numpy_and_ignores_padding(rng):
  mask = _token_mask(2, 5, [5, 3])
  teacher = rng.normal(size=(2, 5, 7)).astype(np.float32)
  student = rng.normal(size=(2, 5, 7)).astype(np.float32)
  real = mask.astype(bool)
  expected = np.mean((teacher[real].astype(np.float64) - student[real]) ** 2)
  got = feature_map_mse(teacher, student, mask)
  np.testing.assert_allclose(got, expected, rtol=RTOL)
  student2 = student.copy()
  student2[1, 3:] += 100.0  # padded positions
  np.testing.assert_allclose(feature_map_mse(teacher, student2, mask), expected, rtol=RTOL)


def test_feature_map_mse_gradient_and_zero():
  mask = _token_mask(1, 3, [2])
  x = jnp.arange(12.0).reshape(1, 3, 4)
  assert float(feature_map_mse(x, x, mask)) == 0.0
  y = x + 1.0
  g_teacher = _grad(losses.feature_map_mse, 0)(x, y, mask)
  g_student = _grad(losses.feature_map_mse, 1)(x, y, mask)
  np.testing.assert_array_equal(g_teacher, 0.0)
  # d/ds mean((t - s)^2) = 2 (s - t) / (real positions * features) = 2 / 8 on real positions.
  expected = np.zeros((1, 3, 4))
  expected[0, :2] = 2.0 / 8.0
  np.testing.assert_allclose(g_student, expected, rtol=RTOL)


def test_feature_map_mse_rejects_width_mismatch():
  with pytest.raises(ValueError, match="project"):
    feature_map_mse(jnp.zeros((1, 3, 8)), jnp.zeros((1, 3, 4)), jnp.ones((1, 3)))


# ---------------------------------------------------------------------------------------------
# Masked-LM, distillation and NSP losses (eq. 3)


def _mlm_inputs(rng, batch=2, preds=4, vocab=7):
  student = rng.normal(size=(batch, preds, vocab)).astype(np.float32) * 2
  teacher = rng.normal(size=(batch, preds, vocab)).astype(np.float32) * 2
  labels = rng.randint(0, vocab, (batch, preds)).astype(np.int32)
  weights = np.ones((batch, preds), np.float32)
  weights[1, 2:] = 0.0
  return student, teacher, labels, weights


def _np_mlm(logits, labels, weights):
  logp = _np_log_softmax(logits.astype(np.float64))
  nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
  return (nll * weights).sum() / weights.sum()


def _np_mlm_distill(student, teacher, weights, tau):
  p = _np_softmax(teacher.astype(np.float64) / tau)
  q = _np_softmax(student.astype(np.float64) / tau)
  kl = (p * (np.log(p) - np.log(q))).sum(-1)
  return (kl * weights).sum() / weights.sum() * tau ** 2


def test_mlm_loss_matches_numpy_and_ignores_weightless_predictions(rng):
  student, _, labels, weights = _mlm_inputs(rng)
  expected = _np_mlm(student, labels, weights)
  np.testing.assert_allclose(mlm_loss(student, labels, weights), expected, rtol=RTOL)
  student2 = student.copy()
  student2[1, 2:] = rng.normal(size=student2[1, 2:].shape) * 10
  labels2 = labels.copy()
  labels2[1, 2:] = 0
  np.testing.assert_allclose(mlm_loss(student2, labels2, weights), expected, rtol=RTOL)


def test_mlm_loss_with_no_real_predictions_is_zero():
  got = mlm_loss(jnp.ones((1, 2, 5)), jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2)))
  assert float(got) == 0.0


@pytest.mark.parametrize("tau", [1.0, 2.0, 0.5])
def test_mlm_distill_loss_matches_numpy_with_temperature(rng, tau):
  student, teacher, _, weights = _mlm_inputs(rng)
  expected = _np_mlm_distill(student, teacher, weights, tau)
  got = mlm_distill_loss(student, teacher, weights, temperature=tau)
  np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_mlm_distill_loss_scales_with_tau_squared(rng):
  student, teacher, _, weights = _mlm_inputs(rng)
  plain = mlm_distill_loss(student / 3.0, teacher / 3.0, weights, temperature=1.0)
  hot = mlm_distill_loss(student, teacher, weights, temperature=3.0)
  np.testing.assert_allclose(hot, 9.0 * plain, rtol=RTOL)


def test_mlm_distill_loss_zero_for_identical_logits_and_no_teacher_gradient(rng):
  student, teacher, _, weights = _mlm_inputs(rng)
  np.testing.assert_allclose(mlm_distill_loss(student, student, weights, 2.0), 0.0,
                             atol=1e-6)
  g_teacher = _grad(losses.mlm_distill_loss, 1, static_argnums=3)(student, teacher, weights, 2.0)
  g_student = _grad(losses.mlm_distill_loss, 0, static_argnums=3)(student, teacher, weights, 2.0)
  np.testing.assert_array_equal(g_teacher, 0.0)
  # d/dz_S of tau^2 KL(softmax(z_T/tau) || softmax(z_S/tau)) = tau (q - p), per real prediction.
  p = _np_softmax(teacher.astype(np.float64) / 2.0)
  q = _np_softmax(student.astype(np.float64) / 2.0)
  expected = 2.0 * (q - p) * weights[..., None] / weights.sum()
  np.testing.assert_allclose(g_student, expected, rtol=1e-4, atol=1e-6)


def test_nsp_loss_matches_numpy_with_example_mask(rng):
  logits = rng.normal(size=(4, 2)).astype(np.float32)
  labels = np.array([0, 1, 1, 0], np.int32)
  example_mask = np.array([1, 1, 1, 0], np.float32)
  nll = -_np_log_softmax(logits.astype(np.float64))[np.arange(4), labels]
  np.testing.assert_allclose(nsp_loss(logits, labels, example_mask), nll[:3].mean(),
                             rtol=RTOL)
  np.testing.assert_allclose(nsp_loss(logits, labels), nll.mean(), rtol=RTOL)


@pytest.mark.parametrize("alpha,nsp_weight", [(0.0, 1.0), (0.3, 1.0), (1.0, 1.0), (0.5, 0.0)])
def test_pretraining_distill_loss_is_eq3(rng, alpha, nsp_weight):
  student, teacher, labels, weights = _mlm_inputs(rng)
  nsp_logits = rng.normal(size=(2, 2)).astype(np.float32)
  batch = {"masked_lm_ids": labels, "masked_lm_weights": weights,
           "next_sentence_labels": np.array([1, 0], np.int32),
           "example_mask": np.array([1.0, 1.0], np.float32)}
  out = pretraining_distill_loss(student, teacher, nsp_logits, batch, alpha=alpha,
                                 temperature=2.0, nsp_weight=nsp_weight)
  assert set(out) == {"loss", "mlm", "mlm_distill", "nsp"}
  l_m = _np_mlm(student, labels, weights)
  l_md = _np_mlm_distill(student, teacher, weights, 2.0)
  l_n = -_np_log_softmax(nsp_logits.astype(np.float64))[[0, 1], [1, 0]].mean()
  np.testing.assert_allclose(out["mlm"], l_m, rtol=RTOL)
  np.testing.assert_allclose(out["mlm_distill"], l_md, rtol=RTOL)
  np.testing.assert_allclose(out["nsp"], l_n, rtol=RTOL)
  np.testing.assert_allclose(out["nsp"], l_n, rtol=RTOL)  # reported even with weight 0
  np.testing.assert_allclose(out["loss"], alpha * l_m + (1 - alpha) * l_md + nsp_weight * l_n,
                             rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# MiniLM-v2 self-attention relations


def _qkv(rng, batch, seq, heads, size):
  return tuple(rng.normal(size=(batch, seq, heads, size)).astype(np.float32) for _ in range(3))


def test_relation_probs_match_numpy(rng):
  mask = _token_mask(2, 5, [5, 3])
  x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)  # 3 heads x 4 = 12 wide, 4 relation heads
  got = np.asarray(relation_probs(jnp.asarray(x), jnp.asarray(mask), 4))
  assert got.shape == (2, 4, 5, 5)
  np.testing.assert_allclose(got, _np_relations(x, mask, 4), rtol=1e-5, atol=1e-6)
  assert np.all(got[1, :, :, 3:] == 0.0)  # padded keys carry no probability


def test_attention_relation_kl_different_heads_and_widths(rng):
  # Teacher 12 heads x 8 = 96 wide, student 4 heads x 8 = 32 wide; 8 relation heads divide both.
  mask = _token_mask(2, 6, [6, 4])
  teacher = _qkv(rng, 2, 6, 12, 8)
  student = _qkv(rng, 2, 6, 4, 8)
  expected = sum(
      _np_masked_row_mean(_np_kl(_np_relations(t, mask, 8), _np_relations(s, mask, 8)), mask)
      for t, s in zip(teacher, student))
  got = attention_relation_kl(teacher, student, mask, 8)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=ATOL)
  assert expected > 0.1


def test_attention_relation_kl_ignores_padding_and_is_zero_for_identical_inputs(rng):
  mask = _token_mask(2, 5, [5, 3])
  teacher = _qkv(rng, 2, 5, 4, 6)
  student = _qkv(rng, 2, 5, 2, 6)
  base = attention_relation_kl(teacher, student, mask, 4)
  # Padded tokens are masked as keys and dropped as queries: their vectors cannot matter.
  noisy_t = tuple(np.where(mask[:, :, None, None] > 0, t, 50.0 * rng.normal(size=t.shape))
                  .astype(np.float32) for t in teacher)
  noisy_s = tuple(np.where(mask[:, :, None, None] > 0, s, 50.0 * rng.normal(size=s.shape))
                  .astype(np.float32) for s in student)
  np.testing.assert_allclose(attention_relation_kl(noisy_t, noisy_s, mask, 4), base,
                             rtol=1e-5)
  np.testing.assert_allclose(attention_relation_kl(teacher, teacher, mask, 4), 0.0,
                             atol=1e-5)


def test_attention_relation_kl_gradient_only_reaches_the_student(rng):
  mask = _token_mask(2, 4, [4, 2])
  teacher = tuple(map(jnp.asarray, _qkv(rng, 2, 4, 4, 4)))
  student = tuple(map(jnp.asarray, _qkv(rng, 2, 4, 2, 4)))
  g_teacher = _grad(losses.attention_relation_kl, 0, static_argnums=3)(teacher, student, mask, 4)
  g_student = _grad(losses.attention_relation_kl, 1, static_argnums=3)(teacher, student, mask, 4)
  for g in g_teacher:
    np.testing.assert_array_equal(g, 0.0)
  assert all(np.all(np.isfinite(g)) for g in g_student)
  assert all(float(jnp.abs(g).max()) > 0 for g in g_student)


def test_relation_heads_must_divide_the_width(rng):
  mask = _token_mask(1, 3, [3])
  x = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)  # width 12
  with pytest.raises(ValueError, match="not divisible"):
    relation_probs(x, mask, 5)
  with pytest.raises(ValueError, match="relation heads"):
    attention_relation_kl((x, x, x), (x, x, x), mask, 8)


def test_attention_loss_registry():
  assert losses.ATTENTION_LOSSES["kl"] is losses.attention_kl
  assert losses.ATTENTION_LOSSES["relation"] is losses.attention_relation_kl


def test_multi_layer_hidden_mse_matches_numpy_per_block_weights_and_padding(rng):
  """KD-NAS's multi-layer loss: the (weighted) mean over blocks of each block's MSE over real
  tokens and features, against NumPy; padded tokens and zero-weight blocks count for nothing."""
  mask = _token_mask(2, 5, [5, 2])
  teacher = rng.normal(size=(3, 2, 5, 6)).astype(np.float32)
  student = rng.normal(size=(3, 2, 5, 6)).astype(np.float32)
  real = mask.astype(bool)
  per_block = [np.mean((teacher[k][real].astype(np.float64) - student[k][real]) ** 2)
               for k in range(3)]
  loss = jax.jit(losses.multi_layer_hidden_mse)
  np.testing.assert_allclose(loss(teacher, student, mask), np.mean(per_block), rtol=RTOL)
  weights = np.array([1.0, 0.0, 1.0], np.float32)
  np.testing.assert_allclose(loss(teacher, student, mask, weights),
                             (per_block[0] + per_block[2]) / 2, rtol=RTOL)
  moved = student.copy()
  moved[1] += 50.0  # the block without weight
  moved[:, 1, 2:] -= 50.0  # padded tokens
  np.testing.assert_allclose(loss(teacher, moved, mask, weights),
                             (per_block[0] + per_block[2]) / 2, rtol=RTOL)
  grad = jax.jit(jax.grad(losses.multi_layer_hidden_mse, argnums=(0, 1)))(
      teacher, student, mask, weights)
  assert not np.any(np.asarray(grad[0])) and np.any(np.asarray(grad[1][0]))
  assert not np.any(np.asarray(grad[1][1]))
  with pytest.raises(ValueError, match="project the student's states"):
    losses.multi_layer_hidden_mse(teacher, student[..., :4], mask)
  assert losses.LOSSES["multi_layer_hidden_mse"] is losses.multi_layer_hidden_mse
