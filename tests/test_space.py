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
      "autodistil_base": 256, "autodistil_cpu": 256, "cpu_demo": 48, "cpu_wide": 216}
  assert SPACES["mobilebert_centred"].num_valid == 243
  assert SPACES["cpu_wide"].num_valid == 216
  # cpu_wide holds every cpu_demo student, under the same names and the same baseline.
  demo, wide = SPACES["cpu_demo"], SPACES["cpu_wide"]
  assert {c.name for c in demo.architectures()} <= {c.name for c in wide.architectures()}
  assert wide.baseline_config().name == demo.baseline_config().name
  assert SPACES["cpu_demo"].baseline_config().name == "Model_128_32_4_128_4-num_blocks=2-embedding_size=64"


def test_autodistil_subspaces_decouple_the_head_width_so_every_point_is_valid():
  tiny = get_space("autodistil_tiny")
  assert tiny.factors["num_blocks"] == (4, 5, 6, 7)
  assert tiny.factors["hidden_size"] == (128, 160, 192, 224)
  assert tiny.factors["mlp_ratio"] == (2.0, 2.5, 3.0, 3.5)
  assert tiny.num_valid == 256  # 7 heads on 128 channels included
  point = {"num_blocks": 4, "hidden_size": 160, "mlp_ratio": 3.5, "num_heads": 10}
  config = tiny.config(point)
  assert (config.bottleneck_size, config.intermediate_size, config.num_ffn) == (160, 560, 1)
  assert config.normalization == "layer_norm" and config.num_blocks == 4
  assert not config.use_bottleneck and config.embedding_size == 160
  assert (config.head_size, config.attention_width) == (14, 140)  # ceil(160 / 12) = 14
  assert tiny.point_of(config) == point
  odd = tiny.config({"num_blocks": 4, "hidden_size": 128, "mlp_ratio": 2.0, "num_heads": 7})
  assert (odd.head_size, odd.attention_width) == (11, 77)
  assert Space.from_dict(tiny.to_dict()) == tiny


def test_head_size_divisor_rejects_a_searched_head_size():
  with pytest.raises(ValueError, match="head_size_divisor"):
    Space(name="x", factors={"hidden_size": (64,), "attention_head_size": (8, 16)},
          head_size_divisor=4)
  # A space without it keeps its old dict form (older studies' records still match).
  assert "head_size_divisor" not in get_space("cpu_demo").to_dict()


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
