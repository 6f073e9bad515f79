"""Architecture types of the teacher (BERT) and the student template.

The student template is the MobileBERT building block of the AutoDistill paper (section 3.2,
Figure 2): a chain of ``num_blocks`` identical blocks, each with an input bottleneck
(hidden_size -> bottleneck_size), a multi-head attention (MHA) block whose output runs at the
bottleneck width, ``num_ffn`` stacked feed-forward networks at that width and an output
bottleneck back to hidden_size. The five searched factors (Table 1) come first; the paper's
name codec ``Model_<hidden>_<bottleneck>_<heads>_<intermediate>_<ffns>`` round-trips through
:meth:`StudentConfig.name` and :meth:`StudentConfig.from_name`.

Defaults reproduce MobileBERT (``Model_512_128_4_512_4``, Sun et al. 2020), which Hugging Face
``transformers.MobileBertConfig`` expresses field for field.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

# Activation names accepted by both our modules and Hugging Face's ACT2FN.
ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "tanh")
NORMALIZATIONS = ("no_norm", "layer_norm")
# Teacher families: BERT, and RoBERTa / XLM-R (BERT's encoder with position ids offset past the
# padding index, one token type and an MLM head without NSP; Liu et al. 2019, Conneau et al. 2020).
TEACHER_TYPES = ("bert", "roberta", "xlm-roberta")

# The five factors of the paper's design space, in the order of the name codec.
FACTORS = ("hidden_size", "bottleneck_size", "num_heads", "intermediate_size", "num_ffn")

# Architectural fields beyond the five factors. They enter an architecture's name as
# ``-field=value`` suffixes when they differ from the defaults, so every architecture a search
# can produce has a unique, parseable name (the paper's names are the all-default case).
_NAME_EXTRAS = (
    "num_blocks",
    "embedding_size",
    "trigram_input",
    "normalization",
    "key_query_shared_bottleneck",
    "use_bottleneck_attention",
    "use_bottleneck",
    "attention_head_size",
    "hidden_act",
    "classifier_activation",
)
_NAME_RE = re.compile(r"^Model_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)((?:-[a-z_]+=[A-Za-z0-9_.]+)*)$")


def _check_positive(owner: str, **values: Any) -> None:
  for field, value in values.items():
    if isinstance(value, bool) or not isinstance(value, int):
      raise ValueError(f"{owner}: {field} must be an integer, got {value!r}.")
    if value <= 0:
      raise ValueError(f"{owner}: {field} must be positive, got {value}.")


def _check_choice(owner: str, field: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{owner}: {field}={value!r} is not supported; choose one of {choices}.")


def _check_rate(owner: str, field: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{owner}: {field} must be in [0, 1), got {value}.")


def _known_fields(cls) -> set[str]:
  return {f.name for f in dataclasses.fields(cls)}


def _reject_unknown(cls, values: Mapping[str, Any]) -> None:
  unknown = sorted(set(values) - _known_fields(cls))
  if unknown:
    raise ValueError(
        f"{cls.__name__}: unknown factor(s) {unknown} = {[values[k] for k in unknown]}; "
        f"known fields are {sorted(_known_fields(cls))}.")


class _ConfigMethods:
  """Construction helpers shared by the architecture types; unknown fields are a ValueError."""

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]):
    """Builds a config from a mapping, rejecting unknown factors with a ValueError."""
    _reject_unknown(cls, values)
    return cls(**values)

  def replace(self, **changes: Any):
    """A copy with ``changes`` applied and validated."""
    _reject_unknown(type(self), changes)
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StudentConfig(_ConfigMethods):
  """An immutable student architecture (paper section 3.2, Table 1).

  Attributes:
    hidden_size: input/output width of every block and input width of the MHA block.
    bottleneck_size: output width of the MHA block; the FFN stack runs at this width
      (MobileBERT's ``intra_bottleneck_size``).
    num_heads: attention heads; must divide ``bottleneck_size``.
    intermediate_size: inner width of every FFN.
    num_ffn: stacked FFNs per block, each two dense layers.
    num_blocks: number of stacked blocks (paper: 24).
    embedding_size: word-embedding width before the embedding transformation (MobileBERT: 128).
    vocab_size, max_position_embeddings, type_vocab_size: input vocabulary and table sizes;
      normally taken from the teacher and its tokenizer.
    trigram_input: concatenate the embeddings of the previous, current and next token
      (MobileBERT) before projecting them to ``hidden_size``.
    normalization: ``"no_norm"`` (MobileBERT's element-wise affine NoNorm) or ``"layer_norm"``.
    key_query_shared_bottleneck: queries and keys come from a second, shared bottleneck of the
      block input and values from the block input itself (MobileBERT). When False, and
      ``use_bottleneck_attention`` is False too, queries, keys and values all read the block input.
    use_bottleneck_attention: queries, keys and values all read the input bottleneck.
    use_bottleneck: the block has its input and output bottlenecks (MobileBERT, the template).
      False: BERT's block (Devlin et al. 2019; transformers' MobileBERT with
      ``use_bottleneck=False``): attention reads the block input and its output projection
      returns to the block width, then the FFN stack, with no dense layer in or out. Needs
      ``bottleneck_size == hidden_size`` and neither bottleneck-attention wiring. AutoDistil's
      students (Xu et al. 2022) are such blocks with one FFN.
    attention_head_size: the width of each attention head; 0 (default) splits
      ``bottleneck_size`` evenly over ``num_heads`` (which must then divide it). A positive value
      decouples the attention width ``num_heads * attention_head_size`` from the block width, as
      AutoDistil's spaces need (10 heads on a 352-wide block).
    hidden_act: FFN and MLM-transform activation (MobileBERT: relu).
    classifier_activation: pooler is dense + tanh (True) or the bare [CLS] vector (False).
    hidden_dropout_prob, attention_dropout_prob: dropout rates used when not deterministic.
    layer_norm_eps: epsilon of the LayerNorms that Hugging Face builds with the configured eps.
  """

  hidden_size: int = 512
  bottleneck_size: int = 128
  num_heads: int = 4
  intermediate_size: int = 512
  num_ffn: int = 4
  num_blocks: int = 24
  embedding_size: int = 128
  vocab_size: int = 30522
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  trigram_input: bool = True
  normalization: str = "no_norm"
  key_query_shared_bottleneck: bool = True
  use_bottleneck_attention: bool = False
  use_bottleneck: bool = True
  attention_head_size: int = 0
  hidden_act: str = "relu"
  classifier_activation: bool = True
  hidden_dropout_prob: float = 0.0
  attention_dropout_prob: float = 0.1
  layer_norm_eps: float = 1e-12

  def __post_init__(self):
    owner = "StudentConfig"
    _check_positive(
        owner, hidden_size=self.hidden_size, bottleneck_size=self.bottleneck_size,
        num_heads=self.num_heads, intermediate_size=self.intermediate_size,
        num_ffn=self.num_ffn, num_blocks=self.num_blocks, embedding_size=self.embedding_size,
        vocab_size=self.vocab_size, max_position_embeddings=self.max_position_embeddings,
        type_vocab_size=self.type_vocab_size)
    if (isinstance(self.attention_head_size, bool) or not isinstance(self.attention_head_size, int)
        or self.attention_head_size < 0):
      raise ValueError(f"{owner}: attention_head_size must be 0 (split bottleneck_size over the "
                       f"heads) or positive, got {self.attention_head_size!r}.")
    if not self.attention_head_size and self.bottleneck_size % self.num_heads:
      raise ValueError(
          f"{owner}: bottleneck_size={self.bottleneck_size} is not divisible by "
          f"num_heads={self.num_heads}; the attention width is split evenly across heads "
          "(or set attention_head_size to decouple the attention width).")
    if self.hidden_size < self.embedding_size:
      raise ValueError(
          f"{owner}: hidden_size={self.hidden_size} is smaller than "
          f"embedding_size={self.embedding_size}; the MLM decoder reuses the word embeddings "
          "for the first embedding_size output features, so use embedding_size <= hidden_size.")
    _check_choice(owner, "normalization", self.normalization, NORMALIZATIONS)
    _check_choice(owner, "hidden_act", self.hidden_act, ACTIVATIONS)
    _check_rate(owner, "hidden_dropout_prob", self.hidden_dropout_prob)
    _check_rate(owner, "attention_dropout_prob", self.attention_dropout_prob)
    for field in ("trigram_input", "key_query_shared_bottleneck", "use_bottleneck_attention",
                  "use_bottleneck", "classifier_activation"):
      if not isinstance(getattr(self, field), bool):
        raise ValueError(f"{owner}: {field} must be a bool, got {getattr(self, field)!r}.")
    if self.use_bottleneck_attention and self.key_query_shared_bottleneck:
      raise ValueError(
          f"{owner}: use_bottleneck_attention=True already feeds queries, keys and values from "
          "the input bottleneck; set key_query_shared_bottleneck=False with it.")

    if not self.use_bottleneck and (self.bottleneck_size != self.hidden_size
                                    or self.key_query_shared_bottleneck
                                    or self.use_bottleneck_attention):
      raise ValueError(
          f"{owner}: use_bottleneck=False (BERT's block) has no bottleneck to read from or "
          f"run at; set bottleneck_size=hidden_size (got {self.bottleneck_size} and "
          f"{self.hidden_size}) and key_query_shared_bottleneck=use_bottleneck_attention=False.")

  @property
  def head_size(self) -> int:
    """The width of each attention head (``attention_head_size``, or the even split)."""
    return self.attention_head_size or self.bottleneck_size // self.num_heads

  @property
  def attention_width(self) -> int:
    """``num_heads * head_size``: the width of the queries, keys and values."""
    return self.num_heads * self.head_size

  @property
  def max_sequence_length(self) -> int:
    """The longest input the position table covers."""
    return self.max_position_embeddings

  @property
  def factors(self) -> dict[str, int]:
    """The five searched factors of Table 1, in name order."""
    return {f: getattr(self, f) for f in FACTORS}

  @property
  def name(self) -> str:
    """The paper's architecture name, e.g. ``Model_512_128_4_512_4`` (section 4.2).

    Architectural fields that differ from the defaults are appended as ``-field=value``, e.g.
    ``Model_256_64_2_384_2-num_blocks=6``, so the name identifies the architecture exactly.
    Vocabulary and table sizes, dropout and epsilon are not part of the name.
    """
    base = "Model_" + "_".join(str(v) for v in self.factors.values())
    default = StudentConfig()
    extras = []
    for field in _NAME_EXTRAS:
      value = getattr(self, field)
      if value != getattr(default, field):
        extras.append(f"-{field}={str(value).lower() if isinstance(value, bool) else value}")
    return base + "".join(extras)

  @classmethod
  def from_name(cls, name: str, **overrides: Any) -> "StudentConfig":
    """Parses an architecture name (see :attr:`name`); ``overrides`` set the unnamed fields.

    Raises:
      ValueError: the name is malformed, names an unknown field, or the architecture is invalid.
    """
    match = _NAME_RE.match(name.strip())
    if not match:
      raise ValueError(
          f"StudentConfig: cannot parse architecture name {name!r}; expected "
          "'Model_<hidden>_<bottleneck>_<heads>_<intermediate>_<num_ffn>' optionally followed "
          "by '-field=value' suffixes, e.g. 'Model_512_128_1_384_4' or "
          "'Model_256_64_2_384_2-num_blocks=6'.")
    values: dict[str, Any] = dict(zip(FACTORS, (int(g) for g in match.groups()[:5])))
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for item in filter(None, match.group(6).split("-")):
      field, raw = item.split("=", 1)
      if field not in _NAME_EXTRAS:
        raise ValueError(
            f"StudentConfig: unknown factor {field!r} (value {raw!r}) in name {name!r}; "
            f"names may carry {list(_NAME_EXTRAS)}.")
      values[field] = _parse_value(field, raw, types[field])
    clash = sorted(set(values) & set(overrides))
    if clash:
      raise ValueError(f"StudentConfig: {clash} are given both in the name {name!r} and as "
                       "keyword overrides; give each once.")
    return cls.from_dict({**values, **overrides})



def _parse_value(field: str, raw: str, type_name: Any) -> Any:
  type_name = getattr(type_name, "__name__", type_name)
  if type_name == "bool":
    if raw not in ("true", "false"):
      raise ValueError(f"StudentConfig: {field}={raw!r} must be 'true' or 'false'.")
    return raw == "true"
  if type_name == "int":
    if not raw.isdigit():
      raise ValueError(f"StudentConfig: {field}={raw!r} must be a positive integer.")
    return int(raw)
  return raw


@dataclasses.dataclass(frozen=True)
class BertConfig(_ConfigMethods):
  """An immutable teacher architecture: BERT's post-LayerNorm encoder (Devlin et al. 2019).

  Field names follow :class:`StudentConfig`; :meth:`from_hf` and :meth:`to_hf` convert to and
  from a Hugging Face ``config.json``. ``model_type`` "roberta" and "xlm-roberta" (one module:
  XLM-R is RoBERTa with another vocabulary) differ from BERT only in the position ids, which
  count non-padding tokens from ``pad_token_id + 1`` (:attr:`position_offset`), and in the MLM
  head, whose activation is always exact GELU; their ``type_vocab_size`` is 1.
  """

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_dropout_prob: float = 0.1
  layer_norm_eps: float = 1e-12
  model_type: str = "bert"
  pad_token_id: int = 0

  def __post_init__(self):
    owner = "BertConfig"
    _check_choice(owner, "model_type", self.model_type, TEACHER_TYPES)
    if self.position_offset >= self.max_position_embeddings:
      raise ValueError(f"{owner}: pad_token_id={self.pad_token_id} leaves no positions of "
                       f"max_position_embeddings={self.max_position_embeddings}.")
    _check_positive(
        owner, vocab_size=self.vocab_size, hidden_size=self.hidden_size,
        num_layers=self.num_layers, num_heads=self.num_heads,
        intermediate_size=self.intermediate_size,
        max_position_embeddings=self.max_position_embeddings,
        type_vocab_size=self.type_vocab_size)
    if self.hidden_size % self.num_heads:
      raise ValueError(f"{owner}: hidden_size={self.hidden_size} is not divisible by "
                       f"num_heads={self.num_heads}.")
    _check_choice(owner, "hidden_act", self.hidden_act, ACTIVATIONS)
    _check_rate(owner, "hidden_dropout_prob", self.hidden_dropout_prob)
    _check_rate(owner, "attention_dropout_prob", self.attention_dropout_prob)

  @property
  def head_size(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def position_offset(self) -> int:
    """Position id of a sequence's first token: 0 for BERT, ``pad_token_id + 1`` for RoBERTa."""
    return 0 if self.model_type == "bert" else self.pad_token_id + 1

  @property
  def max_sequence_length(self) -> int:
    """The longest input the position table covers (RoBERTa: 514 positions, 512 tokens)."""
    return self.max_position_embeddings - self.position_offset

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any]) -> "BertConfig":
    """Reads a Hugging Face BERT, RoBERTa or XLM-RoBERTa ``config.json`` dictionary.

    Raises:
      ValueError: the checkpoint is not an absolute-position encoder we can reproduce.
    """
    model_type = hf.get("model_type", "bert")
    if model_type not in TEACHER_TYPES:
      raise ValueError(f"BertConfig: config.json has model_type={model_type!r}; teachers are "
                       f"imported from {list(TEACHER_TYPES)} checkpoints.")
    position = hf.get("position_embedding_type", "absolute")
    if position != "absolute":
      raise ValueError(f"BertConfig: position_embedding_type={position!r} is not supported; "
                       "the teacher uses learned absolute positions.")
    try:
      return cls(
          vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
          num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
          intermediate_size=hf["intermediate_size"],
          max_position_embeddings=hf.get("max_position_embeddings", 512),
          type_vocab_size=hf.get("type_vocab_size", 2), hidden_act=hf.get("hidden_act", "gelu"),
          hidden_dropout_prob=hf.get("hidden_dropout_prob", 0.1),
          attention_dropout_prob=hf.get("attention_probs_dropout_prob", 0.1),
          layer_norm_eps=hf.get("layer_norm_eps", 1e-12), model_type=model_type,
          pad_token_id=hf.get("pad_token_id", 0 if model_type == "bert" else 1))
    except KeyError as e:
      raise ValueError(f"BertConfig: config.json lacks the required key {e.args[0]!r}.") from None

  def to_hf(self) -> dict[str, Any]:
    """The ``config.json`` of ``BertForPreTraining``, ``RobertaForMaskedLM`` or
    ``XLMRobertaForMaskedLM``."""
    architecture = {"bert": "BertForPreTraining", "roberta": "RobertaForMaskedLM",
                    "xlm-roberta": "XLMRobertaForMaskedLM"}[self.model_type]
    return {
        "architectures": [architecture], "model_type": self.model_type,
        "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
        "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
        "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
        "hidden_dropout_prob": self.hidden_dropout_prob,
        "attention_probs_dropout_prob": self.attention_dropout_prob,
        "max_position_embeddings": self.max_position_embeddings,
        "type_vocab_size": self.type_vocab_size, "layer_norm_eps": self.layer_norm_eps,
        "position_embedding_type": "absolute", "pad_token_id": self.pad_token_id,
    }


# The paper's baseline (Table 2): MobileBERT is the template's default configuration.
MOBILEBERT = StudentConfig()
