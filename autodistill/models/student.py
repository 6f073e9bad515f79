"""The student template of AutoDistill (paper section 3.2, Figure 2) as Flax Linen modules.

Each building block is the MobileBERT block (Sun et al. 2020):

1. an input bottleneck: dense hidden_size -> bottleneck_size + norm (the "layer input");
2. the MHA block: queries/keys from a second shared bottleneck, values from the block input
   (``key_query_shared_bottleneck``; other wirings selectable), attention output projected to
   bottleneck_size, added to the layer input and normalised;
3. ``num_ffn`` stacked FFNs at bottleneck width (dense -> activation -> dense, residual, norm);
4. an output bottleneck: dense bottleneck_size -> hidden_size, added to the block input, norm.

``use_bottleneck=False`` drops steps 1 and 4 and reads queries, keys and values from the block
input: BERT's block, which AutoDistil's students use.

With the default :class:`StudentConfig` this is MobileBERT exactly, and every configuration maps
onto Hugging Face ``MobileBertForPreTraining`` (see :mod:`autodistill.models.hf`).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from autodistill.models import layers
from autodistill.models.configs import StudentConfig
from autodistill.models.teacher import MlmHead, NspHead, PreTrainingForward

Array = jax.Array
Params = Any

# Hugging Face builds two of MobileBERT's norms with PyTorch's default epsilon (1e-5) instead of
# config.layer_norm_eps: the embedding norm and the last FFN's output norm. We do the same so the
# "layer_norm" variant matches transformers bit for bit; with NoNorm (the default) eps is unused.
_TORCH_DEFAULT_EPS = 1e-5


def _attention_shape(config: StudentConfig,
                     attention_shape: Optional[tuple[int, int]]) -> tuple[int, int]:
  return attention_shape or (config.num_heads, config.head_size)


class StudentBlock(nn.Module):
  """One MobileBERT-style building block; returns (block output, attention probabilities).

  With ``arch`` (an :class:`~autodistill.models.layers.ElasticArch`) the block is the elastic,
  max-shape block of :mod:`autodistill.models.elastic`: ``config`` is the envelope,
  ``attention_shape`` its (heads, head size), and the masks pick one student out of it.
  """

  config: StudentConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention_shape: Optional[tuple[int, int]] = None

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool,
               arch: Optional[layers.ElasticArch] = None) -> tuple[Array, Array]:
    return _block_forward(self, x, mask, deterministic, arch)


class _ScanStep(StudentBlock):
  """One :class:`StudentBlock` as the body of ``nn.scan`` (:class:`StudentEncoder`'s
  ``scan_blocks``): same parameters, carry = the hidden state, ``block_on`` scanned over (the
  elastic student's ``arch.blocks``, or None), and the block's output and attention
  probabilities stacked as the scan's outputs."""

  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, block_on: Optional[Array], mask: Array,
               arch: Optional[layers.ElasticArch]) -> tuple[Array, tuple[Array, Array]]:
    out, probs = _block_forward(self, x, mask, self.deterministic, arch)
    if block_on is not None:
      out = jnp.where(block_on > 0, out, x)
    return out, (out, probs)


