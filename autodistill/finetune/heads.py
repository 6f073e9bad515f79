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

Everything that differs between kinds of task lives here too, one :class:`HeadSpec` per kind in
:data:`HEADS`: the head module, how a split is encoded (inputs and targets), the training loss,
how outputs become predictions and how predictions are scored. The fine-tuning loop
(:mod:`autodistill.finetune.finetuning`) reads a task's spec (:func:`head_spec`) and never
branches on its kind.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from autodistill.data.tokenization import Tokenizer
from autodistill.finetune import metrics as metrics_lib, qa
from autodistill.finetune.config import FinetuneConfig
from autodistill.finetune.features import encode_examples
from autodistill.finetune.task_types import CLASSIFICATION, REGRESSION, SPAN_QA, Example, Task
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
  return head_spec(task).make_head(task, config, dtype, dropout)


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


# ---------------------------------------------------------------------------------------------
# What differs between kinds of task


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  """One split of a task as its head reads it.

  Attributes:
    arrays: the model inputs (``input_ids``, ``token_type_ids``, ``attention_mask``) and the
      training targets, one row per model input (a span QA task has a row per context window).
    features: what decoding needs besides the model's outputs: the span QA windows
      (:class:`~autodistill.finetune.qa.QaFeatures`); None for sentence tasks.
  """

  arrays: dict[str, np.ndarray]
  features: Optional[qa.QaFeatures] = None


Outputs = Any  # logits [batch, num_labels], or (start_logits, end_logits) [batch, seq] each
Batch = Mapping[str, jax.Array]
Loss = tuple[jax.Array, dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """How one kind of task is modelled, trained and decoded.

  Attributes:
    make_head: ``make_head(task, backbone_config, dtype, dropout) -> nn.Module``.
    encode: ``encode(examples, tokenizer, config) -> EncodedSplit``: inputs and targets.
    loss: ``loss(outputs, batch) -> (loss, metrics)``: the training loss of the head's outputs
      (training mode) on a batch of :attr:`EncodedSplit.arrays` rows.
    predict: ``predict(outputs, split, config)``: the predictions of a whole split's outputs
      (class ids, scores, or answer texts by question id).
    score: ``score(task, predictions, split) -> {metric: value}``.
    has_classes: whether the outputs are classes, so a majority-class baseline applies.
  """

  make_head: Callable[[Task, Backbone, Any, Optional[float]], nn.Module]
  encode: Callable[[Sequence[Example], Tokenizer, FinetuneConfig], EncodedSplit]
  loss: Callable[[Outputs, Batch], Loss]
  predict: Callable[[Outputs, EncodedSplit, FinetuneConfig], Any]
  score: Callable[[Task, Any, EncodedSplit], dict[str, float]]
  has_classes: bool = False


def _sequence_head(task: Task, config: Backbone, dtype: Any,
                   dropout: Optional[float]) -> nn.Module:
  return SequenceClassifier(config, task.num_labels, dropout=dropout, dtype=dtype)


def _span_head(task: Task, config: Backbone, dtype: Any, dropout: Optional[float]) -> nn.Module:
  del task, dropout  # two outputs per token whatever the task; no dropout before them (BERT)
  return SpanQA(config, dtype=dtype)


def _encode_sentences(examples: Sequence[Example], tokenizer: Tokenizer, config: FinetuneConfig,
                      *, kind: str) -> EncodedSplit:
  """BERT's sentence (pair) inputs; labels as ``kind`` stores them (class ids or scores)."""
  return EncodedSplit(encode_examples(examples, tokenizer, config.seq_len, kind))


def _encode_windows(examples: Sequence[Example], tokenizer: Tokenizer,
                    config: FinetuneConfig) -> EncodedSplit:
  """Question + context windows with the answer's start and end token as targets."""
  features = qa.make_qa_features(examples, tokenizer, seq_len=config.seq_len,
                                 doc_stride=config.doc_stride,
                                 max_query_length=config.max_query_length)
  return EncodedSplit(features.arrays(), features)


def cross_entropy_loss(logits: jax.Array, batch: Batch) -> Loss:
  """Softmax cross-entropy over the classes (BERT section 4.1).

  ``L = -1/N sum_i log softmax(z_i)[y_i]`` for logits ``z_i`` and class ``y_i``
  (``batch["labels"]``) of the ``N`` examples.

  Returns:
    ``L`` and ``{"train_accuracy": 1/N sum_i [argmax z_i == y_i]}``.
  """
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()
  accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32))
  return loss, {"train_accuracy": accuracy}


