"""Distillation losses of AutoDistill (paper section 3.3.1, eqs. 1-3), MiniLM relations and
KD-NAS's multi-layer hidden states (:data:`LOSSES` names them all).

Every loss is a small pure function of arrays. Masks are explicit: ``token_mask`` [batch, seq]
is 1 on real tokens and 0 on padding, ``weights`` [batch, predictions] is 1 on real masked-LM
predictions, ``example_mask`` [batch] is 1 on real examples (the pipeline pads a final partial
batch with masked-out rows). Padding never contributes to a loss: padded query rows are dropped
from the averages, and padded keys carry zero probability in both distributions.

All reductions run in float32 whatever the compute dtype. Teacher inputs are wrapped in
``jax.lax.stop_gradient`` here as well as in the caller, so no loss can leak a gradient into
the teacher.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Probabilities below this are treated as this when taking the student's log: the student's
# softmax can underflow to exactly 0 on a masked key, where the teacher's probability is also 0.
_LOG_FLOOR = 1e-30


def _safe_mean(total: Array, count: Array) -> Array:
  return total / jnp.maximum(count, 1.0)


def _kl_rows(p: Array, q: Array) -> Array:
  """KL(p || q) over the last axis, with 0 log 0 = 0."""
  p = p.astype(jnp.float32)
  log_q = jnp.log(jnp.maximum(q.astype(jnp.float32), _LOG_FLOOR))
  return jnp.sum(jax.scipy.special.xlogy(p, p) - p * log_q, axis=-1)


def group_heads(probs: Array, num_groups: int) -> Array:
  """Averages attention maps [batch, heads, S, S] over ``num_groups`` contiguous head groups.

  A mean of attention distributions is itself a distribution, so grouped maps can be compared
  with KL. With ``num_groups`` = 1 this is the head-averaged map.
  """
  b, h, s, t = probs.shape
  if h % num_groups:
    raise ValueError(f"cannot group {h} attention heads into {num_groups} groups.")
  return probs.reshape(b, num_groups, h // num_groups, s, t).mean(axis=2)


def match_heads(teacher_probs: Array, student_probs: Array) -> tuple[Array, Array]:
  """Maps teacher and student attention maps onto a common number of heads.

  * equal head counts: unchanged (eq. 1 as written);
  * one count divides the other: the side with more heads is averaged over contiguous groups,
    so each compared map is a mixture of the heads it stands for (e.g. a 12-head teacher and a
    4-head student compare 4 maps, each the mean of 3 teacher heads);
  * otherwise: both sides are averaged over all heads (one head-averaged map each).
  """
  ht, hs = teacher_probs.shape[1], student_probs.shape[1]
  if ht == hs:
    return teacher_probs, student_probs
  if ht % hs == 0:
    return group_heads(teacher_probs, hs), student_probs
  if hs % ht == 0:
    return teacher_probs, group_heads(student_probs, ht)
  return group_heads(teacher_probs, 1), group_heads(student_probs, 1)


def attention_kl(teacher_probs: Array, student_probs: Array, token_mask: Array) -> Array:
  """Eq. 1, L_MHA^k = 1/(S H) sum_s sum_h KL(a^T_{s,h} || a^S_{s,h}), for one block.

  Args:
    teacher_probs: [batch, teacher heads, S, S] teacher attention probabilities of the layer
      mapped to this block.
    student_probs: [batch, student heads, S, S] the block's attention probabilities.
    token_mask: [batch, S], 1 on real tokens.

  Returns:
    The KL averaged over real query positions, heads and the batch. Head counts that differ are
    matched by :func:`match_heads`.
  """
  teacher_probs, student_probs = match_heads(jax.lax.stop_gradient(teacher_probs), student_probs)
  kl = _kl_rows(teacher_probs, student_probs)  # [batch, heads, S]
  rows = token_mask.astype(jnp.float32)[:, None, :] * jnp.ones_like(kl)
  return _safe_mean(jnp.sum(kl * rows), jnp.sum(rows))


def head_groups(teacher_heads: int, student_heads: int, max_student_heads: int,
                max_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """:func:`match_heads` as data: averaging matrices for :func:`grouped_attention_kl`.

  Returns ``(teacher_groups [max_groups, teacher_heads], student_groups [max_groups,
  max_student_heads], groups [max_groups])``: row j of each matrix averages the heads that
  :func:`match_heads` puts in compared map j; ``groups`` is 1 on the maps compared. Padded student
  heads (beyond ``student_heads``) get zero weight. ``max_groups`` is at least
  ``min(teacher_heads, max_student_heads)``, the most maps any student compares.
  """
  ht, hs = teacher_heads, student_heads
  count = ht if ht == hs else hs if ht % hs == 0 else ht if hs % ht == 0 else 1
  if count > max_groups or hs > max_student_heads:
    raise ValueError(f"{hs} student heads against {ht} teacher heads compare {count} maps; "
                     f"the matrices hold {max_groups} maps of {max_student_heads} heads.")

  def averaging(heads: int, width: int) -> np.ndarray:
    matrix = np.zeros((max_groups, width), np.float32)
    per = heads // count
    for j in range(count):
      matrix[j, j * per:(j + 1) * per] = 1.0 / per
    return matrix

  groups = (np.arange(max_groups) < count).astype(np.float32)
  return averaging(ht, ht), averaging(hs, max_student_heads), groups


def grouped_attention_kl(teacher_probs: Array, student_probs: Array, token_mask: Array,
                         teacher_groups: Array, student_groups: Array, groups: Array) -> Array:
  """Eq. 1 with the heads matched by data (:func:`head_groups`), for the elastic student.

  Equals :func:`attention_kl` for the student the matrices describe: each side's maps are
  averaged into the compared groups (a mean of distributions is a distribution), and the KL is
  averaged over real query positions, the ``groups`` compared and the batch.
  """
  t = jnp.einsum("gh,bhqk->bgqk", teacher_groups, jax.lax.stop_gradient(teacher_probs))
  st = jnp.einsum("gh,bhqk->bgqk", student_groups, student_probs.astype(jnp.float32))
  kl = _kl_rows(t, st)  # [batch, groups, S]
  rows = token_mask.astype(jnp.float32)[:, None, :] * groups.astype(jnp.float32)[None, :, None]
  return _safe_mean(jnp.sum(kl * rows), jnp.sum(rows))


def feature_map_mse(teacher_features: Array, student_features: Array, token_mask: Array) -> Array:
  """Eq. 2, L_FM^k = 1/(S N) sum_s sum_i (f^T_{s,i} - f^S_{s,i})^2, for one block.

  ``student_features`` must already have the teacher's width N: where the widths differ, the
  caller applies the learned projection of section 3.3.2 (:class:`FeatureProjections`) first.
  The mean runs over real positions, features and the batch.
  """
  if teacher_features.shape != student_features.shape:
    raise ValueError(f"feature maps differ in shape: teacher {teacher_features.shape}, student "
                     f"{student_features.shape}; project the student's features to the "
                     "teacher's width first (section 3.3.2).")
  diff = (jax.lax.stop_gradient(teacher_features).astype(jnp.float32)
          - student_features.astype(jnp.float32))
  mask = token_mask.astype(jnp.float32)
  return _safe_mean(jnp.sum(jnp.square(diff) * mask[..., None]),
                    jnp.sum(mask) * diff.shape[-1])


def mlm_token_losses(logits: Array, labels: Array) -> Array:
  """[batch, predictions] cross-entropy of each masked-LM prediction (padding included)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def mlm_loss(logits: Array, labels: Array, weights: Array) -> Array:
  """L_M: cross-entropy of the masked-LM predictions, averaged over real predictions.

  Args:
    logits: [batch, predictions, vocab] (logits at the masked positions).
    labels: [batch, predictions] original token ids.
    weights: [batch, predictions], 1 on real predictions.
  """
  nll = mlm_token_losses(logits, labels)
  w = weights.astype(jnp.float32)
  return _safe_mean(jnp.sum(nll * w), jnp.sum(w))


