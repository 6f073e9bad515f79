"""The BERT teacher (Devlin et al. 2019) as Flax Linen modules; RoBERTa and XLM-R too.

A post-LayerNorm Transformer encoder with learned absolute positions and token types, plus the
pre-training heads: an MLM head (dense transform + activation + LayerNorm, decoder tied to the
word embeddings, output bias) and an NSP head (dense + tanh pooler, then a 2-way classifier).
Numerically identical to Hugging Face ``transformers.BertForPreTraining`` with the same weights
(see ``tests/models/test_hf_parity.py``). The teacher returns every layer's output and attention
probabilities so distillation can read them (paper section 3.3.1).

RoBERTa (Liu et al. 2019) and XLM-R (Conneau et al. 2020) are the same encoder with two changes
(``BertConfig.model_type``): position ids count the non-padding tokens from ``pad_token_id + 1``
(:func:`position_ids`), and the MLM head's activation is exact GELU; they match
``transformers.RobertaForMaskedLM`` / ``XLMRobertaForMaskedLM``. Their checkpoints have no NSP
head (nor a pooler): the teacher stage fits them on the frozen encoder like any missing head, and
eq. 3 drops L_N when the fitted head does not beat chance (``distill.teacher.nsp_verdict``).
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from autodistill.models import layers
from autodistill.models.configs import BertConfig

Array = jax.Array


class BertLayer(nn.Module):
  """One post-LayerNorm encoder layer: attention + residual + LN, FFN + residual + LN."""

  config: BertConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> tuple[Array, Array]:
    cfg = self.config
    dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    norm = functools.partial(layers.make_norm, "layer_norm", "embed", cfg.layer_norm_eps,
                             self.dtype, self.param_dtype)
    dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)
    context, probs = layers.SelfAttention(
        num_heads=cfg.num_heads, head_size=cfg.head_size, query_axis="embed",
        value_axis="embed", dropout_rate=cfg.attention_dropout_prob, dtype=self.dtype,
        param_dtype=self.param_dtype, name="attention")(x, x, x, mask, deterministic)
    attended = dense(cfg.hidden_size, ("heads", "kv", "embed"), axis=(-2, -1),
                     name="attention_output")(context)
    attended = dropout(attended, deterministic=deterministic)
    attended = norm(name="attention_norm")(attended + x)
    inner = dense(cfg.intermediate_size, ("embed", "mlp"), name="intermediate")(attended)
    inner = layers.ACTIVATION_FNS[cfg.hidden_act](inner)
    out = dense(cfg.hidden_size, ("mlp", "embed"), name="output")(inner)
    out = dropout(out, deterministic=deterministic)
    out = norm(name="output_norm")(out + attended)
    return out, probs


def position_ids(input_ids: Array, config: BertConfig) -> Array:
  """Position ids [batch, seq]: ``0..seq-1`` for BERT; for RoBERTa, the running count of
  non-padding tokens plus ``pad_token_id`` (so the first token is ``pad_token_id + 1``) and
  ``pad_token_id`` on padding, as ``transformers``' ``create_position_ids_from_input_ids``."""
  if not config.position_offset:
    return jnp.arange(input_ids.shape[-1])[None, :]
  real = (input_ids != config.pad_token_id).astype(jnp.int32)
  return jnp.cumsum(real, axis=-1) * real + config.pad_token_id


class BertEncoder(nn.Module):
  """Embeddings, ``num_layers`` :class:`BertLayer` and the pooler; returns a ModelOutput."""

  config: BertConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Optional[Array] = None,
               attention_mask: Optional[Array] = None, *,
               deterministic: bool = True) -> layers.ModelOutput:
    cfg = self.config
    token_type_ids, mask = layers.default_inputs(input_ids, token_type_ids, attention_mask)
    table = functools.partial(layers.embed, dtype=self.dtype, param_dtype=self.param_dtype)
    positions = position_ids(input_ids, cfg)
    x = (table(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
               name="word_embeddings")(input_ids)
         + table(cfg.max_position_embeddings, cfg.hidden_size, ("position", "embed"),
                 name="position_embeddings")(positions)
         + table(cfg.type_vocab_size, cfg.hidden_size, ("token_type", "embed"),
                 name="token_type_embeddings")(token_type_ids))
    x = layers.make_norm("layer_norm", "embed", cfg.layer_norm_eps, self.dtype, self.param_dtype,
                         name="embeddings_norm")(x)
    x = nn.Dropout(rate=cfg.hidden_dropout_prob)(x, deterministic=deterministic)
    hidden_states, attentions = [x], []
    for i in range(cfg.num_layers):
      x, probs = BertLayer(cfg, dtype=self.dtype, param_dtype=self.param_dtype,
                           name=f"layer_{i}")(x, mask, deterministic)
      hidden_states.append(x)
      attentions.append(probs)
    pooled = jnp.tanh(layers.dense(cfg.hidden_size, ("embed", "embed_out"), dtype=self.dtype,
                                   param_dtype=self.param_dtype, name="pooler")(x[:, 0]))
    return layers.ModelOutput(last_hidden_state=x, pooled_output=pooled,
                              hidden_states=tuple(hidden_states), attentions=tuple(attentions))


