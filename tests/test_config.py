"""The experiment config: parsed and checked once into typed pieces (autodistill.config)."""

import dataclasses
import pathlib

import pytest

from autodistill import config as config_lib
from autodistill.config import ConfigError, default_config, parse_config

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_the_default_parses_into_typed_frozen_pieces():
  settings = parse_config(default_config())
  assert settings.space.name == "cpu_demo" and settings.space.num_valid == 48
  assert settings.search.designer == "gp_bandit" and settings.search.num_trials == 6
  assert settings.search.max_suggestions == 20 * 6  # 0 means 20 x num_trials
  assert settings.distill.plan(2).total_steps == 2 * 10 + 40
  assert settings.finalize.recipe.plan(2).total_steps == 2 * 40 + 520
  assert settings.finalize.recipe.preset == "regular"
  assert settings.latency.device is None and settings.latency.key_settings["seq_len"] == 128
  assert settings.finetune.tasks == ("bbc_topic",) and settings.finetune.recipe.batch_size == 32
  with pytest.raises(dataclasses.FrozenInstanceError):
    settings.search.num_trials = 3  # type: ignore[misc]
  assert parse_config(settings) is settings  # parsed once; a Settings passes through


def test_runtime_knobs_reach_every_training_recipe():
  config = default_config()
  config.runtime.mesh_shape = (2, 4)
  config.runtime.dtype = "bfloat16"
  config.runtime.progress = False
  settings = parse_config(config)
  for recipe in (settings.distill, settings.finalize.recipe, settings.finetune.recipe):
    assert (tuple(recipe.mesh_shape), recipe.dtype, recipe.progress) == ((2, 4), "bfloat16", False)


def test_finalize_distils_the_winners_with_the_runs_mesh(monkeypatch, tmp_path):
  """Regression: the winners' recipe came from config.finalize, which has no mesh, so a
  (data=16, model=4) pod config finalized as pure data parallelism."""
  from autodistill.search import finalize as finalize_lib
  from autodistill.search.records import COMPLETED, TrialRecord
  config = default_config()
  config.runtime.mesh_shape = (1, 1)
  settings = parse_config(config)
  seen = []

  class Stop(Exception):
    pass

  def fake_distill(student, teacher, train, evaluation, out, recipe, **kwargs):
    seen.append(recipe)
    raise Stop

  class Context:
    train_data = type("Data", (), {"reset": lambda self: None})()
    teacher = eval_data = None

    def student(self, factors):
      return settings.space.config(factors)

  monkeypatch.setattr(finalize_lib, "distill", fake_distill)
  point = settings.space.baseline
  record = TrialRecord(trial_id=1, status=COMPLETED, factors=point, mlm_loss=1.0, latency_ms=1.0,
                       mlm_accuracy=0.1, name=settings.space.config(point).name)
  with pytest.raises(Stop):
    finalize_lib.finalize(Context(), settings.finalize, settings.search.objectives, tmp_path,
                          records=[record], log=lambda m: None)
  assert seen[0] is settings.finalize.recipe and tuple(seen[0].mesh_shape) == (1, 1)


def test_step_counts_left_to_the_preset_follow_the_papers_ratios():
  """Regression: `distill.warmup_steps=0` warmed up over the whole phase (40 of 40 steps) and
  `steps_per_block=0` gave 6,000 steps per block next to 40 pre-training steps."""
  config = default_config()
  config.distill.warmup_steps = 0
  config.distill.steps_per_block = 0
  plan = parse_config(config).distill.plan(2)
  assert plan.pretrain_steps == 40 and plan.warmup_steps < plan.pretrain_steps
  assert plan.warmup_steps == 1 and plan.steps_per_block == 10


@pytest.mark.parametrize("section, field, value, expected", [
    ("data", "batch_size", 0, "a whole number > 0"),
    ("data", "seq_len", 0, "a whole number > 0"),
    ("data", "eval_fraction", 1.5, "a fraction between 0 and 1"),
    ("distill", "pretrain_steps", -5, ">= 0"),
    ("distill", "preset", "quick", "'flash'"),
    ("distill", "learning_rate", 0.0, "a positive number"),
    ("distill", "attention_loss", "cosine", "'relation'"),
    ("distill", "nsp_weight", -1.0, ">= 0 (or None"),
    ("search", "num_trials", -1, "a whole number > 0"),
    ("search", "designer", "bayes", "'gp_bandit'"),
    ("search", "objectives", ("mlm_accuracy", "speed"), "'latency_ms'"),
    ("space", "preset", "huge", "'table1'"),
    ("finalize", "preset", "long", "'regular'"),
    ("runtime", "mesh_shape", (-1, -1), "(data, model)"),
    ("latency", "min_runs", 0, "a whole number > 0"),
    ("search", "kdnas_exponent", 0.5, "<= 0"),
    ("search", "proxy_documents", -3, "a whole number >= 0"),
    ("distill", "objective", "tinybert", "'multi_layer'"),
])
def test_a_bad_value_is_one_line_naming_the_field_value_and_what_is_allowed(
    section, field, value, expected):
  config = default_config()
  config[section][field] = value
  with pytest.raises(ConfigError) as raised:
    parse_config(config)
  message = str(raised.value)
  assert f"config.{section}.{field}={value!r}" in message and expected in message, message
  assert "\n" not in message


def test_settings_added_later_stay_out_of_the_evaluation_record_at_their_defaults():
  """A study stores what its trials' results depend on and refuses to resume under another; a
  setting added later appears there only when it is not its default, so older studies resume."""
  record = parse_config(default_config()).evaluation()
  assert "proxy_documents" not in record
  assert "scan_blocks" not in record["distill"] and "objective" not in record["distill"]
  config = default_config()
  config.search.proxy_documents = 128
  config.distill.objective = "multi_layer"
  record = parse_config(config).evaluation()
  assert record["proxy_documents"] == 128 and record["distill"]["objective"] == "multi_layer"


def test_readme_config_reference_is_generated_from_the_code():
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  assert config_lib.config_reference() in readme