def squared_error_loss(logits: jax.Array, batch: Batch) -> Loss:
  """Mean squared error of the single output (regression, e.g. STS-B).

  ``L = 1/N sum_i (z_i0 - y_i)^2`` for the head's one output ``z_i0`` and score ``y_i``.
  """
  return jnp.mean((logits[:, 0] - batch["labels"]) ** 2), {}


def span_loss(outputs: tuple[jax.Array, jax.Array], batch: Batch) -> Loss:
  """Mean of the start and end position cross-entropies (BERT section 4.2).

  ``L = 1/2 (CE(s, start) + CE(e, end))``, where ``CE(x, p) = -1/N sum_i log softmax(x_i)[p_i]``
  over the ``N`` windows, ``s``/``e`` the start/end logits over the tokens and ``start``/``end``
  the answer's token positions (``batch["start_positions"]``, ``batch["end_positions"]``).
  """
  start, end = outputs
  ce = optax.softmax_cross_entropy_with_integer_labels
  loss = 0.5 * (ce(start, batch["start_positions"]).mean()
                + ce(end, batch["end_positions"]).mean())
  return loss, {}


def _class_ids(logits: np.ndarray, split: EncodedSplit, config: FinetuneConfig) -> np.ndarray:
  del split, config
  return np.argmax(logits, -1)


def _scores(logits: np.ndarray, split: EncodedSplit, config: FinetuneConfig) -> np.ndarray:
  del split, config
  return logits[:, 0]


def _answers(outputs: tuple[np.ndarray, np.ndarray], split: EncodedSplit,
             config: FinetuneConfig) -> dict[str, str]:
  """The best span of each question over its windows (BERT's run_squad decoding)."""
  start, end = outputs
  return qa.decode_spans(start, end, split.features, n_best=config.n_best,
                         max_answer_length=config.max_answer_length)


def _label_metrics(task: Task, predictions: np.ndarray, split: EncodedSplit) -> dict[str, float]:
  return metrics_lib.compute(task.metrics, predictions, split.arrays["labels"])


def _squad_metrics(task: Task, answers: Mapping[str, str],
                   split: EncodedSplit) -> dict[str, float]:
  del task  # SQuAD's two scores, whatever the task lists
  references = {e.uid: list(e.answers) for e in split.features.examples}
  return metrics_lib.squad_scores(answers, references)


HEADS: dict[str, HeadSpec] = {
    CLASSIFICATION: HeadSpec(
        make_head=_sequence_head,
        encode=functools.partial(_encode_sentences, kind=CLASSIFICATION),
        loss=cross_entropy_loss, predict=_class_ids, score=_label_metrics, has_classes=True),
    REGRESSION: HeadSpec(
        make_head=_sequence_head,
        encode=functools.partial(_encode_sentences, kind=REGRESSION),
        loss=squared_error_loss, predict=_scores, score=_label_metrics),
    SPAN_QA: HeadSpec(
        make_head=_span_head, encode=_encode_windows, loss=span_loss, predict=_answers,
        score=_squad_metrics),
}
"""The :class:`HeadSpec` of each task kind (:data:`~autodistill.finetune.task_types.KINDS`)."""


def head_spec(task: Task) -> HeadSpec:
  """How ``task``'s kind is modelled, trained and decoded (:data:`HEADS`)."""
  return HEADS[task.kind]
