"""Parameter counts: analytic == parameter tree == transformers, and the paper's Table 2."""

import pytest

from autodistill.models import MOBILEBERT, BertConfig, StudentConfig, hf
from autodistill.models import params as counting

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STUDENTS = [
    StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=48, num_ffn=3,
                  num_blocks=2, embedding_size=16, vocab_size=300, max_position_embeddings=40),
    StudentConfig(hidden_size=96, bottleneck_size=48, num_heads=4, intermediate_size=80, num_ffn=1,
                  num_blocks=3, embedding_size=32, vocab_size=300, max_position_embeddings=40,
                  trigram_input=False, normalization="layer_norm", classifier_activation=False),
    StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=48, num_ffn=2,
                  num_blocks=2, embedding_size=16, vocab_size=300, max_position_embeddings=40,
                  use_bottleneck_attention=True, key_query_shared_bottleneck=False),
    MOBILEBERT,
    # BERT's block (AutoDistil): no bottlenecks; transformers' use_bottleneck=False.
    StudentConfig(hidden_size=96, bottleneck_size=96, num_heads=4, intermediate_size=200,
                  num_ffn=1, num_blocks=2, embedding_size=32, vocab_size=300,
                  max_position_embeddings=40, trigram_input=False, normalization="layer_norm",
                  use_bottleneck=False, key_query_shared_bottleneck=False),
]


def test_decoupled_attention_counts_agree_with_the_tree():
  # 5 heads of 24 on a 96-wide BERT block: transformers cannot express it, the tree can.
  config = STUDENTS[-1].replace(num_heads=5, attention_head_size=24)
  params = _abstract_params(config)
  assert params["encoder"]["block_0"]["attention"]["query"]["kernel"].shape == (96, 5, 24)
  assert counting.param_breakdown(params) == counting.analytic_breakdown(config)


def _torch_count(cls, hf_config) -> int:
  with torch.device("meta"):  # shapes only: no memory, no initialisation cost
    model = cls(hf_config)
  return sum(p.numel() for p in model.parameters())  # tied parameters are yielded once


def _abstract_params(config):
  return hf.abstract_params(config)


@pytest.mark.parametrize("config", STUDENTS, ids=lambda c: c.name)
def test_student_counts_agree_with_tree_and_transformers(config):
  params = _abstract_params(config)
  assert counting.param_breakdown(params) == counting.analytic_breakdown(config)
  assert counting.count_params(params) == counting.analytic_param_count(config)
  hf_config = transformers.MobileBertConfig(**hf.student_config_to_hf(config))
  assert _torch_count(transformers.MobileBertForPreTraining, hf_config) == \
      counting.analytic_param_count(config)
  # Encoder only (MobileBertModel has the pooler but no heads).
  assert _torch_count(transformers.MobileBertModel, hf_config) == \
      counting.analytic_param_count(config, heads=False)


@pytest.mark.parametrize("config", [
    BertConfig(vocab_size=300, hidden_size=48, num_layers=2, num_heads=4, intermediate_size=96),
    BertConfig(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),  # MiniLM-L6
], ids=["small", "minilm-shape"])
def test_teacher_counts_agree_with_tree_and_transformers(config):
  params = _abstract_params(config)
  assert counting.param_breakdown(params) == counting.analytic_breakdown(config)
  hf_config = transformers.BertConfig(**config.to_hf())
  assert _torch_count(transformers.BertForPreTraining, hf_config) == \
      counting.analytic_param_count(config)
  assert _torch_count(transformers.BertModel, hf_config) == \
      counting.analytic_param_count(config, heads=False)


# Table 2 of the paper: parameters in millions.
PAPER_TABLE2 = {
    "Model_512_128_4_512_4": 25.3,  # MobileBERT
    "Model_512_128_1_384_4": 22.2,
    "Model_512_128_1_640_2": 20.6,
    "Model_512_128_1_640_4": 28.5,
    "Model_512_128_2_640_2": 20.6,
    "Model_512_128_4_512_2": 19.0,
    "Model_512_128_4_640_2": 20.6,
    "Model_512_160_2_512_2": 22.8,
}


@pytest.mark.parametrize("name, paper_millions", PAPER_TABLE2.items())
def test_encoder_counts_match_paper_table2(name, paper_millions):
  """Our encoder (embeddings + 24 blocks + pooler) is 0.46-0.51M below every Table 2 figure.

  The near-constant offset suggests the paper also counts the MLM transform and NSP classifier
  (0.26M) plus rounding to 0.1M; it cannot include the 11.7M untied MLM decoder rows.
  """
  ours = counting.analytic_param_count(StudentConfig.from_name(name), heads=False) / 1e6
  assert 0.40 < paper_millions - ours < 0.55


def test_table2_relative_sizes_match_the_paper():
  base = counting.analytic_param_count(MOBILEBERT, heads=False)
  for name, paper in PAPER_TABLE2.items():
    ours = counting.analytic_param_count(StudentConfig.from_name(name), heads=False) / base
    assert ours == pytest.approx(paper / PAPER_TABLE2["Model_512_128_4_512_4"], abs=0.01), name


def test_summary_lists_components_and_total():
  config = StudentConfig.from_name("Model_512_128_1_640_2")
  text = counting.summary(config)
  assert text.startswith("Model_512_128_1_640_2: 32.10M parameters")
  for component in ("embeddings", "bottlenecks", "attention", "ffn", "pooler", "mlm_head"):
    assert component in text
  one_block = config.replace(num_blocks=1)
  measured = counting.summary(one_block, _abstract_params(one_block))  # shapes are all it counts
  assert "measured" in measured
  ffn_row = next(row for row in measured.splitlines() if row.split()[0] == "ffn")
  assert ffn_row.split()[-1] == f"{counting.analytic_breakdown(one_block)['ffn']:,}"  # measured
