"""Flash/Regular Distillation end to end on tiny models, presets, and teacher preparation."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

from autodistill import sharding
from autodistill.distill import (PRESETS, DistillConfig, OptimizerConfig, distill, load_distilled,
                                 prepare_teacher, step_plan)
from autodistill.distill.distillation import _elastic_losses, _Recipe, elastic_envelope
from autodistill.distill.teacher import PreparedTeacher, nsp_verdict
from autodistill.models import StudentConfig, hf
from autodistill.train import read_metrics

from synthetic import tiny_data, tiny_student, tiny_teacher


# ---------------------------------------------------------------------------------------------
# Presets (paper section 4.1)


def test_flash_and_regular_presets_match_the_paper_for_24_blocks():
  flash = step_plan("flash", 24)
  assert (flash.steps_per_block, flash.progressive_steps, flash.pretrain_steps,
          flash.warmup_steps) == (500, 12_000, 25_000, 500)
  assert flash.total_steps == 37_000 and PRESETS["flash"].batch_size == 2048
  regular = step_plan("regular", 24)
  assert (regular.steps_per_block, regular.progressive_steps, regular.pretrain_steps,
          regular.warmup_steps) == (10_000, 240_000, 500_000, 10_000)
  assert flash.total_steps / regular.total_steps == pytest.approx(0.05, rel=1e-9)


@pytest.mark.parametrize("preset", ["flash", "regular"])
@pytest.mark.parametrize("scale", [1.0, 0.1, 0.01])
def test_scale_keeps_the_progressive_ratio(preset, scale):
  for blocks in (24, 12, 4):
    plan = step_plan(preset, blocks, scale)
    assert plan.progressive_steps / plan.pretrain_steps == pytest.approx(0.48, rel=0.05)
    assert plan.warmup_steps / plan.pretrain_steps == pytest.approx(
        PRESETS[preset].warmup_steps / PRESETS[preset].pretrain_steps, rel=0.05)
  assert step_plan(preset, 24, scale).pretrain_steps == round(
      PRESETS[preset].pretrain_steps * scale)


def test_explicit_steps_override_and_bad_settings_are_rejected():
  plan = step_plan("flash", 4, 0.5, steps_per_block=7, pretrain_steps=11, warmup_steps=3)
  assert (plan.steps_per_block, plan.pretrain_steps, plan.warmup_steps) == (7, 11, 3)
  with pytest.raises(ValueError, match="unknown preset"):
    step_plan("quick", 4)
  with pytest.raises(ValueError, match="scale"):
    DistillConfig(scale=0)
  with pytest.raises(ValueError, match="attention_loss"):
    DistillConfig(attention_loss="cosine")
  with pytest.raises(ValueError, match="alpha"):
    DistillConfig(alpha=1.5)
  assert DistillConfig(optimizer={"learning_rate": 3e-3}).optimizer.learning_rate == 3e-3



def test_counts_left_to_the_preset_follow_the_explicit_ones_by_the_papers_ratios():
  # Regression: warm-up "from the preset" was the preset's 500 steps capped at the phase (40 of
  # 40: the learning rate never decayed), and steps per block came from the preset's 25k
  # pre-training steps (6,000 per block for 40 pre-training steps), breaking the 0.48 ratio.
  plan = step_plan("flash", 2, pretrain_steps=40)
  assert plan.warmup_steps == 1  # 2% of 40, as 500 of 25k
  assert plan.steps_per_block == 10  # round(0.48 * 40 / 2)
  assert plan.progressive_steps / plan.pretrain_steps == pytest.approx(0.48, rel=0.05)
  plan = step_plan("regular", 4, pretrain_steps=1000, warmup_steps=50)
  assert (plan.steps_per_block, plan.warmup_steps) == (120, 50)
  with pytest.raises(ValueError, match="pretrain_steps must be >= 0"):
    step_plan("flash", 2, pretrain_steps=-5)

# ---------------------------------------------------------------------------------------------
# End to end on tiny models


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("distill")
  _, train, evaluation = tiny_data(root / "data")
  config = DistillConfig(steps_per_block=3, pretrain_steps=4, warmup_steps=1, log_every=1,
                         progress=False)
  messages = []
  result = distill(tiny_student(), tiny_teacher(), train, evaluation, root / "work", config,
                   log=messages.append)
  return root / "work", result, messages


def test_distill_reports_accuracy_at_start_after_progressive_and_at_the_end(tiny_run):
  workdir, result, messages = tiny_run
  assert list(result.evals) == ["init", "progressive/block_1", "pretraining_distillation"]
  for metrics in result.evals.values():
    assert 0.0 <= metrics["mlm_accuracy"] <= 1.0 and 0.0 <= metrics["nsp_accuracy"] <= 1.0
    assert metrics["examples"] > 0
  assert result.mlm_accuracy == result.evals["pretraining_distillation"]["mlm_accuracy"]
  assert any("training" in m and "frozen" in m for m in messages)
  summary = json.loads((workdir / "result.json").read_text())
  assert summary["evals"] == json.loads(json.dumps(result.evals))
  assert summary["plan"]["steps_per_block"] == 3


def test_the_trial_recipe_skips_the_diagnostic_evaluations_and_changes_nothing_else(tiny_run,
                                                                                   tmp_path):
  """A search trial evaluates once, at the end; the parameters and that evaluation are the
  ones of the run that also evaluated at the start and after the progressive stages."""
  from autodistill.search.evaluate import trial_recipe
  _, full, _ = tiny_run
  _, train, evaluation = tiny_data(tmp_path / "data")
  config = DistillConfig(steps_per_block=3, pretrain_steps=4, warmup_steps=1, log_every=1,
                         progress=False)
  trial = distill(tiny_student(), tiny_teacher(), train, evaluation, tmp_path / "trial",
                  trial_recipe(config), log=lambda _: None)
  assert list(trial.evals) == ["pretraining_distillation"]
  assert trial.evals["pretraining_distillation"] == full.evals["pretraining_distillation"]
  assert [r["step"] for r in read_metrics(tmp_path / "trial") if "eval/mlm_accuracy" in r] == [10]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(trial.params),
               jax.device_get(full.params))


def test_a_student_distilled_again_in_the_process_reuses_its_compiled_programs(tiny_run,
                                                                              tmp_path):
  """Finalize distils a search's winner again (flash, then regular with other step counts):
  the programs of the first run serve, nothing is compiled twice, and the run is its own."""
  from autodistill.distill.distillation import _student_losses
  from autodistill.distill.initialization import layer_mapping
  workdir, first, _ = tiny_run
  teacher, student = tiny_teacher(), tiny_student()
  config = DistillConfig(steps_per_block=2, pretrain_steps=6, warmup_steps=2, log_every=1,
                         progress=False)
  recipe = _Recipe.of(config.for_teacher(teacher), student.num_blocks)
  programs = _student_losses(student, teacher.config, recipe,
                             layer_mapping(student.num_blocks, teacher.config.num_layers),
                             0, sharding.DEFAULT_LOGICAL_AXIS_RULES).programs
  compiled = {key: program.compiles for key, program in programs.items()}
  assert len(compiled) == 5 and set(compiled.values()) == {1}  # 2 steps, 2 fresh states, 1 eval
  _, train, evaluation = tiny_data(tmp_path / "data")
  again = distill(student, teacher, train, evaluation, tmp_path / "again", config,
                  log=lambda _: None)
  assert {key: program.compiles for key, program in programs.items()} == compiled
  assert again.plan.pretrain_steps == 6 and again.resumed_from is None
  steps = [r["step"] for r in read_metrics(tmp_path / "again") if "loss" in r]
  assert len(steps) == 2 * 2 + 6
  kernel = lambda params: jax.device_get(  # noqa: E731
      params["encoder"]["block_0"]["ffn_0_intermediate"]["kernel"])
  assert not np.allclose(kernel(again.params), kernel(first.params))  # 10 steps, not 7


def test_metrics_hold_every_loss_term_per_phase(tiny_run):
  workdir, _, _ = tiny_run
  records = [r for r in read_metrics(workdir) if "loss" in r]
  stages = {r["phase"] for r in records}
  assert stages == {"progressive/block_0", "progressive/block_1", "pretraining_distillation"}
  for r in records:
    keys = {"mha", "fm"} if r["phase"].startswith("progressive") else {"mlm", "mlm_distill", "nsp"}
    assert keys | {"loss", "grad_norm", "param_norm", "learning_rate"} <= set(r)
    assert all(np.isfinite(r[k]) for k in keys)
  assert [r["step"] for r in records] == list(range(1, 11))
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))


def test_distilled_student_loads_back(tiny_run):
  workdir, result, _ = tiny_run
  config, params, summary = load_distilled(workdir)
  assert config == result.student
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(jax.device_get(result.params))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert summary["student"] == result.student.name


def test_per_prediction_scores_of_a_distilled_student_average_to_its_evaluation(tiny_run,
                                                                               tmp_path):
  from autodistill.distill.distillation import PREDICTIONS_FILE, distilled_predictions
  workdir, result, _ = tiny_run
  _, _, evaluation = tiny_data(tmp_path / "data")  # the same corpus and split, rebuilt
  each = distilled_predictions(workdir, evaluation)
  final = result.final
  assert len(each["mlm_loss"]) == len(each["mlm_correct"]) == final["mlm_predictions"]
  np.testing.assert_allclose(each["mlm_correct"].mean(), final["mlm_accuracy"], rtol=1e-6)
  np.testing.assert_allclose(each["mlm_loss"].mean(), final["mlm_loss"], rtol=1e-5)
  assert (workdir / PREDICTIONS_FILE).exists()
  again = distilled_predictions(workdir, None)  # read back: the split is not touched
  np.testing.assert_array_equal(again["mlm_loss"], each["mlm_loss"])


def test_a_student_distilled_in_an_elastic_envelope_is_the_student_distilled_alone(
    tiny_run, tmp_path):
  workdir, alone, _ = tiny_run
  teacher, student = tiny_teacher(), tiny_student()
  # Wider attention and FFN, more heads, fewer FFNs and blocks: the envelope (2 blocks of 2 FFNs)
  # differs from each student in every factor, and stays small (its steps compile in ~2 x 8 s).
  wider = tiny_student(hidden_size=28, bottleneck_size=24, num_heads=4, intermediate_size=40,
                       num_ffn=1, num_blocks=1)
  config = DistillConfig(steps_per_block=3, pretrain_steps=4, warmup_steps=1, log_every=1,
                         progress=False)
  envelope, why = elastic_envelope([student, wider], teacher.config, config)
  assert envelope is not None, why
  _, train, evaluation = tiny_data(tmp_path / "data")
  result = distill(student, teacher, train, evaluation, tmp_path / "elastic", config,
                   log=lambda _: None, envelope=envelope)
  # The same training, step for step: same parameters (to float rounding), same evaluations.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               jax.device_get(result.params), jax.device_get(alone.params))
  for phase, metrics in alone.evals.items():
    for key in ("mlm_loss", "nsp_loss"):
      np.testing.assert_allclose(result.evals[phase][key], metrics[key], rtol=1e-5)
  summary = json.loads((tmp_path / "elastic" / "result.json").read_text())
  assert summary["envelope"]["num_heads"] == 4
  assert json.loads((workdir / "result.json").read_text())["envelope"] is None

  # Another student of the envelope (other widths, heads, FFNs and blocks) runs on the programs
  # the first one compiled: every kept program has still been compiled once.
  recipe = _Recipe.of(config, envelope.config.num_blocks)
  programs = _elastic_losses(envelope, teacher.config, recipe,
                             sharding.DEFAULT_LOGICAL_AXIS_RULES).programs

  def traces():
    return {key: program.compiles for key, program in programs.items()}

  traced = traces()
  assert len(traced) == 5 and set(traced.values()) == {1}  # 2 steps, 2 fresh states, 1 eval
  _, train, evaluation = tiny_data(tmp_path / "data")
  other = distill(wider, teacher, train, evaluation, tmp_path / "wider", config,
                  log=lambda _: None, envelope=envelope)
  assert traces() == traced
  assert jax.tree.map(np.shape, other.params) == jax.tree.map(
      np.shape, hf.init_params(wider, jax.random.PRNGKey(0)))


def test_scanned_blocks_train_as_the_unrolled_blocks(tiny_run, tmp_path):
  """scan_blocks: the blocks' parameters stored stacked and run under nn.scan train to the
  unrolled run's parameters and evaluations (LAMB's trust ratio per block, the progressive
  stages' per-block masks); the result and student/ come back in the usual per-block layout."""
  workdir, alone, _ = tiny_run
  config = DistillConfig(steps_per_block=3, pretrain_steps=4, warmup_steps=1, log_every=1,
                         progress=False, scan_blocks=True)
  _, train, evaluation = tiny_data(tmp_path / "data")
  messages = []
  result = distill(tiny_student(), tiny_teacher(), train, evaluation, tmp_path / "scan", config,
                   log=messages.append)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               jax.device_get(result.params), jax.device_get(alone.params))
  for phase, metrics in alone.evals.items():
    for key in ("mlm_loss", "nsp_loss"):
      np.testing.assert_allclose(result.evals[phase][key], metrics[key], rtol=1e-5)
  _, saved, _ = load_distilled(tmp_path / "scan")
  assert jax.tree.structure(saved) == jax.tree.structure(alone.params)
  # A stage trains one block of the stacked leaves: the same count as with one leaf per block.
  stage = [m for m in messages if m.startswith("progressive/block_1:") and "training" in m]
  with_leaves = [m for m in tiny_run[2] if m.startswith("progressive/block_1:") and "training" in m]
  assert stage == with_leaves and stage
  with pytest.raises(ValueError, match="progressive_program='shared'"):
    config.replace(progressive_program="per_block")
  # Killed in the second stage after a checkpoint at step 4: the rerun resumes from the stacked
  # checkpoint and ends exactly where the uninterrupted run did.
  killed = config.replace(checkpoint_every=4)
  _, train, evaluation = tiny_data(tmp_path / "data")
  with pytest.raises(_Killed):
    distill(tiny_student(), tiny_teacher(), _Dying(train, 5), evaluation, tmp_path / "killed",
            killed, log=lambda _: None)
  _, train, evaluation = tiny_data(tmp_path / "data")
  resumed = distill(tiny_student(), tiny_teacher(), train, evaluation, tmp_path / "killed",
                    killed, log=lambda _: None)
  assert resumed.resumed_from == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.params),
               jax.device_get(result.params))
  # Recompilation guard: the three runs compiled each of their programs once (2 steps, 2 fresh
  # states, 1 evaluation).
  from autodistill.distill.distillation import _student_losses
  from autodistill.distill.initialization import layer_mapping
  teacher, student = tiny_teacher(), tiny_student()
  programs = _student_losses(student, teacher.config,
                             _Recipe.of(config.for_teacher(teacher), student.num_blocks),
                             layer_mapping(student.num_blocks, teacher.config.num_layers), 0,
                             sharding.DEFAULT_LOGICAL_AXIS_RULES).programs
  assert len(programs) == 5 and {p.compiles for p in programs.values()} == {1}