def _block_forward(self: nn.Module, x: Array, mask: Array, deterministic: bool,
                   arch: Optional[layers.ElasticArch]) -> tuple[Array, Array]:
  """The block's computation, run inside the compact ``__call__`` of :class:`StudentBlock` or
  :class:`_ScanStep` (``self``: either; the submodules it creates are that module's)."""
  cfg = self.config
  dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)

  def norm(axis_name: str, eps: Any, features: Optional[Array], *, name: str) -> Any:
    if arch is None:
      return layers.make_norm(cfg.normalization, axis_name, eps, self.dtype, self.param_dtype,
                              name=name)
    masked = layers.MaskedNorm(cfg.normalization, axis_name, self.dtype, self.param_dtype,
                               name=name)
    return lambda h: masked(h, features, eps)

  bottleneck_mask = None if arch is None else arch.bottleneck

  def bottleneck(name: str) -> Array:
    h = dense(cfg.bottleneck_size, ("embed", "bottleneck"), name=f"{name}")(x)
    return norm("bottleneck", cfg.layer_norm_eps, bottleneck_mask, name=f"{name}_norm")(h)

  # BERT's block (use_bottleneck=False) reads the block input itself, like the last branch below.
  layer_input = bottleneck("bottleneck_input") if cfg.use_bottleneck else x
  if cfg.use_bottleneck_attention:
    query_in, value_in = layer_input, layer_input
    query_axis, value_axis = "bottleneck", "bottleneck"
  elif cfg.key_query_shared_bottleneck:
    query_in, value_in = bottleneck("bottleneck_attention"), x
    query_axis, value_axis = "bottleneck", "embed"
  else:
    query_in, value_in, query_axis, value_axis = x, x, "embed", "embed"
  num_heads, head_size = _attention_shape(cfg, self.attention_shape)
  context, probs = layers.SelfAttention(
      num_heads=num_heads, head_size=head_size, query_axis=query_axis,
      value_axis=value_axis, dropout_rate=cfg.attention_dropout_prob, dtype=self.dtype,
      param_dtype=self.param_dtype, name="attention")(
          query_in, query_in, value_in, mask, deterministic, arch)
  h = dense(cfg.bottleneck_size, ("heads", "kv", "bottleneck"), axis=(-2, -1),
            name="attention_output")(context)
  h = norm("bottleneck", cfg.layer_norm_eps, bottleneck_mask, name="attention_norm")(
      h + layer_input)

  act = layers.ACTIVATION_FNS[cfg.hidden_act]
  for j in range(cfg.num_ffn):
    if arch is None:
      eps = _TORCH_DEFAULT_EPS if j == cfg.num_ffn - 1 else cfg.layer_norm_eps
    else:
      eps = jnp.where(arch.last_ffn[j] > 0, _TORCH_DEFAULT_EPS, cfg.layer_norm_eps)
    inner = act(dense(cfg.intermediate_size, ("bottleneck", "mlp"),
                      name=f"ffn_{j}_intermediate")(h))
    if arch is not None:
      inner = inner * arch.intermediate.astype(inner.dtype)
    out = dense(cfg.bottleneck_size, ("mlp", "bottleneck"), name=f"ffn_{j}_output")(inner)
    out = norm("bottleneck", eps, bottleneck_mask, name=f"ffn_{j}_norm")(out + h)
    h = out if arch is None else jnp.where(arch.ffns[j] > 0, out, h)

  if not cfg.use_bottleneck:
    return h, probs
  out = dense(cfg.hidden_size, ("bottleneck", "embed"), name="output_bottleneck")(h)
  out = nn.Dropout(rate=cfg.hidden_dropout_prob)(out, deterministic=deterministic)
  out = norm("embed", cfg.layer_norm_eps, None if arch is None else arch.hidden,
             name="output_norm")(out + x)
  return out, probs


