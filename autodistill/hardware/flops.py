"""Analytic floating-point operation counts of a forward pass, from the architecture alone.

The paper collects "accelerator FLOPS utilization" among its hardware traces (section 3.4). The
measured count comes from XLA (``compiled.cost_analysis()``); this module is the fallback for
backends whose cost analysis returns nothing, and an independent check on it.

Convention: 2 FLOPs per multiply-accumulate of every matrix product (dense layers, attention
scores and attention-weighted values). Element-wise work (bias adds, norms, activations, softmax,
residual adds) is left out, as in the usual model-FLOPs-utilisation convention: it is
memory-bound and a few percent of the work at the paper's widths. XLA's CPU cost analysis counts
it too (about one FLOP per element per op, dozens for GELU's erf), so XLA reports 0-5% more than
this count for the paper's template (ReLU, NoNorm) at Table 1 widths, and up to ~35% more for
toy widths with LayerNorm and GELU (``tests/hardware/test_hardware_flops.py`` checks both).
"""

from __future__ import annotations

from autodistill.models.configs import BertConfig, StudentConfig


def _student_flops(c: StudentConfig, batch: int, seq: int, heads: bool) -> int:
  tokens = batch * seq
  h, b, e, i = c.hidden_size, c.bottleneck_size, c.embedding_size, c.intermediate_size
  total = 0
  if c.trigram_input:
    total += 2 * tokens * 3 * e * h
  elif e != h:
    total += 2 * tokens * e * h
  query_in = b if (c.use_bottleneck_attention or c.key_query_shared_bottleneck) else h
  value_in = b if c.use_bottleneck_attention else h
  a = c.attention_width
  block = 2 * tokens * h * b if c.use_bottleneck else 0  # input bottleneck
  if c.key_query_shared_bottleneck:
    block += 2 * tokens * h * b  # the shared query/key bottleneck
  block += 2 * (2 * tokens * query_in * a) + 2 * tokens * value_in * a  # q, k, v
  block += 2 * (2 * batch * seq * seq * a)  # scores and context, all heads together
  block += 2 * tokens * a * b  # attention output
  block += c.num_ffn * 2 * (2 * tokens * b * i)
  if c.use_bottleneck:
    block += 2 * tokens * b * h  # output bottleneck
  total += c.num_blocks * block
  if c.classifier_activation:
    total += 2 * batch * h * h  # pooler
  if heads:
    # MLM transform, then the decoder: tied embedding rows plus the untied extra rows = h rows.
    total += 2 * tokens * h * h + 2 * tokens * h * c.vocab_size + 2 * batch * h * 2
  return total


def _bert_flops(c: BertConfig, batch: int, seq: int, heads: bool) -> int:
  tokens, h = batch * seq, c.hidden_size
  layer = 4 * (2 * tokens * h * h) + 2 * (2 * batch * seq * seq * h)
  layer += 2 * (2 * tokens * h * c.intermediate_size)
  total = c.num_layers * layer + 2 * batch * h * h
  if heads:
    total += 2 * tokens * h * h + 2 * tokens * h * c.vocab_size + 2 * batch * h * 2
  return total


def analytic_flops(config: StudentConfig | BertConfig, *, batch_size: int = 1,
                   seq_len: int = 128, heads: bool = False) -> int:
  """FLOPs of one forward pass (2 per multiply-accumulate of every matrix product).

  Args:
    config: a student (paper section 3.2) or teacher architecture.
    batch_size, seq_len: the input shape [batch_size, seq_len].
    heads: count the MLM (logits at every position) and NSP heads too; the serving forward pass
      measured by :func:`autodistill.hardware.measure_latency` has none by default.
  """
  if isinstance(config, StudentConfig):
    return _student_flops(config, batch_size, seq_len, heads)
  if isinstance(config, BertConfig):
    return _bert_flops(config, batch_size, seq_len, heads)
  raise TypeError(f"expected a StudentConfig or BertConfig, got {type(config).__name__}")
