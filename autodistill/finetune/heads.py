"""Task heads on any teacher or student encoder (BERT, Devlin et al. 2019, section 4).

* :class:`SequenceClassifier`: dropout on the pooled ``[CLS]`` output, then one dense layer to
  ``num_labels`` logits (classification) or one score (regression, ``num_labels=1``): GLUE's
  single-sentence and sentence-pair tasks, as BERT section 4.1 and Hugging Face's
  ``BertForSequenceClassification`` / ``MobileBertForSequenceClassification``.
* :class:`SpanQA`: one dense layer from every token's final hidden state to a start and an end
  logit (BERT section 4.2, ``*ForQuestionAnswering``); positions outside the attention mask get
  a large negative logit.

Parameters are ``{"encoder": ..., "classifier" | "qa_outputs": ...}``: the encoder subtree is
exactly the ``encoder`` of :class:`~autodistill.models.StudentForPreTraining` /
:class:`~autodistill.models.BertForPreTraining`, so a distilled student, an exported Hugging Face
checkpoint or the teacher drops in (:func:`with_pretrained_encoder`).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from autodistill.finetune.tasks import SPAN_QA, Task
from autodistill.models import layers
from autodistill.models.configs import BertConfig, StudentConfig
from autodistill.models.student import StudentEncoder
from autodistill.models.teacher import BertEncoder

Array = jax.Array
Params = Any
Backbone = BertConfig | StudentConfig
_MASKED_LOGIT = -1e9


def encoder_for(config: Backbone, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                name: str = "encoder") -> nn.Module:
  """The encoder module of a teacher (:class:`BertConfig`) or student (:class:`StudentConfig`)."""
  if isinstance(config, StudentConfig):
    return StudentEncoder(config, dtype=dtype, param_dtype=param_dtype, name=name)
  if isinstance(config, BertConfig):
    return BertEncoder(config, dtype=dtype, param_dtype=param_dtype, name=name)
  raise TypeError(f"expected a BertConfig or StudentConfig, got {type(config).__name__}.")


class SequenceClassifier(nn.Module):
  """Encoder + dropout + dense on the pooled output; returns logits [batch, num_labels]."""

  config: Backbone
  num_labels: int
  dropout: Optional[float] = None  # None: the encoder's hidden_dropout_prob, as Hugging Face
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Optional[Array] = None,
               attention_mask: Optional[Array] = None, *, deterministic: bool = True) -> Array:
    out = encoder_for(self.config, self.dtype, self.param_dtype)(
        input_ids, token_type_ids, attention_mask, deterministic=deterministic)
    rate = self.config.hidden_dropout_prob if self.dropout is None else self.dropout
    pooled = nn.Dropout(rate=rate)(out.pooled_output, deterministic=deterministic)
    logits = layers.dense(self.num_labels, ("embed", "classes"), dtype=self.dtype,
                          param_dtype=self.param_dtype, name="classifier")(pooled)
    return logits.astype(jnp.float32)


class SpanQA(nn.Module):
  """Encoder + a dense start/end layer; returns (start_logits, end_logits), each [batch, seq]."""

  config: Backbone
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Optional[Array] = None,
               attention_mask: Optional[Array] = None, *,
               deterministic: bool = True) -> tuple[Array, Array]:
    out = encoder_for(self.config, self.dtype, self.param_dtype)(
        input_ids, token_type_ids, attention_mask, deterministic=deterministic)
    logits = layers.dense(2, ("embed", "classes"), dtype=self.dtype,
                          param_dtype=self.param_dtype, name="qa_outputs")(
                              out.last_hidden_state).astype(jnp.float32)
    if attention_mask is not None:
      logits = jnp.where(attention_mask[..., None] > 0, logits, _MASKED_LOGIT)
    return logits[..., 0], logits[..., 1]


def head_for(task: Task, config: Backbone, dtype: Any = jnp.float32,
             dropout: Optional[float] = None) -> nn.Module:
  """The head module a task needs on ``config``'s encoder."""
  if task.kind == SPAN_QA:
    return SpanQA(config, dtype=dtype)
  return SequenceClassifier(config, task.num_labels, dropout=dropout, dtype=dtype)


def init_head_params(model: nn.Module, rng: jax.Array, seq_len: int = 8) -> Params:
  """Fresh parameters of a head model (encoder included), as plain arrays."""
  ids = jnp.zeros((1, seq_len), jnp.int32)
  return nn.unbox(model.init(rng, ids, jnp.zeros_like(ids), jnp.ones_like(ids))["params"])


def with_pretrained_encoder(params: Params, encoder: Params) -> Params:
  """``params`` with its ``encoder`` subtree replaced by pre-trained ``encoder`` parameters.

  Raises:
    ValueError: the trees differ (another architecture), naming the first difference.
  """
  fresh = params["encoder"]
  fresh_paths = {jax.tree_util.keystr(p): v.shape
                 for p, v in jax.tree_util.tree_leaves_with_path(fresh)}
  given_paths = {jax.tree_util.keystr(p): getattr(v, "shape", None)
                 for p, v in jax.tree_util.tree_leaves_with_path(encoder)}
  if fresh_paths != given_paths:
    missing = sorted(set(fresh_paths) - set(given_paths))
    extra = sorted(set(given_paths) - set(fresh_paths))
    shape = sorted(k for k in set(fresh_paths) & set(given_paths)
                   if tuple(fresh_paths[k]) != tuple(given_paths[k]))
    raise ValueError(
        "the pre-trained encoder does not fit this architecture: "
        + "; ".join(f"{what} {items[:3]}" for what, items in
                    (("missing", missing), ("unexpected", extra), ("shape differs at", shape))
                    if items) + ". Load the checkpoint with the config it was saved with.")
  return {**params, "encoder": jax.tree.map(jnp.asarray, encoder)}