class _Killed(Exception):
  pass


class _Dying:
  """A training pipeline whose run dies (raises :class:`_Killed`) when batch ``at`` is fetched."""

  def __init__(self, data, at):
    self._data, self._at, self._fetched = data, at, 0

  def __getattr__(self, name):
    return getattr(self._data, name)

  def device_batches(self, mesh, data_axis="data"):
    for batch in self._data.device_batches(mesh, data_axis):  # one generator per phase
      if self._fetched == self._at:
        raise _Killed()
      self._fetched += 1
      yield batch


def test_multi_layer_objective_is_one_joint_phase_on_every_blocks_hidden_states(tmp_path):
  """objective="multi_layer" (KD-NAS): one phase of the recipe's total steps training every
  block and projection at once; its first logged hidden-state term is the mean over blocks of
  the masked MSE between each projected student block and its mapped teacher layer, recomputed
  here in NumPy from the initial parameters; scanned blocks give the same run."""
  from autodistill.distill import initial_params, layer_mapping
  from autodistill.models import BertForPreTraining, StudentForPreTraining
  teacher, student = tiny_teacher(), tiny_student()
  config = DistillConfig(steps_per_block=2, pretrain_steps=3, warmup_steps=1, log_every=1,
                         progress=False, objective="multi_layer", logits_weight=0.5,
                         scan_blocks=False)
  _, train, evaluation = tiny_data(tmp_path / "data")
  batch = {k: np.asarray(v) for k, v in next(iter(train.device_batches(
      sharding.make_mesh((1, 1), devices=jax.devices()[:1])))).items()}
  train.reset()
  result = distill(student, teacher, train, evaluation, tmp_path / "ml", config,
                   log=lambda _: None)
  assert list(result.evals) == ["init", "multi_layer_distillation"]
  assert result.final is result.evals["multi_layer_distillation"]
  records = [r for r in read_metrics(tmp_path / "ml") if "loss" in r]
  assert [r["step"] for r in records] == list(range(1, 2 * 2 + 3 + 1))
  assert {r["phase"] for r in records} == {"multi_layer_distillation"}

  config = config.for_teacher(teacher)
  params = initial_params(student, teacher.config, teacher.params, config)
  args = (batch["input_ids"], batch["segment_ids"], batch["input_mask"])
  t_states = BertForPreTraining(teacher.config).apply({"params": teacher.params}, *args)
  s_states = StudentForPreTraining(student).apply({"params": params["student"]}, *args)
  mask = batch["input_mask"].astype(bool)
  expected = []
  for k, layer in enumerate(layer_mapping(student.num_blocks, teacher.config.num_layers)):
    proj = params["projections"][f"block_{k}"]
    s = np.asarray(s_states.hidden_states[k + 1], np.float64) @ np.asarray(proj["kernel"])
    diff = np.asarray(t_states.hidden_states[layer]) - (s + np.asarray(proj["bias"]))
    expected.append(np.mean(diff[mask] ** 2))
  np.testing.assert_allclose(records[0]["hidden"], np.mean(expected), rtol=1e-4)
  np.testing.assert_allclose(records[0]["loss"], records[0]["hidden"] + 0.5 * (
      0.5 * records[0]["mlm"] + 0.5 * records[0]["mlm_distill"]
      + config.nsp_weight * records[0]["nsp"]), rtol=1e-5)

  _, train, evaluation = tiny_data(tmp_path / "data")
  scanned = distill(student, teacher, train, evaluation, tmp_path / "scan",
                    config.replace(scan_blocks=True), log=lambda _: None)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               jax.device_get(scanned.params), jax.device_get(result.params))
  with pytest.raises(ValueError, match="unknown objective 'tinybert'"):
    config.replace(objective="tinybert")