def mlm_distill_loss(student_logits: Array, teacher_logits: Array, weights: Array,
                     temperature: float = 1.0) -> Array:
  """L_MD: KL(softmax(z^T/τ) || softmax(z^S/τ)) · τ² at the masked positions (Hinton et al.).

  The τ² factor keeps gradient magnitudes comparable across temperatures. Averaged over real
  predictions.
  """
  t = jnp.float32(temperature)
  p = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / t, axis=-1)
  log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  kl = jnp.sum(jax.scipy.special.xlogy(p, p) - p * log_q, axis=-1)
  w = weights.astype(jnp.float32)
  return _safe_mean(jnp.sum(kl * w), jnp.sum(w)) * t * t


def nsp_loss(logits: Array, labels: Array, example_mask: Optional[Array] = None) -> Array:
  """L_N: next-sentence-prediction cross-entropy, averaged over real examples."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  w = jnp.ones_like(nll) if example_mask is None else example_mask.astype(jnp.float32)
  return _safe_mean(jnp.sum(nll * w), jnp.sum(w))


def pretraining_distill_loss(student_mlm_logits: Array, teacher_mlm_logits: Array,
                             student_nsp_logits: Array, batch: dict[str, Array], *,
                             alpha: float, temperature: float = 1.0,
                             nsp_weight: float = 1.0) -> dict[str, Array]:
  """Eq. 3, L_D = α·L_M + (1 − α)·L_MD + w_N·L_N, on the masked positions (the paper: w_N = 1).

  Args:
    student_mlm_logits, teacher_mlm_logits: [batch, predictions, vocab] at
      ``batch["masked_lm_positions"]``.
    student_nsp_logits: [batch, 2].
    batch: the pipeline's features (``masked_lm_ids``, ``masked_lm_weights``,
      ``next_sentence_labels``, ``example_mask``).
    alpha: weight of the hard MLM loss, in [0, 1].
    temperature: softmax temperature of L_MD.
    nsp_weight: w_N; 0 drops next-sentence prediction from the objective (``"nsp"`` is still
      reported), for a teacher that does not predict it better than chance.

  Returns:
    ``{"loss": L_D, "mlm": L_M, "mlm_distill": L_MD, "nsp": L_N}``.
  """
  weights = batch["masked_lm_weights"]
  terms = {
      "mlm": mlm_loss(student_mlm_logits, batch["masked_lm_ids"], weights),
      "mlm_distill": mlm_distill_loss(student_mlm_logits, teacher_mlm_logits, weights,
                                      temperature),
      "nsp": nsp_loss(student_nsp_logits, batch["next_sentence_labels"],
                      batch.get("example_mask")),
  }
  terms["loss"] = (alpha * terms["mlm"] + (1.0 - alpha) * terms["mlm_distill"]
                   + nsp_weight * terms["nsp"])
  return terms


def relation_probs(x: Array, token_mask: Array, num_relation_heads: int) -> Array:
  """MiniLM-v2 self-attention relations of one of Q, K or V.

  ``x`` [batch, S, heads, head size] is concatenated over heads to [batch, S, A] and re-split
  into ``num_relation_heads`` relation heads of width A / R; the relation of head r is
  softmax(x_r x_r^T / sqrt(A / R)) over real keys. The relation-head count is independent of the
  model's attention-head count, which is what lets a teacher and a student with different head
  counts (and widths) be compared.
  """
  b, s = x.shape[:2]
  flat = x.reshape(b, s, -1).astype(jnp.float32)
  width = flat.shape[-1]
  if width % num_relation_heads:
    raise ValueError(f"attention width {width} is not divisible by {num_relation_heads} "
                     "relation heads; choose a relation-head count that divides both the "
                     "teacher's and the student's attention widths.")
  d = width // num_relation_heads
  heads = flat.reshape(b, s, num_relation_heads, d).transpose(0, 2, 1, 3)  # [b, R, S, d]
  scores = jnp.einsum("brsd,brtd->brst", heads, heads) / jnp.sqrt(jnp.float32(d))
  scores = jnp.where(token_mask.astype(bool)[:, None, None, :], scores,
                     jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(scores, axis=-1)


def attention_relation_kl(teacher_qkv: tuple[Array, Array, Array],
                          student_qkv: tuple[Array, Array, Array], token_mask: Array,
                          num_relation_heads: int) -> Array:
  """MiniLM-v2 self-attention relation distillation (Wang et al. 2021), used by AutoDistil.

  Sum over the Q-Q, K-K and V-V relations of KL(teacher relation || student relation), each
  averaged over real query positions, relation heads and the batch. A selectable alternative to
  eq. 1 (``attention_loss="relation"``) when teacher and student heads do not line up.

  Args:
    teacher_qkv, student_qkv: (query, key, value), each [batch, S, heads, head size].
    token_mask: [batch, S].
    num_relation_heads: relation heads R (MiniLM-v2 uses 12 for base-size, 16 for large).
  """
  mask = token_mask.astype(jnp.float32)
  total = jnp.float32(0.0)
  for t, st in zip(teacher_qkv, student_qkv):
    pt = relation_probs(jax.lax.stop_gradient(t), token_mask, num_relation_heads)
    ps = relation_probs(st, token_mask, num_relation_heads)
    kl = _kl_rows(pt, ps)  # [b, R, S]
    rows = mask[:, None, :] * jnp.ones_like(kl)
    total = total + _safe_mean(jnp.sum(kl * rows), jnp.sum(rows))
  return total


def relation_assignment(num_heads: int, head_size: int, num_relation_heads: int,
                        max_heads: Optional[int] = None,
                        max_head_size: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
  """Which relation head each feature of a (padded) attention width belongs to.

  MiniLM-v2 concatenates the heads' queries (keys, values) to one vector of width
  A = ``num_heads * head_size`` and splits it into R equal relation heads. Here feature c of
  that vector (head ``c // head_size``, dimension ``c % head_size``) goes to relation head
  ``floor(c * R / A)``: the equal split when R divides A, and near-equal contiguous chunks when
  it does not (our generalisation, needed for students whose widths share no divisor with the
  teacher's, as in AutoDistil's spaces). In an elastic model the vector is laid out as
  ``max_heads x max_head_size`` with the student's heads and dimensions leading; the padding
  belongs to no relation head.

  Returns:
    (assignment [max_heads * max_head_size, R] of 0/1, width [R] of each relation head).

  Raises:
    ValueError: a relation head would be empty (R > A).
  """
  max_heads, max_head_size = max_heads or num_heads, max_head_size or head_size
  width = num_heads * head_size
  if not 1 <= num_relation_heads <= width:
    raise ValueError(f"{num_relation_heads} relation heads do not fit an attention width of "
                     f"{width}; use between 1 and {width}.")
  assignment = np.zeros((max_heads, max_head_size, num_relation_heads), np.float32)
  c = np.arange(width)
  assignment[c // head_size, c % head_size, c * num_relation_heads // width] = 1.0
  assignment = assignment.reshape(max_heads * max_head_size, num_relation_heads)
  return assignment, assignment.sum(axis=0)


def assigned_relation_probs(x: Array, token_mask: Array, assignment: Array,
                            widths: Array) -> Array:
  """:func:`relation_probs` with the relation heads given by ``assignment``
  (:func:`relation_assignment`): softmax(x_r x_r^T / sqrt(width_r)) over real keys, where x_r
  is the features of relation head r. Padding features (no relation head) add nothing.

  Args:
    x: [batch, S, heads, head size] queries, keys or values.
    token_mask: [batch, S].
    assignment: [heads * head size, R].
    widths: [R].

  Returns:
    [batch, R, S, S] relation probabilities.
  """
  b, s = x.shape[:2]
  flat = x.reshape(b, s, -1).astype(jnp.float32)
  scores = jnp.einsum("bsa,bta,ar->brst", flat, flat, assignment.astype(jnp.float32))
  scores = scores / jnp.sqrt(widths.astype(jnp.float32))[None, :, None, None]
  scores = jnp.where(token_mask.astype(bool)[:, None, None, :], scores,
                     jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(scores, axis=-1)


def assigned_relation_kl(teacher_qkv: tuple[Array, Array, Array],
                         student_qkv: tuple[Array, Array, Array], token_mask: Array,
                         teacher_heads: tuple[Array, Array],
                         student_heads: tuple[Array, Array]) -> Array:
  """:func:`attention_relation_kl` with each side's relation heads given as (assignment,
  widths) by :func:`relation_assignment`; equal to it where R divides both widths and nothing
  is padded (``tests/distill/test_losses.py``). AutoDistil's SuperLM loss, one subnet at a time
  in the shared, padded weights."""
  mask = token_mask.astype(jnp.float32)
  total = jnp.float32(0.0)
  for t, st in zip(teacher_qkv, student_qkv):
    pt = assigned_relation_probs(jax.lax.stop_gradient(t), token_mask, *teacher_heads)
    ps = assigned_relation_probs(st, token_mask, *student_heads)
    kl = _kl_rows(pt, ps)  # [b, R, S]
    rows = mask[:, None, :] * jnp.ones_like(kl)
    total = total + _safe_mean(jnp.sum(kl * rows), jnp.sum(rows))
  return total


def multi_layer_hidden_mse(teacher_states: Array, student_states: Array, token_mask: Array,
                           block_weights: Optional[Array] = None) -> Array:
  """KD-NAS's multi-layer hidden-state distillation (Trivedi et al. 2023), as we read it.

  The paper's abstract names a "multi-layer hidden state distillation process" and no formula;
  ours (in the TinyBERT/MiniLM-v1 line it builds on) matches *every* student layer at once to its
  teacher layer: the mean over student blocks k of eq. 2's feature-map MSE,
  L_HS = 1/K sum_k L_FM(h^T_{m(k)}, W_k h^S_k), where m is the layer mapping (uniform by default)
  and W_k the learned projection of block k where the widths differ (applied by the caller).
  Unlike progressive transfer, all blocks train together in one phase.

  Args:
    teacher_states: [K, batch, S, N] the teacher's hidden state m(k) for each student block k.
    student_states: [K, batch, S, N] each student block's output, in the teacher's width N.
    token_mask: [batch, S], 1 on real tokens.
    block_weights: [K] 1 for the blocks that count (an elastic student's own blocks), None: all.

  Returns:
    The scalar loss (float32).
  """
  if teacher_states.shape != student_states.shape:
    raise ValueError(f"hidden states differ in shape: teacher {teacher_states.shape}, student "
                     f"{student_states.shape}; pick the teacher layer of every student block "
                     "and project the student's states to the teacher's width first.")
  per_block = jax.vmap(feature_map_mse, in_axes=(0, 0, None))(teacher_states, student_states,
                                                               token_mask)
  if block_weights is None:
    return jnp.mean(per_block)
  w = block_weights.astype(jnp.float32)
  return _safe_mean(jnp.sum(per_block * w), jnp.sum(w))


# Attention-transfer losses by name (the config's ``attention_loss``).
ATTENTION_LOSSES: dict[str, Callable[..., Array]] = {
    "kl": attention_kl,
    "relation": attention_relation_kl,
}

# Every distillation loss by name: eqs. 1-3 of AutoDistill, MiniLM-v2's relations (AutoDistil),
# KD-NAS's multi-layer hidden states.
LOSSES: dict[str, Callable[..., Array]] = {
    "attention_kl": attention_kl,                      # eq. 1
    "feature_map_mse": feature_map_mse,                # eq. 2
    "pretraining_distill": pretraining_distill_loss,   # eq. 3
    "attention_relation_kl": attention_relation_kl,    # MiniLM-v2
    "assigned_relation_kl": assigned_relation_kl,      # MiniLM-v2 in a SuperLM (AutoDistil)
    "multi_layer_hidden_mse": multi_layer_hidden_mse,  # KD-NAS
}