class StudentEncoder(nn.Module):
  """Embedding layer, ``num_blocks`` :class:`StudentBlock` and the pooler.

  With ``arch``, the elastic encoder (see :class:`StudentBlock`); a block the student lacks
  passes its input through, so ``hidden_states`` repeats the last real block's output.

  ``scan_blocks``: run the blocks under ``nn.scan`` with their parameters stored stacked
  (``encoder/blocks/...``, every leaf with a leading ``num_blocks`` axis, logical axis
  ``"layers"``) instead of as ``encoder/block_0 ... block_{K-1}``: the same computation
  (:func:`stack_blocks` converts the parameters; tested equal), compiled once for any depth, so a
  24-block student's training step compiles in about the time of a 1-block one. Dropout draws
  other masks than the unrolled model's (one key per block from the scan).
  """

  config: StudentConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention_shape: Optional[tuple[int, int]] = None
  scan_blocks: bool = False

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Optional[Array] = None,
               attention_mask: Optional[Array] = None, *, deterministic: bool = True,
               arch: Optional[layers.ElasticArch] = None) -> layers.ModelOutput:
    cfg = self.config
    token_type_ids, mask = layers.default_inputs(input_ids, token_type_ids, attention_mask)
    table = functools.partial(layers.embed, dtype=self.dtype, param_dtype=self.param_dtype)
    x = table(cfg.vocab_size, cfg.embedding_size, ("vocab", "token_embed"),
              name="word_embeddings")(input_ids)
    if cfg.trigram_input:
      # MobileBERT's trigram input: [next token, token, previous token], zero-padded at the ends.
      nxt = jnp.pad(x[:, 1:], ((0, 0), (0, 1), (0, 0)))
      prev = jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0)))
      x = jnp.concatenate([nxt, x, prev], axis=-1)
    if cfg.trigram_input or cfg.embedding_size != cfg.hidden_size:
      x = layers.dense(cfg.hidden_size, ("token_embed", "embed"), dtype=self.dtype,
                       param_dtype=self.param_dtype, name="embedding_transformation")(x)
    positions = jnp.arange(input_ids.shape[-1])[None, :]
    x = (x + table(cfg.max_position_embeddings, cfg.hidden_size, ("position", "embed"),
                   name="position_embeddings")(positions)
         + table(cfg.type_vocab_size, cfg.hidden_size, ("token_type", "embed"),
                 name="token_type_embeddings")(token_type_ids))
    if arch is None:
      x = layers.make_norm(cfg.normalization, "embed", _TORCH_DEFAULT_EPS, self.dtype,
                           self.param_dtype, name="embeddings_norm")(x)
    else:
      x = layers.MaskedNorm(cfg.normalization, "embed", self.dtype, self.param_dtype,
                            name="embeddings_norm")(x, arch.hidden, _TORCH_DEFAULT_EPS)
    x = nn.Dropout(rate=cfg.hidden_dropout_prob)(x, deterministic=deterministic)
    hidden_states, attentions = [x], []
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
              attention_shape=self.attention_shape)
    if self.scan_blocks:
      blocks = nn.scan(_ScanStep, variable_axes={"params": 0, "intermediates": 0},
                       split_rngs={"params": True, "dropout": True},
                       in_axes=(0, nn.broadcast, nn.broadcast), length=cfg.num_blocks,
                       metadata_params={nn.PARTITION_NAME: "layers"})
      x, (outs, probs) = blocks(cfg, deterministic=deterministic, name="blocks", **kw)(
          x, None if arch is None else arch.blocks, mask, arch)
      hidden_states += [outs[i] for i in range(cfg.num_blocks)]
      attentions = [probs[i] for i in range(cfg.num_blocks)]
    for i in range(0 if self.scan_blocks else cfg.num_blocks):
      out, probs = StudentBlock(cfg, name=f"block_{i}", **kw)(x, mask, deterministic, arch)
      x = out if arch is None else jnp.where(arch.blocks[i] > 0, out, x)
      hidden_states.append(x)
      attentions.append(probs)
    pooled = x[:, 0]
    if cfg.classifier_activation:
      pooled = jnp.tanh(layers.dense(cfg.hidden_size, ("embed", "embed_out"), dtype=self.dtype,
                                     param_dtype=self.param_dtype, name="pooler")(pooled))
    return layers.ModelOutput(last_hidden_state=x, pooled_output=pooled,
                              hidden_states=tuple(hidden_states), attentions=tuple(attentions))


class StudentForPreTraining(PreTrainingForward, nn.Module):
  """The student with MLM and NSP heads. Parameters: ``encoder``, ``mlm_head``, ``nsp_head``.

  ``masked_positions`` [batch, num_predictions], when given, restricts the MLM logits to those
  positions; otherwise logits cover every position.
  """

  config: StudentConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention_shape: Optional[tuple[int, int]] = None
  scan_blocks: bool = False

  def setup(self):
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = StudentEncoder(cfg, attention_shape=self.attention_shape,
                                  scan_blocks=self.scan_blocks, **kw)
    # The MLM transform is always a real LayerNorm, as in MobileBERT.
    self.mlm_head = MlmHead(cfg.hidden_act, cfg.layer_norm_eps,
                            extra_rows=cfg.hidden_size - cfg.embedding_size, **kw)
    self.nsp_head = NspHead(**kw)


def _block_names(encoder: Params) -> list[str]:
  names = [k for k in encoder if k.startswith("block_")]
  return sorted(names, key=lambda k: int(k.split("_")[1]))


def stack_blocks(params: Params) -> Params:
  """The parameters of a student (``{"encoder": ..., ...}``) with its ``block_i`` subtrees
  stacked into ``encoder/blocks`` (leading axis: the block), the layout of ``scan_blocks``."""
  encoder = dict(params["encoder"])
  names = _block_names(encoder)
  if not names:
    raise ValueError("stack_blocks: the encoder has no block_i parameters (already stacked?).")
  blocks = [encoder.pop(name) for name in names]
  encoder["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  return {**params, "encoder": encoder}


def unstack_blocks(params: Params) -> Params:
  """The inverse of :func:`stack_blocks`: ``encoder/blocks`` split into ``block_0 ...``."""
  encoder = dict(params["encoder"])
  if "blocks" not in encoder:
    raise ValueError("unstack_blocks: the encoder has no stacked blocks parameters.")
  blocks = encoder.pop("blocks")
  num_blocks = jax.tree.leaves(blocks)[0].shape[0]
  for i in range(num_blocks):
    encoder[f"block_{i}"] = jax.tree.map(lambda x, i=i: x[i], blocks)
  return {**params, "encoder": encoder}