def test_students_that_cannot_share_an_envelope_are_named():
  teacher = tiny_teacher()  # 32 wide: a 32-wide student needs no feature projection
  envelope, why = elastic_envelope([tiny_student(), tiny_student(hidden_size=32)],
                                   teacher.config, DistillConfig())
  assert envelope is None and "lacks the teacher's width 32, so it needs feature" in why
  envelope, why = elastic_envelope([tiny_student()], teacher.config,
                                   DistillConfig(attention_loss="relation"))
  assert envelope is None and "attention_loss='kl'" in why


def test_relation_distillation_with_mismatched_heads_and_nsp_dropped(tmp_path):
  _, train, evaluation = tiny_data(tmp_path / "data")
  # Teacher: 4 heads x 8 wide; student: 3 heads, 16-wide attention (heads do not line up).
  student = tiny_student(num_heads=3, bottleneck_size=18, num_blocks=1)
  config = DistillConfig(steps_per_block=2, pretrain_steps=2, warmup_steps=0,
                         attention_loss="relation", progress=False, eval_at_start=False,
                         log_every=1)
  # A teacher at chance on NSP (52% against a 50% majority over 1,000 examples): L_N leaves eq. 3.
  teacher = dataclasses.replace(tiny_teacher(), evals={
      "mlm_accuracy": 0.1, "nsp_accuracy": 0.52, "nsp_majority": 0.5, "examples": 1000.0})
  result = distill(student, teacher, train, evaluation, tmp_path / "w", config,
                   log=lambda _: None)
  records = [r for r in read_metrics(tmp_path / "w")
             if r.get("phase") == "progressive/block_0" and "loss" in r]
  assert records and all(np.isfinite(r["mha"]) and r["mha"] >= 0 for r in records)
  assert np.isfinite(result.mlm_accuracy)
  records = [r for r in read_metrics(tmp_path / "w")
             if r.get("phase") == "pretraining_distillation" and "loss" in r]
  assert len(records) == 2
  for r in records:  # the NSP loss is still reported, but not part of the loss
    assert r["nsp"] > 0.1
    np.testing.assert_allclose(r["loss"], 0.5 * r["mlm"] + 0.5 * r["mlm_distill"], rtol=1e-5)
  assert json.loads((tmp_path / "w" / "result.json").read_text())["nsp_weight"] == 0.0


