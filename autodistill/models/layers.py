"""Building blocks shared by the teacher and the student.

Every parameter carries logical axis names (``nn.with_logical_partitioning``) so that
:mod:`autodistill.sharding` can map them onto a device mesh. The names used are:

=============== ==========================================================
``vocab``       vocabulary rows of the word embedding / MLM decoder
``embed``       model width (teacher hidden size, student hidden size)
``embed_out``   output side of a square hidden -> hidden kernel (pooler, MLM transform)
``token_embed`` the student's word-embedding width (``embedding_size``)
``bottleneck``  the student's intra-block width (``bottleneck_size``)
``mlp``         FFN inner width
``heads``       attention heads
``kv``          per-head width
``position``    rows of the position table
``token_type``  rows of the token-type table
``classes``     classifier outputs
=============== ==========================================================
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Callable, Optional, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any

# Initialisers follow BERT: truncated-normal-ish N(0, 0.02) weights, zero biases, unit scales.
_KERNEL_STDDEV = 0.02
_KERNEL_INIT = nn.initializers.normal(stddev=_KERNEL_STDDEV)

ACTIVATION_FNS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    # Hugging Face's "gelu" is the exact erf form; jax.nn.gelu defaults to the tanh form.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
}


def host_init(shapes: Any, rng: jax.Array) -> Any:
  """Random parameters for a tree of shapes, drawn on the host with NumPy.

  The initialisation every module here declares, by parameter name: N(0, 0.02) kernels,
  embedding tables and MobileBERT's untied decoder rows (``_KERNEL_INIT``), zero biases, unit
  norm scales. Each leaf draws from its own stream, seeded by ``rng``'s key words and the leaf's
  path, so a parameter's values do not depend on the rest of the tree (a student's parameters
  are the same inside an elastic envelope or alone).

  Why not the modules' ``init``: run op by op it compiles a random-number program for every new
  parameter shape (most of a small student's set-up time on a CPU), and under ``jax.jit`` the
  threefry calls of a 24-block model take tens of seconds to compile.

  Args:
    shapes: a nested dict of arrays or ``jax.ShapeDtypeStruct``s (e.g. from ``jax.eval_shape``).
    rng: a JAX PRNG key.
  """
  words = [int(w) for w in np.asarray(jax.random.key_data(rng)).ravel()]

  def draw(path: tuple[Any, ...], leaf: Any) -> np.ndarray:
    keys = tuple(getattr(k, "key", k) for k in path)
    dtype = np.dtype(leaf.dtype)
    if keys[-1] == "bias":
      return np.zeros(leaf.shape, dtype)
    if keys[-1] == "scale":
      return np.ones(leaf.shape, dtype)
    if keys[-1] not in ("kernel", "embedding", "decoder_extra"):
      raise ValueError(f"no initialiser known for parameter {'/'.join(map(str, keys))}.")
    seed = np.random.SeedSequence([*words, zlib.crc32("/".join(map(str, keys)).encode())])
    return (np.random.default_rng(seed).standard_normal(leaf.shape, np.float32)
            * np.float32(_KERNEL_STDDEV)).astype(dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def partitioned(init: Callable, axes: Sequence[Optional[str]]) -> Callable:
  return nn.with_logical_partitioning(init, tuple(axes))


@flax.struct.dataclass
class ModelOutput:
  """What every model here returns; distillation reads the per-block fields.

  Attributes:
    last_hidden_state: [batch, seq, hidden] output of the last layer/block.
    pooled_output: [batch, hidden] pooler output (input of the NSP classifier).
    hidden_states: tuple of [batch, seq, hidden]: the embedding output, then every
      layer's/block's output (the feature maps of eq. 2). ``hidden_states[k]`` is block k's output.
    attentions: tuple of [batch, heads, seq, seq] attention probabilities of every layer/block
      (eq. 1), before attention dropout.
    mlm_logits: [batch, seq or num_predictions, vocab] MLM logits, or None for an encoder.
    nsp_logits: [batch, 2] next-sentence logits, or None for an encoder.
  """

  last_hidden_state: Array
  pooled_output: Array
  hidden_states: tuple[Array, ...]
  attentions: tuple[Array, ...]
  mlm_logits: Optional[Array] = None
  nsp_logits: Optional[Array] = None


def dense(features: int | tuple[int, ...], kernel_axes: Sequence[Optional[str]], *,
          name: str, axis: int | tuple[int, ...] = -1, dtype: Dtype = jnp.float32,
          param_dtype: Dtype = jnp.float32) -> nn.DenseGeneral:
  """An ``nn.DenseGeneral`` whose kernel and bias carry logical axis names."""
  features = features if isinstance(features, tuple) else (features,)
  return nn.DenseGeneral(
      features=features,
      axis=axis,
      dtype=dtype,
      param_dtype=param_dtype,
      kernel_init=partitioned(_KERNEL_INIT, kernel_axes),
      bias_init=partitioned(nn.initializers.zeros_init(), tuple(kernel_axes)[-len(features):]),
      name=name)


def embed(num_embeddings: int, features: int, axes: tuple[str, str], *, name: str,
          dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32) -> nn.Embed:
  """An ``nn.Embed`` table with logical axis names."""
  return nn.Embed(num_embeddings=num_embeddings, features=features, dtype=dtype,
                  param_dtype=param_dtype, embedding_init=partitioned(_KERNEL_INIT, axes),
                  name=name)


class NoNorm(nn.Module):
  """MobileBERT's NoNorm: an element-wise affine map ``x * scale + bias`` (Sun et al. 2020)."""

  axis_name: str
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    scale = self.param("scale", partitioned(nn.initializers.ones_init(), (self.axis_name,)),
                       (features,), self.param_dtype)
    bias = self.param("bias", partitioned(nn.initializers.zeros_init(), (self.axis_name,)),
                      (features,), self.param_dtype)
    return (x * scale + bias).astype(self.dtype)


@flax.struct.dataclass
class ElasticArch:
  """Which part of a max-shape (elastic) student one student is: masks and scalars, as data.

  Passed to the student's modules beside the batch, so every student of a space runs the same
  compiled program (:mod:`autodistill.models.elastic` builds it from a StudentConfig). Masks are
  1.0 on the student's features and 0.0 on the padding; the padded parameters are zero.

  Attributes:
    hidden: [max hidden] the student's ``hidden_size`` features.
    bottleneck: [max bottleneck] its ``bottleneck_size`` features.
    heads: [max heads] its attention heads.
    head_dims: [max head size] the features of each of its heads.
    head_scale: () its ``head_size ** -0.5``, the attention's score scale.
    intermediate: [max intermediate] its FFNs' inner features.
    ffns: [max FFNs] its ``num_ffn`` stacked FFNs (a skipped FFN passes its input through).
    last_ffn: [max FFNs] one-hot of its last FFN (whose norm Hugging Face builds with eps 1e-5).
    blocks: [max blocks] its ``num_blocks`` blocks (a skipped block passes its input through).
  """

  hidden: Array
  bottleneck: Array
  heads: Array
  head_dims: Array
  head_scale: Array
  intermediate: Array
  ffns: Array
  last_ffn: Array
  blocks: Array


class MaskedNorm(nn.Module):
  """A LayerNorm or NoNorm over the features a mask selects, zero on the others.

  The elastic student's norm (:class:`ElasticArch`): LayerNorm statistics run over the masked-in
  features only, so the result equals the plain norm of the student's narrower activation; the
  parameters are named and shaped as :func:`make_norm`'s, so one parameter tree serves both.
  """

  kind: str
  axis_name: str
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, eps: Array | float) -> Array:
    features = x.shape[-1]
    scale = self.param("scale", partitioned(nn.initializers.ones_init(), (self.axis_name,)),
                       (features,), self.param_dtype)
    bias = self.param("bias", partitioned(nn.initializers.zeros_init(), (self.axis_name,)),
                      (features,), self.param_dtype)
    mask = mask.astype(jnp.float32)
    if self.kind == "layer_norm":
      x = x.astype(jnp.float32)
      count = jnp.sum(mask)
      # Masked sums as products with the mask, not sums of x * mask: under jax.vmap over 16+
      # masks (the SuperLM scoring many subnets at once), XLA's CPU fusion of the latter
      # returned wrong rows (jax 0.10.2; tests/supernet/test_supernet.py guards it).
      mean = jnp.einsum("...d,d->...", x, mask)[..., None] / count
      mean_sq = jnp.einsum("...d,d->...", jnp.square(x), mask)[..., None] / count
      var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
      x = (x - mean) * jax.lax.rsqrt(var + eps)
    elif self.kind != "no_norm":
      raise ValueError(f"unknown normalization {self.kind!r}; use 'no_norm' or 'layer_norm'.")
    return ((x * scale + bias) * mask).astype(self.dtype)