class MlmHead(nn.Module):
  """BERT's MLM head: dense + activation + LayerNorm, then logits against the word embeddings.

  ``extra_rows`` > 0 gives MobileBERT's variant, where the hidden width exceeds the embedding width
  and the decoder matrix is the tied embedding (transposed) stacked on an untied
  [extra_rows, vocab] block (Hugging Face ``MobileBertLMPredictionHead``).
  """

  hidden_act: str
  layer_norm_eps: float
  extra_rows: int = 0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, word_embeddings: Array,
               features: Optional[Array] = None) -> Array:
    """``features``: the elastic student's hidden mask (``ElasticArch.hidden``), else None."""
    hidden = x.shape[-1]
    x = layers.dense(hidden, ("embed", "embed_out"), dtype=self.dtype,
                     param_dtype=self.param_dtype, name="transform")(x)
    x = layers.ACTIVATION_FNS[self.hidden_act](x)
    if features is None:
      x = layers.make_norm("layer_norm", "embed", self.layer_norm_eps, self.dtype,
                           self.param_dtype, name="transform_norm")(x)
    else:
      x = layers.MaskedNorm("layer_norm", "embed", self.dtype, self.param_dtype,
                            name="transform_norm")(x, features, self.layer_norm_eps)
    width = word_embeddings.shape[1]
    # Against the embedding as stored ([vocab, width]): no transposed copy of it is made.
    logits = jnp.einsum("...e,ve->...v", x[..., :width], word_embeddings.astype(self.dtype))
    if self.extra_rows:
      extra = self.param("decoder_extra",
                         layers.partitioned(nn.initializers.normal(0.02), ("embed", "vocab")),
                         (self.extra_rows, word_embeddings.shape[0]), self.param_dtype)
      # Two products summed rather than one against the stacked [hidden, vocab] decoder: the
      # stacking copies the vocabulary-sized matrix at every call (and again in the backward
      # pass), which made a small student's MLM head twice as slow.
      logits = logits + x[..., width:] @ extra.astype(self.dtype)
    bias = self.param("bias", layers.partitioned(nn.initializers.zeros_init(), ("vocab",)),
                      (word_embeddings.shape[0],), self.param_dtype)
    return logits + bias.astype(self.dtype)


class NspHead(nn.Module):
  """The next-sentence classifier on the pooled output."""

  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pooled: Array) -> Array:
    return layers.dense(2, ("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="classifier")(pooled)


class PreTrainingForward:
  """The forward pass shared by the teacher and the student with heads (mixed into both)."""

  def __call__(self, input_ids: Array, token_type_ids: Optional[Array] = None,
               attention_mask: Optional[Array] = None, *,
               masked_positions: Optional[Array] = None, deterministic: bool = True,
               arch: Optional[layers.ElasticArch] = None) -> layers.ModelOutput:
    """``arch``: the student to run of an elastic student (``models.elastic``); None otherwise."""
    elastic = {} if arch is None else {"arch": arch}
    out = self.encoder(input_ids, token_type_ids, attention_mask, deterministic=deterministic,
                       **elastic)
    word_embeddings = nn.unbox(self.encoder.variables["params"]["word_embeddings"]["embedding"])
    mlm = self.mlm_head(layers.gather_positions(out.last_hidden_state, masked_positions),
                        word_embeddings, None if arch is None else arch.hidden)
    return out.replace(mlm_logits=mlm, nsp_logits=self.nsp_head(out.pooled_output))


class BertForPreTraining(PreTrainingForward, nn.Module):
  """The teacher with MLM and NSP heads. Parameters: ``encoder``, ``mlm_head``, ``nsp_head``.

  ``masked_positions`` [batch, num_predictions], when given, restricts the MLM logits to those
  positions (BERT pre-training); otherwise logits cover every position.
  """

  config: BertConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = BertEncoder(self.config, **kw)
    # RoBERTa's LM head applies exact GELU whatever the encoder's activation.
    self.mlm_head = MlmHead(self.config.hidden_act if self.config.model_type == "bert" else "gelu",
                            self.config.layer_norm_eps, **kw)
    self.nsp_head = NspHead(**kw)

