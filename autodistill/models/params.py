"""Parameter counts: analytic (from an architecture) and measured (from a parameter tree).

Both give the same per-component breakdown, so a mismatch points at the component that differs.
The search uses the analytic count as a free objective/constraint (no model is built); the
summary is what users print to see where a student's parameters go.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from autodistill.models.configs import BertConfig, StudentConfig

# Breakdown keys, in display order.
COMPONENTS = ("embeddings", "bottlenecks", "attention", "ffn", "pooler", "mlm_head", "nsp_head")

_EMBEDDING_PARAMS = ("word_embeddings", "position_embeddings", "token_type_embeddings",
                     "embeddings_norm", "embedding_transformation")


def _dense(n_in: int, n_out: int) -> int:
  return n_in * n_out + n_out


def analytic_breakdown(config: BertConfig | StudentConfig, heads: bool = True) -> dict[str, int]:
  """Parameters per component of an architecture, computed from its sizes alone.

  Args:
    config: a teacher or student architecture.
    heads: include the MLM and NSP heads (and so count like ``*ForPreTraining``).
  """
  if isinstance(config, StudentConfig):
    counts = _student_breakdown(config)
  elif isinstance(config, BertConfig):
    counts = _bert_breakdown(config)
  else:
    raise TypeError(f"expected a BertConfig or StudentConfig, got {type(config).__name__}")
  if not heads:
    counts["mlm_head"] = counts["nsp_head"] = 0
  return counts


def _student_breakdown(c: StudentConfig) -> dict[str, int]:
  h, b, e, v = c.hidden_size, c.bottleneck_size, c.embedding_size, c.vocab_size
  embeddings = v * e + (c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
  if c.trigram_input:
    embeddings += _dense(3 * e, h)
  elif e != h:
    embeddings += _dense(e, h)
  # Input bottleneck (+ the shared query/key bottleneck), each a dense layer and a norm.
  bottlenecks = (_dense(h, b) + 2 * b) * (2 if c.key_query_shared_bottleneck else 1)
  bottlenecks += _dense(b, h) + 2 * h  # output bottleneck and its norm
  if not c.use_bottleneck:
    bottlenecks = 0
  query_in = b if (c.use_bottleneck_attention or c.key_query_shared_bottleneck) else h
  value_in = b if c.use_bottleneck_attention else h
  a = c.attention_width
  attention = 2 * _dense(query_in, a) + _dense(value_in, a) + _dense(a, b) + 2 * b
  ffn = c.num_ffn * (_dense(b, c.intermediate_size) + _dense(c.intermediate_size, b) + 2 * b)
  return {
      "embeddings": embeddings,
      "bottlenecks": c.num_blocks * bottlenecks,
      "attention": c.num_blocks * attention,
      "ffn": c.num_blocks * ffn,
      "pooler": _dense(h, h) if c.classifier_activation else 0,
      "mlm_head": _dense(h, h) + 2 * h + (h - e) * v + v,
      "nsp_head": _dense(h, 2),
  }


def _bert_breakdown(c: BertConfig) -> dict[str, int]:
  h, v = c.hidden_size, c.vocab_size
  return {
      "embeddings": (v + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h,
      "bottlenecks": 0,
      "attention": c.num_layers * (4 * _dense(h, h) + 2 * h),
      "ffn": c.num_layers * (_dense(h, c.intermediate_size) + _dense(c.intermediate_size, h)
                             + 2 * h),
      "pooler": _dense(h, h),
      "mlm_head": _dense(h, h) + 2 * h + v,
      "nsp_head": _dense(h, 2),
  }


def analytic_param_count(config: BertConfig | StudentConfig, heads: bool = True) -> int:
  """Total parameters of an architecture (tied decoder weights counted once, as in PyTorch)."""
  return sum(analytic_breakdown(config, heads).values())


def _component(path: tuple[str, ...]) -> str:
  top = path[0]
  if top in ("mlm_head", "nsp_head"):
    return top
  if top != "encoder":
    raise ValueError(f"unexpected top-level parameter {'/'.join(path)}; expected encoder, "
                     "mlm_head or nsp_head.")
  name = path[1]
  if name in _EMBEDDING_PARAMS:
    return "embeddings"
  if name == "pooler":
    return "pooler"
  part = path[2]
  if part.startswith("bottleneck_") or (
      name.startswith("block_") and part in ("output_bottleneck", "output_norm")):
    return "bottlenecks"
  if part.startswith("attention"):
    return "attention"
  return "ffn"  # ffn_*, intermediate, output, output_norm (teacher)


def param_breakdown(params: Mapping[str, Any]) -> dict[str, int]:
  """Parameters per component of a parameter tree (same keys as :func:`analytic_breakdown`)."""
  counts = dict.fromkeys(COMPONENTS, 0)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = tuple(str(getattr(k, "key", k)) for k in path)
    counts[_component(keys)] += _size(leaf)
  return counts


def _size(leaf: Any) -> int:
  # ``.shape`` also covers jax.ShapeDtypeStruct, so abstract trees from eval_shape count too.
  return int(np.prod(getattr(leaf, "shape", np.shape(leaf))))


def count_params(params: Any) -> int:
  """Total number of parameters in a pytree (arrays or ``jax.eval_shape`` structs)."""
  return sum(_size(leaf) for leaf in jax.tree_util.tree_leaves(params))


def summary(config: BertConfig | StudentConfig, params: Mapping[str, Any] | None = None) -> str:
  """A printable table of an architecture's parameters per component.

  With ``params`` the measured counts are shown beside the analytic ones.
  """
  analytic = analytic_breakdown(config)
  measured = param_breakdown(params) if params is not None else None
  title = config.name if isinstance(config, StudentConfig) else (
      f"BERT L{config.num_layers} H{config.hidden_size} A{config.num_heads} "
      f"I{config.intermediate_size}")
  total = sum(analytic.values())
  rows = [f"{title}: {total / 1e6:.2f}M parameters",
          f"  {'component':<12} {'params':>12} {'share':>7}" + ("   measured" if measured else "")]
  for key in COMPONENTS:
    if analytic[key] == 0 and not (measured and measured[key]):
      continue
    row = f"  {key:<12} {analytic[key]:>12,} {analytic[key] / total:>6.1%}"
    if measured:
      row += f" {measured[key]:>12,}"
    rows.append(row)
  return "\n".join(rows)