def test_nsp_is_dropped_only_for_a_teacher_at_chance():
  # 3 standard errors of an accuracy at p = 0.5 over 900 examples: 3 * sqrt(0.25 / 900) = 5%.
  at_chance = {"nsp_accuracy": 0.549, "nsp_majority": 0.5, "examples": 900.0}
  learned = {"nsp_accuracy": 0.551, "nsp_majority": 0.5, "examples": 900.0}
  assert not nsp_verdict(at_chance)[0] and nsp_verdict(learned)[0]
  assert "5.0%, 900 examples" in nsp_verdict(at_chance)[1]
  # Against a 60% majority over 2,400 examples: 3 * sqrt(0.24 / 2400) = 3%.
  assert not nsp_verdict({"nsp_accuracy": 0.629, "nsp_majority": 0.6, "examples": 2400})[0]
  assert nsp_verdict({"nsp_accuracy": 0.631, "nsp_majority": 0.6, "examples": 2400})[0]

  def weight(config, evals):
    return config.for_teacher(dataclasses.replace(tiny_teacher(), evals=evals)).nsp_weight
  assert not dataclasses.replace(tiny_teacher(), evals=at_chance).nsp_learned
  assert weight(DistillConfig(), at_chance) == 0.0
  assert weight(DistillConfig(), learned) == 1.0
  assert weight(DistillConfig(), {}) == 1.0  # no held-out evaluation: eq. 3 as published
  assert weight(DistillConfig(nsp_weight=0.5), at_chance) == 0.5  # set explicitly: kept
  with pytest.raises(ValueError, match="nsp_weight must be >= 0"):
    DistillConfig(nsp_weight=-1.0)


