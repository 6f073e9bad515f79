"""The student template of AutoDistill (paper section 3.2, Figure 2) as Flax Linen modules.

Each building block is the MobileBERT block (Sun et al. 2020):

1. an input bottleneck: dense hidden_size -> bottleneck_size + norm (the "layer input");
2. the MHA block: queries/keys from a second shared bottleneck, values from the block input
   (``key_query_shared_bottleneck``; other wirings selectable), attention output projected to
   bottleneck_size, added to the layer input and normalised;
3. ``num_ffn`` stacked FFNs at bottleneck width (dense -> activation -> dense, residual, norm);
4. an output bottleneck: dense bottleneck_size -> hidden_size, added to the block input, norm.

With the default :class:`StudentConfig` this is MobileBERT exactly, and every configuration maps
onto Hugging Face ``MobileBertForPreTraining`` (see :mod:`autodistill.models.hf`).
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from autodistill.models import layers
from autodistill.models.configs import StudentConfig
from autodistill.models.teacher import MlmHead, NspHead, PreTrainingForward

Array = jax.Array

# Hugging Face builds two of MobileBERT's norms with PyTorch's default epsilon (1e-5) instead of
# config.layer_norm_eps: the embedding norm and the last FFN's output norm. We do the same so the
# "layer_norm" variant matches transformers bit for bit; with NoNorm (the default) eps is unused.
_TORCH_DEFAULT_EPS = 1e-5


class StudentBlock(nn.Module):
  """One MobileBERT-style building block; returns (block output, attention probabilities)."""

  config: StudentConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> tuple[Array, Array]:
    cfg = self.config
    dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    norm = functools.partial(layers.make_norm, cfg.normalization, dtype=self.dtype,
                             param_dtype=self.param_dtype)

    def bottleneck(name: str) -> Array:
      h = dense(cfg.bottleneck_size, ("embed", "bottleneck"), name=f"{name}")(x)
      return norm("bottleneck", cfg.layer_norm_eps, name=f"{name}_norm")(h)

    layer_input = bottleneck("bottleneck_input")
    if cfg.use_bottleneck_attention:
      query_in, value_in, query_axis, value_axis = layer_input, layer_input, "bottleneck", "bottleneck"
    elif cfg.key_query_shared_bottleneck:
      query_in, value_in, query_axis, value_axis = bottleneck("bottleneck_attention"), x, "bottleneck", "embed"
    else:
      query_in, value_in, query_axis, value_axis = x, x, "embed", "embed"
    context, probs = layers.SelfAttention(
        num_heads=cfg.num_heads, head_size=cfg.head_size, query_axis=query_axis,
        value_axis=value_axis, dropout_rate=cfg.attention_dropout_prob, dtype=self.dtype,
        param_dtype=self.param_dtype, name="attention")(
            query_in, query_in, value_in, mask, deterministic)
    h = dense(cfg.bottleneck_size, ("heads", "kv", "bottleneck"), axis=(-2, -1),
              name="attention_output")(context)
    h = norm("bottleneck", cfg.layer_norm_eps, name="attention_norm")(h + layer_input)

    act = layers.ACTIVATION_FNS[cfg.hidden_act]
    for j in range(cfg.num_ffn):
      eps = _TORCH_DEFAULT_EPS if j == cfg.num_ffn - 1 else cfg.layer_norm_eps
      inner = act(dense(cfg.intermediate_size, ("bottleneck", "mlp"),
                        name=f"ffn_{j}_intermediate")(h))
      out = dense(cfg.bottleneck_size, ("mlp", "bottleneck"), name=f"ffn_{j}_output")(inner)
      h = norm("bottleneck", eps, name=f"ffn_{j}_norm")(out + h)

    out = dense(cfg.hidden_size, ("bottleneck", "embed"), name="output_bottleneck")(h)
    out = nn.Dropout(rate=cfg.hidden_dropout_prob)(out, deterministic=deterministic)
    out = norm("embed", cfg.layer_norm_eps, name="output_norm")(out + x)
    return out, probs


class StudentEncoder(nn.Module):
  """Embedding layer, ``num_blocks`` :class:`StudentBlock` and the pooler."""

  config: StudentConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Optional[Array] = None,
               attention_mask: Optional[Array] = None, *,
               deterministic: bool = True) -> layers.ModelOutput:
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
    x = layers.make_norm(cfg.normalization, "embed", _TORCH_DEFAULT_EPS, self.dtype,
                         self.param_dtype, name="embeddings_norm")(x)
    x = nn.Dropout(rate=cfg.hidden_dropout_prob)(x, deterministic=deterministic)
    hidden_states, attentions = [x], []
    for i in range(cfg.num_blocks):
      x, probs = StudentBlock(cfg, dtype=self.dtype, param_dtype=self.param_dtype,
                              name=f"block_{i}")(x, mask, deterministic)
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

  def setup(self):
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = StudentEncoder(cfg, **kw)
    # The MLM transform is always a real LayerNorm, as in MobileBERT.
    self.mlm_head = MlmHead(cfg.hidden_act, cfg.layer_norm_eps,
                            extra_rows=cfg.hidden_size - cfg.embedding_size, **kw)
    self.nsp_head = NspHead(**kw)