def make_norm(kind: str, axis_name: str, eps: float, dtype: Dtype, param_dtype: Dtype,
              name: str) -> nn.Module:
  """A LayerNorm or NoNorm whose parameters are named ``scale`` and ``bias`` either way."""
  if kind == "no_norm":
    return NoNorm(axis_name=axis_name, dtype=dtype, param_dtype=param_dtype, name=name)
  if kind == "layer_norm":
    return nn.LayerNorm(
        epsilon=eps, dtype=dtype, param_dtype=param_dtype,
        scale_init=partitioned(nn.initializers.ones_init(), (axis_name,)),
        bias_init=partitioned(nn.initializers.zeros_init(), (axis_name,)), name=name)
  raise ValueError(f"unknown normalization {kind!r}; use 'no_norm' or 'layer_norm'.")


class SelfAttention(nn.Module):
  """Multi-head scaled dot-product attention (Vaswani et al. 2017) with separate q/k/v inputs.

  Separate inputs let the student read queries and keys from a shared bottleneck and values from
  the block input (MobileBERT). Returns the per-head context [batch, seq, heads, head_size] (the
  caller owns the output projection) and the attention probabilities [batch, heads, seq, seq]
  before dropout, which L_MHA (eq. 1) distils.
  """

  num_heads: int
  head_size: int
  query_axis: str
  value_axis: str
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, query_in: Array, key_in: Array, value_in: Array, mask: Array,
               deterministic: bool = True, arch: Optional[ElasticArch] = None
               ) -> tuple[Array, Array]:
    proj = functools.partial(dense, (self.num_heads, self.head_size), dtype=self.dtype,
                             param_dtype=self.param_dtype)
    q = proj((self.query_axis, "heads", "kv"), name="query")(query_in)
    k = proj((self.query_axis, "heads", "kv"), name="key")(key_in)
    v = proj((self.value_axis, "heads", "kv"), name="value")(value_in)
    scale = self.head_size ** -0.5
    if arch is not None:
      # The elastic student's heads and head widths: padded heads attend uniformly over zero
      # values, so they add nothing to the context.
      keep = (arch.heads[:, None] * arch.head_dims[None, :]).astype(q.dtype)
      q, k, v = q * keep, k * keep, v * keep
      scale = arch.head_scale
    # Read by MiniLM-style relation distillation (apply with mutable=["intermediates"]); a no-op
    # otherwise.
    self.sow("intermediates", "qkv", (q, k, v))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    scores = scores * scale
    scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    dropped = nn.Dropout(rate=self.dropout_rate)(probs, deterministic=deterministic)
    context = jnp.einsum("bhqk,bkhd->bqhd", dropped.astype(self.dtype), v)
    return context, probs


def default_inputs(input_ids: Array, token_type_ids: Optional[Array],
                   attention_mask: Optional[Array]) -> tuple[Array, Array]:
  """Fills in all-zero token types and an all-ones mask, as BERT does."""
  if token_type_ids is None:
    token_type_ids = jnp.zeros_like(input_ids)
  if attention_mask is None:
    attention_mask = jnp.ones_like(input_ids)
  return token_type_ids, attention_mask.astype(bool)


def gather_positions(x: Array, positions: Optional[Array]) -> Array:
  """Selects [batch, num_predictions] positions of x [batch, seq, d] before the MLM head.

  Computing vocabulary logits only at masked positions is what BERT's pre-training does; it
  saves a [batch, seq, vocab] matmul when only ``max_predictions_per_seq`` positions count.
  """
  if positions is None:
    return x
  return jnp.take_along_axis(x, positions[..., None].astype(jnp.int32), axis=1)