def test_teacher_without_heads_and_vocab_mismatch_are_explained(tmp_path):
  _, train, evaluation = tiny_data(tmp_path / "data")
  teacher = tiny_teacher()
  headless = PreparedTeacher(teacher.config, {"encoder": teacher.params["encoder"]}, "x", (), {})
  with pytest.raises(ValueError, match="prepare_teacher"):
    distill(tiny_student(), headless, train, evaluation, tmp_path / "a", DistillConfig())
  with pytest.raises(ValueError, match="vocab_size"):
    distill(tiny_student(vocab_size=100), teacher, train, evaluation, tmp_path / "b",
            DistillConfig(progress=False), log=lambda _: None)


# ---------------------------------------------------------------------------------------------
# Teacher preparation with the real MiniLM teacher


def test_minilm_heads_are_fitted_on_the_frozen_encoder_once_and_cached(minilm_dir, tmp_path):
  from autodistill.data import ExampleConfig, TextFiles, Tokenizer, pretraining_data
  # English-ish text the MiniLM vocabulary covers: the synthetic corpus is made of novel words,
  # so use plain sentences instead.
  docs = tmp_path / "docs"
  docs.mkdir()
  rng = np.random.default_rng(0)
  words = ("the market rose as investors bought shares in the company while the team won the "
           "match and the minister said the election would be held next year").split()
  for d in range(40):
    sentences = [" ".join(rng.choice(words, 12)).capitalize() + "." for _ in range(10)]
    (docs / f"{d}.txt").write_text(" ".join(sentences))
  tokenizer = Tokenizer.from_path(minilm_dir)
  train, evaluation = pretraining_data(TextFiles(docs), tokenizer, global_batch_size=8,
                                       examples=ExampleConfig(max_seq_length=32,
                                                              max_predictions_per_seq=5),
                                       eval_fraction=0.1, seed=0)
  original = hf.load_bert(minilm_dir).params["encoder"]
  optimizer = OptimizerConfig(learning_rate=1e-2, warmup_steps=2, weight_decay=0.0)
  messages = []
  heads = functools.partial(prepare_teacher, minilm_dir, train, evaluation, tmp_path / "w",
                            fit_steps=12, adapt="heads", optimizer=optimizer, progress=False,
                            log=messages.append)
  first = heads()
  assert first.fitted == ("mlm_head", "nsp_head") and not first.cached
  assert {"mlm_head", "nsp_head"} <= set(first.params)
  run_dir = next((tmp_path / "w" / "teacher").glob("fit-*"))
  history = [r for r in read_metrics(run_dir) if "mlm" in r]
  start = [r for r in read_metrics(run_dir) if r.get("phase") == "init"][0]
  # Fitting helps: the held-out MLM loss falls from the random heads' value.
  assert first.evals["mlm_loss"] < start["eval/mlm_loss"] - 0.5
  assert history[-1]["mlm"] < history[0]["mlm"]
  # The encoder is untouched: only the heads were trained.
  for a, b in zip(jax.tree.leaves(original), jax.tree.leaves(first.params["encoder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  second = heads()
  assert second.cached and second.evals == first.evals
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)

  with pytest.raises(FileNotFoundError, match="config.json"):
    prepare_teacher(tmp_path / "nowhere", train, evaluation, tmp_path / "w")
  assert StudentConfig.from_name("Model_128_64_2_256_2").vocab_size == first.config.vocab_size


def test_a_headless_teacher_gets_continued_mlm_and_another_recipe_adapts_it_again(tmp_path):
  """The default ("auto") for a checkpoint without heads: the whole model trains, the encoder
  at its own (smaller) rate; the cached result serves the same recipe only."""
  from safetensors.numpy import load_file, save_file
  teacher = tiny_teacher()
  source = tmp_path / "teacher"
  hf.export_bert(teacher.config, teacher.params, source)
  weights = load_file(str(source / "model.safetensors"))
  save_file({k: v for k, v in weights.items() if not k.startswith("cls.")},
            str(source / "model.safetensors"))
  original = hf.load_bert(source)
  assert {"mlm_head", "nsp_head"} <= set(original.missing)
  _, train, evaluation = tiny_data(tmp_path / "data")
  messages = []
  adapt = functools.partial(prepare_teacher, source, train, evaluation, tmp_path / "w",
                            fit_steps=3, progress=False, log=messages.append)
  adapted = adapt()
  assert not adapted.cached and adapted.fitted == ("encoder", "mlm_head", "nsp_head")
  assert any("continued MLM of the whole teacher (encoder at 0.0001, heads at 0.002)" in m
             for m in messages), messages
  moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
           zip(jax.tree.leaves(original.params["encoder"]),
               jax.tree.leaves(adapted.params["encoder"]))]
  # Adam moves a weight by about its learning rate per step, here (warm-up over 20 steps)
  # 1e-4 * (0 + 1 + 2) / 20 = 1.5e-5 in all; at the heads' rate it would be 20x that.
  assert 0 < max(moved) < 3e-5, max(moved)
  again = adapt()
  assert again.cached and again.fitted == adapted.fitted and again.evals == adapted.evals
  messages.clear()
  heads = adapt(adapt="heads")  # another recipe: not served from the first one's cache
  assert not heads.cached and heads.fitted == ("mlm_head", "nsp_head")
  assert any("adapted with other settings" in m for m in messages), messages
  for a, b in zip(jax.tree.leaves(original.params["encoder"]),
                  jax.tree.leaves(heads.params["encoder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_pretrain_teacher_from_scratch_with_the_same_trainer(tmp_path):
  from autodistill.distill import pretrain_teacher
  from autodistill.models import hf
  _, train, evaluation = tiny_data(tmp_path / "data")
  config = tiny_teacher().config
  teacher = pretrain_teacher(config, train, evaluation, tmp_path / "w", steps=4,
                             progress=False, log=lambda _: None)
  assert set(teacher.evals) >= {"mlm_accuracy", "nsp_accuracy"}
  reloaded = hf.load_bert(tmp_path / "w" / "teacher" / "pretrained")
  assert reloaded.complete
  for a, b in zip(jax.tree.leaves(reloaded.params), jax.tree.leaves(teacher.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  steps = [r["step"] for r in read_metrics(tmp_path / "w" / "teacher" / "pretrain") if "loss" in r]
  assert steps and steps[-1] == 4


def test_held_out_batches_are_built_once_and_give_the_same_accuracy(tmp_path, monkeypatch):
  from autodistill import sharding
  from autodistill.distill import evaluation
  from autodistill.distill.distillation import initial_params
  from autodistill.models.student import StudentForPreTraining
  _, _, held_out = tiny_data(tmp_path / "data")
  teacher, student = tiny_teacher(), tiny_student()
  params = initial_params(student, teacher.config, teacher.params, DistillConfig())
  model = StudentForPreTraining(student)
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])

  def apply_fn(p, ids, segments, mask, positions):
    return model.apply({"params": p["student"]}, ids, segments, mask, masked_positions=positions)

  passes = []
  real = held_out.device_batches
  monkeypatch.setattr(held_out, "device_batches",
                      lambda *a, **k: passes.append(1) or real(*a, **k))
  evaluate = evaluation.make_pretraining_evaluator(apply_fn, held_out, mesh)
  first = evaluate(params)
  assert evaluate(params) == first and len(passes) == 1  # the second pass reuses the batches
  # The majority NSP label's share, counted here from the held-out examples themselves.
  labels = np.concatenate([np.asarray(b["next_sentence_labels"])[np.asarray(b["example_mask"]) > 0]
                           for b in real(mesh, "data")])
  assert len(labels) == first["examples"] > 0
  np.testing.assert_allclose(first["nsp_majority"], max(labels.mean(), 1 - labels.mean()))
  # A split over the size limit is read from the pipeline on every pass, with the same result.
  monkeypatch.setattr(evaluation, "DEVICE_CACHE_BYTES", 1)
  _, _, big = tiny_data(tmp_path / "data")  # the same split, as a new pipeline
  streamed = evaluation.make_pretraining_evaluator(apply_fn, big, mesh)
  assert streamed(params) == first == streamed(params)
  assert evaluation._DEVICE_BATCHES[big][(mesh, "data")] is None


def test_initial_params_start_from_given_student_weights():
  from autodistill.distill.distillation import initial_params
  from autodistill.models import hf
  student, teacher = tiny_student(), tiny_teacher()
  start = hf.init_params(student, jax.random.PRNGKey(5))
  params = initial_params(student, teacher.config, teacher.params, DistillConfig(), start=start)
  for a, b in zip(jax.tree.leaves(params["student"]), jax.tree.leaves(start)):
    np.testing.assert_array_equal(a, b)
  assert params["projections"]  # still grown from the teacher
  with pytest.raises(ValueError, match="do not fit"):
    initial_params(student.replace(hidden_size=32), teacher.config, teacher.params,
                   DistillConfig(), start=start)
