"""Architecture types: the paper's name codec and validation."""

import pytest

from autodistill.models import MOBILEBERT, BertConfig, StudentConfig

# The seven students of the paper's Table 2 and its MobileBERT baseline.
TABLE2 = ["Model_512_128_4_512_4", "Model_512_128_1_384_4", "Model_512_128_1_640_2",
          "Model_512_128_1_640_4", "Model_512_128_2_640_2", "Model_512_128_4_512_2",
          "Model_512_128_4_640_2", "Model_512_160_2_512_2"]


@pytest.mark.parametrize("name", TABLE2)
def test_paper_names_round_trip(name):
  config = StudentConfig.from_name(name)
  assert config.name == name
  assert StudentConfig.from_name(config.name) == config


def test_name_encodes_factors_in_paper_order():
  config = StudentConfig.from_name("Model_512_128_1_384_4")
  assert config.factors == {"hidden_size": 512, "bottleneck_size": 128, "num_heads": 1,
                            "intermediate_size": 384, "num_ffn": 4}
  assert MOBILEBERT.name == "Model_512_128_4_512_4"


def test_non_default_fields_round_trip_through_suffixes():
  config = StudentConfig(hidden_size=256, bottleneck_size=64, num_heads=2, intermediate_size=384,
                         num_ffn=2, num_blocks=6, embedding_size=64, trigram_input=False,
                         normalization="layer_norm", hidden_act="gelu",
                         key_query_shared_bottleneck=False, classifier_activation=False)
  assert config.name == ("Model_256_64_2_384_2-num_blocks=6-embedding_size=64-trigram_input=false"
                         "-normalization=layer_norm-key_query_shared_bottleneck=false"
                         "-hidden_act=gelu-classifier_activation=false")
  assert StudentConfig.from_name(config.name) == config


def test_from_name_takes_unnamed_fields_as_overrides():
  config = StudentConfig.from_name("Model_128_64_2_384_2", vocab_size=1000, num_blocks=4)
  assert (config.vocab_size, config.num_blocks) == (1000, 4)
  with pytest.raises(ValueError, match="both in the name"):
    StudentConfig.from_name("Model_128_64_2_384_2-num_blocks=6", num_blocks=4)


@pytest.mark.parametrize("kwargs, field, value", [
    (dict(bottleneck_size=96, num_heads=5), "bottleneck_size=96", "num_heads=5"),
    (dict(hidden_size=0), "hidden_size", "0"),
    (dict(intermediate_size=-384), "intermediate_size", "-384"),
    (dict(num_ffn=0), "num_ffn", "0"),
    (dict(num_heads=2.0), "num_heads", "2.0"),
    (dict(hidden_size=64, embedding_size=128), "hidden_size=64", "embedding_size=128"),
    (dict(normalization="batch_norm"), "normalization", "batch_norm"),
    (dict(hidden_act="swish9"), "hidden_act", "swish9"),
    (dict(attention_dropout_prob=1.5), "attention_dropout_prob", "1.5"),
    (dict(use_bottleneck_attention=True), "use_bottleneck_attention", "key_query_shared"),
])
def test_invalid_architectures_name_the_factor_and_value(kwargs, field, value):
  with pytest.raises(ValueError) as error:
    StudentConfig(**kwargs)
  assert field in str(error.value) and value in str(error.value)


def test_unknown_factor_is_named():
  with pytest.raises(ValueError, match=r"unknown factor 'depth' \(value '6'\)"):
    StudentConfig.from_name("Model_512_128_4_512_4-depth=6")
  with pytest.raises(ValueError, match=r"unknown factor\(s\) \['hidden'\] = \[512\]"):
    StudentConfig.from_dict({"hidden": 512})
  with pytest.raises(ValueError, match="unknown factor"):
    MOBILEBERT.replace(num_layers=3)


@pytest.mark.parametrize("bad", ["Model_512_128_4_512", "model_512_128_4_512_4", "Model_a_b_c_d_e",
                                 "Model_512_128_4_512_4-num_blocks=six"])
def test_malformed_names_are_rejected(bad):
  with pytest.raises(ValueError, match="StudentConfig"):
    StudentConfig.from_name(bad)


def test_invalid_name_values_are_validated():
  with pytest.raises(ValueError, match="bottleneck_size=128 is not divisible by num_heads=3"):
    StudentConfig.from_name("Model_512_128_3_512_4")


def test_configs_are_immutable_and_hashable():
  with pytest.raises(AttributeError):
    MOBILEBERT.hidden_size = 256  # type: ignore[misc]
  assert len({MOBILEBERT, StudentConfig(), StudentConfig(num_blocks=2)}) == 2


def test_bert_config_from_hf_and_errors():
  hf = {"model_type": "bert", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128}
  config = BertConfig.from_hf(hf)
  assert (config.num_layers, config.head_size) == (2, 16)
  assert BertConfig.from_hf(config.to_hf()) == config
  with pytest.raises(ValueError, match="relative_key"):
    BertConfig.from_hf({**hf, "position_embedding_type": "relative_key"})
  with pytest.raises(ValueError, match="num_hidden_layers"):
    BertConfig.from_hf({k: v for k, v in hf.items() if k != "num_hidden_layers"})
  with pytest.raises(ValueError, match="hidden_size=64 is not divisible by num_heads=5"):
    BertConfig.from_hf({**hf, "num_attention_heads": 5})
