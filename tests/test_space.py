"""Design spaces: preset sizes and names, validity rules, extra factors, round trips."""

import pytest

from autodistill.models import MOBILEBERT, StudentConfig
from autodistill.space import SPACES, InvalidArchitecture, Space, get_space


def test_table1_is_the_papers_576_architectures_with_mobilebert():
  space = get_space("table1")
  assert space.size == 576 and space.num_valid == 576  # Table 1: 4 x 4 x 4 x 3 x 3
  assert space.factors["hidden_size"] == (128, 256, 384, 512)  # "246" read as 256
  assert space.baseline_config() == MOBILEBERT
  names = {c.name for c in space.architectures()}
  assert len(names) == 576
  # Table 2's students are points of the space (paper section 4.2).
  for name in ("Model_512_128_4_512_4", "Model_512_128_1_384_4", "Model_512_160_2_512_2"):
    assert name in names
    assert space.point_of(StudentConfig.from_name(name))["hidden_size"] == 512


def test_preset_sizes():
  assert {name: s.size for name, s in SPACES.items()} == {
      "table1": 576, "mobilebert_centred": 243, "autodistil_tiny": 256, "autodistil_small": 256,
      "autodistil_base": 256, "cpu_demo": 48}
  assert SPACES["mobilebert_centred"].num_valid == 243
  assert SPACES["cpu_demo"].baseline_config().name == "Model_128_32_4_128_4-num_blocks=2-embedding_size=64"


def test_autodistil_subspaces_prune_heads_that_do_not_divide_the_width():
  tiny = get_space("autodistil_tiny")
  assert tiny.factors["num_blocks"] == (4, 5, 6, 7)
  assert tiny.factors["hidden_size"] == (128, 160, 192, 224)
  assert tiny.factors["mlp_ratio"] == (2.0, 2.5, 3.0, 3.5)
  # Heads must divide the hidden size (= attention width); count by hand: for each hidden size,
  # the heads in 7..10 that divide it, times 4 layer counts x 4 ratios.
  divisors = sum(1 for h in (128, 160, 192, 224) for n in (7, 8, 9, 10) if h % n == 0)
  assert tiny.num_valid == divisors * 16
  point = {"num_blocks": 4, "hidden_size": 160, "mlp_ratio": 3.5, "num_heads": 10}
  config = tiny.config(point)
  assert (config.bottleneck_size, config.intermediate_size, config.num_ffn) == (160, 560, 1)
  assert config.normalization == "layer_norm" and config.num_blocks == 4
  assert tiny.point_of(config) == point
  reason = tiny.invalid_reason({"num_blocks": 4, "hidden_size": 128, "mlp_ratio": 2.0,
                                "num_heads": 7})
  assert reason is not None and "not divisible by num_heads=7" in reason
  with pytest.raises(InvalidArchitecture, match="num_heads"):
    tiny.config({"num_blocks": 4, "hidden_size": 128, "mlp_ratio": 2.0, "num_heads": 7})


def test_any_student_field_is_a_factor_without_code_changes():
  space = Space(name="custom",
                factors={"num_blocks": (2, 4), "embedding_size": (32, 64), "hidden_act": ("relu", "gelu"),
                         "hidden_size": (64,), "bottleneck_size": (32,)},
                fixed={"num_heads": 2, "intermediate_size": 64, "num_ffn": 1})
  configs = space.architectures(vocab_size=100)
  assert len(configs) == 8
  assert {c.hidden_act for c in configs} == {"relu", "gelu"}
  assert {c.vocab_size for c in configs} == {100}
  assert len({c.name for c in configs}) == 8
  assert Space.from_dict(space.to_dict()) == space


def test_bad_spaces_and_points_are_explained():
  with pytest.raises(ValueError, match="unknown factor 'hiden_size'"):
    Space(name="typo", factors={"hiden_size": (64,)})
  with pytest.raises(ValueError, match="both searched and fixed"):
    Space(name="x", factors={"num_blocks": (2,)}, fixed={"num_blocks": 2})
  with pytest.raises(ValueError, match="not one of the allowed values"):
    SPACES["table1"].config({**SPACES["table1"].baseline, "num_heads": 3})
  with pytest.raises(ValueError, match="missing factors"):
    SPACES["table1"].config({"hidden_size": 512})
  with pytest.raises(ValueError, match="unknown design space 'tabel1'"):
    get_space("tabel1")
  with pytest.raises(ValueError, match="not in space"):
    SPACES["table1"].point_of(StudentConfig.from_name("Model_512_128_4_512_4", num_blocks=12))
