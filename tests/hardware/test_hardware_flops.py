"""Analytic FLOPs against XLA's cost analysis, and the cost-analysis readers.

XLA (CPU) counts 2 FLOPs per multiply-accumulate like the analytic formula, plus roughly one FLOP
per element for every element-wise op (bias, norm, activation, softmax, residual), which the
analytic count leaves out. Stated tolerances:

* the paper's template (ReLU, NoNorm) at Table 1 widths: XLA within [+0%, +5%] of analytic;
* any wiring at toy widths, LayerNorm, GELU, BERT: XLA within [+0%, +35%] (GELU's erf alone is
  dozens of element-wise FLOPs per element).
"""

import types

import flax
import jax
import jax.numpy as jnp
import pytest

from autodistill.hardware import analytic_flops
from autodistill.hardware import latency
from autodistill.models import BertConfig, StudentConfig


def _xla_flops(config, seq_len, batch_size=1, heads=False):
  module = latency._serving_module(config, jnp.float32, heads)
  ids = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32)
  params = flax.linen.unbox(
      jax.eval_shape(lambda i: module.init(jax.random.PRNGKey(0), i, i, i), ids)["params"])
  compiled = jax.jit(latency._forward(module, heads)).lower(params, ids, ids, ids).compile()
  return latency._cost_analysis(compiled)["flops"]


TABLE1 = ["Model_512_128_4_512_4", "Model_128_64_1_384_2", "Model_384_160_8_640_6",
          "Model_256_96_2_512_4"]


@pytest.mark.parametrize("name", TABLE1)
def test_paper_template_within_5_percent_of_xla(name):
  config = StudentConfig.from_name(name, num_blocks=2)
  for seq_len, batch_size in [(64, 1), (32, 2)]:
    ratio = _xla_flops(config, seq_len, batch_size) / analytic_flops(
        config, batch_size=batch_size, seq_len=seq_len)
    assert 1.0 <= ratio <= 1.05, (name, seq_len, batch_size, ratio)


TOY = dict(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=48, num_ffn=2,
           num_blocks=2, embedding_size=16, vocab_size=300, max_position_embeddings=64)
VARIANTS = [
    StudentConfig(**TOY),
    StudentConfig(**TOY, normalization="layer_norm", trigram_input=False, hidden_act="gelu",
                  key_query_shared_bottleneck=False),
    StudentConfig(**TOY, use_bottleneck_attention=True, key_query_shared_bottleneck=False,
                  classifier_activation=False),
    BertConfig(vocab_size=300, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128),
    StudentConfig(**{**TOY, "bottleneck_size": 64, "num_ffn": 1, "num_heads": 3},
                  attention_head_size=24, use_bottleneck=False, normalization="layer_norm",
                  key_query_shared_bottleneck=False, trigram_input=False),
]


@pytest.mark.parametrize("config", VARIANTS,
                         ids=["toy", "layer_norm-gelu-plain_qkv", "bottleneck_attention", "bert",
                              "bert_block-decoupled_heads"])
@pytest.mark.parametrize("heads", [False, True])
def test_every_wiring_within_35_percent_of_xla(config, heads):
  ratio = _xla_flops(config, 32, heads=heads) / analytic_flops(config, seq_len=32, heads=heads)
  assert 1.0 <= ratio <= 1.35, ratio


def test_flops_scale_with_blocks_and_quadratically_in_attention():
  config = StudentConfig.from_name("Model_256_64_2_384_2")
  two, four = (analytic_flops(config.replace(num_blocks=n)) for n in (2, 4))
  embed_and_pool = 2 * two - four
  assert four - two == two - embed_and_pool  # linear in the number of blocks
  # Doubling the sequence doubles every projection but quadruples scores/context.
  short, long = analytic_flops(config, seq_len=64), analytic_flops(config, seq_len=128)
  attention = 24 * 2 * (2 * 64 * 64 * 64)
  pooler = 2 * 256 * 256
  assert long - pooler == 2 * (short - pooler) + 2 * attention


def test_rejects_other_types():
  with pytest.raises(TypeError):
    analytic_flops("Model_512_128_4_512_4")


class _Compiled:
  def __init__(self, cost=None, memory=None, raises=False):
    self._cost, self._memory, self._raises = cost, memory, raises

  def cost_analysis(self):
    if self._raises:
      raise NotImplementedError("no cost model here")
    return self._cost

  def memory_analysis(self):
    if self._raises:
      raise NotImplementedError("no memory analysis here")
    return self._memory


@pytest.mark.parametrize("cost", [
    {"flops": 10.0, "bytes accessed": 20.0, "transcendentals": 3.0},
    [{"flops": 10.0, "bytes accessed": 20.0, "transcendentals": 3.0}]])
def test_cost_analysis_reads_dict_and_list_forms(cost):
  assert latency._cost_analysis(_Compiled(cost)) == {
      "flops": 10.0, "bytes_accessed": 20.0, "transcendentals": 3.0}


@pytest.mark.parametrize("compiled", [_Compiled(None), _Compiled([]), _Compiled(raises=True)])
def test_cost_and_memory_analysis_tolerate_nothing(compiled):
  assert latency._cost_analysis(compiled) == {}
  assert set(latency._memory_analysis(compiled).values()) == {None}


def test_memory_analysis_reads_stats():
  stats = types.SimpleNamespace(argument_size_in_bytes=1, output_size_in_bytes=2,
                                temp_size_in_bytes=3, generated_code_size_in_bytes=4)
  assert latency._memory_analysis(_Compiled(memory=stats)) == {
      "argument_bytes": 1, "output_bytes": 2, "temp_bytes": 3, "generated_code_bytes": 4}
