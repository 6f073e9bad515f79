"""The one trainer: freezing, sharding equivalence, accumulation, recompiles, failures, resume,
and closing what a run opens on every way out."""

import pathlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill import sharding
from autodistill.distill import DistillConfig, distillation_phases, initial_params
from autodistill.errors import CorruptFileError
from autodistill.models import BertForPreTraining, StudentForPreTraining
from autodistill.train import (IncompatibleWorkdirError, NonFiniteLossError, OptimizerConfig,
                               Phase, RunOptions, read_metrics, run_phases)

from synthetic import kill_then_resume, tiny_data, tiny_student, tiny_teacher

HERE = pathlib.Path(__file__).parent


def _setup(tmp_path, mesh, student=None, **config):
  """Phases, initial params and shardings of a tiny distillation on ``mesh``."""
  teacher = tiny_teacher()
  student = student or tiny_student()
  cfg = DistillConfig(steps_per_block=3, pretrain_steps=3, warmup_steps=1, progress=False,
                      **config)
  rules = sharding.DEFAULT_LOGICAL_AXIS_RULES
  t_sh = sharding.model_shardings(BertForPreTraining(teacher.config), mesh, rules)
  params = initial_params(student, teacher.config, teacher.params, cfg)
  rep = sharding.replicated(mesh)
  scan = cfg.scans(student.num_blocks)
  p_sh = {"student": sharding.model_shardings(
              StudentForPreTraining(student, scan_blocks=scan), mesh, rules),
          "projections": jax.tree.map(lambda _: rep, params["projections"])}
  phases = distillation_phases(student, teacher.config, teacher.params, cfg, t_sh)
  _, train, _ = tiny_data(tmp_path / "data")
  return phases, params, p_sh, train


def _run(phases, params, p_sh, train, mesh, workdir, log=lambda _: None, **options):
  train.reset()  # every run here starts from the first batch
  return run_phases(phases, params, param_shardings=p_sh, mesh=mesh, train_data=train,
                    workdir=workdir, options=RunOptions(**{"progress": False, **options}),
                    log=log)


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(jax.device_get(tree))}


def test_progressive_stage_leaves_other_blocks_bit_identical(tmp_path):
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, p_sh, train = _setup(tmp_path, mesh)
  before = _leaves(params)
  after_0 = _leaves(_run(phases[:1], params, p_sh, train, mesh, tmp_path / "a").params)
  changed = {k for k in before if not np.array_equal(before[k], after_0[k])}
  # Stage 0 trains block 0 and its projection only; everything else is bit-identical.
  assert changed and all("'block_0'" in k for k in changed), sorted(changed)
  assert any("'projections']['block_0'" in k for k in changed)
  assert not any("block_1" in k or "embeddings" in k or "mlm_head" in k for k in changed)
  # Stage 1 after stage 0: block 0 (now frozen) and the embedding stay exactly as stage 0 left them.
  after_1 = _leaves(_run(phases[:2], params, p_sh, train, mesh, tmp_path / "b").params)
  for k, v in after_0.items():
    if "block_1" not in k:
      assert np.array_equal(v, after_1[k]), k
  assert any(not np.array_equal(after_0[k], after_1[k]) for k in after_0 if "'block_1'" in k)


def test_frozen_leaves_hold_no_optimizer_state(tmp_path):
  import optax
  from autodistill.train import freeze_labels, make_optimizer
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, _, _ = _setup(tmp_path, mesh)
  labels = freeze_labels(params, phases[0].trainable)
  state = make_optimizer(phases[0].optimizer, 3, labels).init(params)
  arrays = [x for x in jax.tree.leaves(state) if hasattr(x, "size") and x.size > 1]
  trainable = sum(x.size for x, l in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
                  if l == "train")
  # Adam's mu and nu for the trainable leaves only (plus scalar counts).
  assert sum(x.size for x in arrays) == 2 * trainable
  assert any(isinstance(x, optax.MaskedNode)
             for x in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, optax.MaskedNode)))


# One block and one FFN: the layout over the mesh is the same for every block, and an 8-way SPMD
# program of fewer leaves compiles faster on 2 cores (these tests are the sharding run's time).
SHARDED_STUDENT = tiny_student(num_blocks=1, num_ffn=1)


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
  """Block 0's progressive stage and pre-training distillation on one device: the reference of
  both mesh shapes below (parameters by key, the logged losses)."""
  tmp_path = tmp_path_factory.mktemp("single_device")
  single = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, p_sh, train = _setup(tmp_path, single, SHARDED_STUDENT)
  ref = _run([phases[0], phases[-1]], params, p_sh, train, single, tmp_path / "one")
  return _leaves(ref.params), [r["loss"] for r in read_metrics(tmp_path / "one")]


@pytest.mark.sharding
@pytest.mark.parametrize("shape", [(8, 1), (4, 2)])
def test_sharded_step_matches_single_device(tmp_path, shape, single_device_run):
  ref_params, ref_loss = single_device_run
  mesh = sharding.make_mesh(shape)
  phases, params, p_sh, train = _setup(tmp_path, mesh, SHARDED_STUDENT)
  out = _run([phases[0], phases[-1]], params, p_sh, train, mesh, tmp_path / "many")
  # The parameters really are laid out over the mesh (model axis splits the MLM bias' vocab).
  bias = out.params["student"]["mlm_head"]["bias"]
  assert len(bias.sharding.device_set) == 8
  for k, v in ref_params.items():
    np.testing.assert_allclose(_leaves(out.params)[k], v, rtol=2e-4, atol=2e-5, err_msg=k)
  out_loss = [r["loss"] for r in read_metrics(tmp_path / "many")]
  np.testing.assert_allclose(out_loss, ref_loss, rtol=1e-4)


@pytest.mark.sharding
def test_scanned_blocks_shard_and_train_as_the_unrolled_on_one_device(tmp_path,
                                                                      single_device_run):
  """``scan_blocks`` on a (4, 2) mesh: the stacked leaves are laid out over the model axis as
  one block's are, and train to the single-device unrolled run's parameters."""
  from autodistill.models.student import unstack_blocks
  ref_params, ref_loss = single_device_run
  mesh = sharding.make_mesh((4, 2))
  phases, params, p_sh, train = _setup(tmp_path, mesh, SHARDED_STUDENT, scan_blocks=True)
  out = _run([phases[0], phases[-1]], params, p_sh, train, mesh, tmp_path / "scan")
  kernel = out.params["student"]["encoder"]["blocks"]["ffn_0_intermediate"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, "model")
  got = jax.device_get(out.params)
  got = {"student": unstack_blocks(got["student"]),
         "projections": {"block_0": jax.tree.map(lambda x: x[0], got["projections"]["blocks"])}}
  for k, v in ref_params.items():
    np.testing.assert_allclose(_leaves(got)[k], v, rtol=2e-4, atol=2e-5, err_msg=k)
  np.testing.assert_allclose([r["loss"] for r in read_metrics(tmp_path / "scan")], ref_loss,
                             rtol=1e-4)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, p_sh, train = _setup(tmp_path, mesh)
  stage = phases[0]  # L_MHA + L_FM average over tokens; equal-length micro-batches make it exact
  import dataclasses
  accum = dataclasses.replace(stage, optimizer=stage.optimizer.replace(grad_accum_steps=2))
  one = _run([stage], params, p_sh, train, mesh, tmp_path / "one", log_every=1)
  two = _run([accum], params, p_sh, train, mesh, tmp_path / "two", log_every=1)
  # Real-token counts differ a little between micro-batches, so this is close, not exact.
  for k, v in _leaves(one.params).items():
    np.testing.assert_allclose(_leaves(two.params)[k], v, rtol=0.05, atol=2e-3, err_msg=k)
  assert _leaves(one.params) != {}


def test_one_compile_per_phase(tmp_path):
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, p_sh, train = _setup(tmp_path, mesh)
  traces = []

  def counted(loss_fn):
    def wrapped(*args):
      traces.append(1)
      return loss_fn(*args)
    return wrapped

  import dataclasses
  phase = dataclasses.replace(phases[-1], num_steps=6, loss_fn=counted(phases[-1].loss_fn))
  _run([phase], params, p_sh, train, mesh, tmp_path / "w", checkpoint_every=2)
  assert len(traces) == 1


def _step_traces(run):
  """(result of ``run()``, how many times JAX traced a ``train_step`` during it)."""
  traces = []

  def listener(event, duration, **kwargs):
    del duration
    if event == "/jax/core/compile/jaxpr_trace_duration" and kwargs.get("fun_name") == "train_step":
      traces.append(1)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    return run(), len(traces)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def test_progressive_stages_as_one_program_equal_one_program_per_block(tmp_path):
  # The shared program (stage index and block mask as data) against the per-block programs
  # (stage and frozen blocks baked in): the same parameters after all K stages, one trace of
  # the step instead of K, and what progressive transfer never trains bit-identical.
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  student = tiny_student()
  runs, traces = {}, {}
  for program in ("per_block", "shared"):
    phases, params, p_sh, train = _setup(tmp_path, mesh, student, progressive_program=program)
    progressive = phases[:-1]
    assert len(progressive) == 2
    runs[program], traces[program] = _step_traces(
        lambda: _run(progressive, params, p_sh, train, mesh, tmp_path / program))
  assert traces == {"per_block": 2, "shared": 1}
  shared, per_block = _leaves(runs["shared"].params), _leaves(runs["per_block"].params)
  initial = _leaves(params)
  for k, v in per_block.items():
    np.testing.assert_allclose(shared[k], v, rtol=0, atol=1e-5, err_msg=k)
    if "block_" not in k:  # the embedding and heads: never trained by progressive transfer
      assert np.array_equal(shared[k], initial[k]) and np.array_equal(v, initial[k]), k
  assert any(not np.array_equal(shared[k], initial[k]) for k in shared if "'block_1'" in k)
  # (test_progressive_stage_leaves_other_blocks_bit_identical checks one shared stage alone.)


def test_non_finite_loss_raises_typed_error_naming_step_and_term(tmp_path):
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, p_sh, train = _setup(tmp_path, mesh)

  def exploding(params, batch, rng, context):
    loss, metrics = phases[-1].loss_fn(params, batch, rng, context)
    step_marker = jnp.sum(batch["input_ids"]) * 0.0  # keeps the loss a function of the data
    bad = jnp.where(metrics["nsp"] > -1.0, jnp.inf, 0.0) + step_marker
    return loss + bad, dict(metrics, nsp=metrics["nsp"] + bad)

  phase = Phase("boom", 4, exploding, OptimizerConfig(), context=phases[-1].context)
  with pytest.raises(NonFiniteLossError) as info:
    _run([phase], params, p_sh, train, mesh, tmp_path / "w")
  assert info.value.step == 1 and info.value.phase == "boom"
  assert "nsp" in info.value.terms and "loss" in info.value.terms
  assert "mlm" not in info.value.terms
  assert "step 1" in str(info.value)


def test_resume_in_process_and_incompatible_workdir(tmp_path):
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  phases, params, p_sh, train = _setup(tmp_path, mesh)
  full = _run(phases, params, p_sh, train, mesh, tmp_path / "full", checkpoint_every=1)
  # Re-running a finished workdir restores the final state and trains nothing more.
  again = _run(phases, params, p_sh, train, mesh, tmp_path / "full", checkpoint_every=1)
  assert again.resumed_from == full.global_step
  for k, v in _leaves(full.params).items():
    np.testing.assert_array_equal(_leaves(again.params)[k], v)
  other = [Phase(p.name, p.num_steps + 1, p.loss_fn, p.optimizer, p.trainable, p.context)
           for p in phases]
  with pytest.raises(IncompatibleWorkdirError, match="fresh workdir"):
    _run(other, params, p_sh, train, mesh, tmp_path / "full")


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
  # The worker SIGKILLs itself when fetching the batch of global step 6 (mid-phase pre-training
  # distillation; checkpoints every 2 steps, saved asynchronously), then resumes.
  resumed, uninterrupted, workdir = kill_then_resume(HERE / "kill_worker.py", tmp_path, 6,
                                                     "result.json")
  for k in uninterrupted.files:
    np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)
  # The metrics history has no duplicated steps after the resume.
  steps = [(r["step"], r["phase"]) for r in read_metrics(workdir) if "loss" in r]
  assert len(steps) == len(set(steps))


# ---------------------------------------------------------------------------------------------
# What a run opens, it closes


def _toy_loss(params, batch, rng, context):
  del rng, context
  return jnp.mean((params["w"] - 10.0) ** 2) + 0.0 * batch["x"].sum(), {}


def _toy_run(workdir, params, num_steps=4):
  from autodistill.finetune.features import ArrayStream
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  rep = sharding.replicated(mesh)
  phase = Phase("toy", num_steps, _toy_loss, OptimizerConfig(learning_rate=0.5))
  stream = ArrayStream({"x": np.zeros((16, 1), np.float32)}, global_batch_size=4)
  return run_phases([phase], params, param_shardings=jax.tree.map(lambda _: rep, params),
                    mesh=mesh, train_data=stream, workdir=workdir,
                    options=RunOptions(checkpoint_every=2, progress=False), log=lambda _: None)


def test_the_schedule_is_data_one_step_serves_every_rate_and_step_count(tmp_path):
  """Phases differing only in step count, peak rate, warm-up and decay run one compiled step
  (each step's rate is an argument), and the result is that of optax with the schedule inside
  the optimizer (make_optimizer's own schedule, applied step by step)."""
  from autodistill.finetune.features import ArrayStream
  from autodistill.train import make_optimizer
  import optax
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  rep = sharding.replicated(mesh)
  configs = [OptimizerConfig(learning_rate=0.5, warmup_steps=2),
             OptimizerConfig(learning_rate=0.2, decay="cosine", end_lr_fraction=0.1),
             OptimizerConfig(learning_rate=0.3, warmup_steps=1, decay="constant")]
  steps = [5, 3, 4]
  phases = [Phase(f"p{i}", n, _toy_loss, c) for i, (n, c) in enumerate(zip(steps, configs))]
  stream = ArrayStream({"x": np.zeros((16, 1), np.float32)}, global_batch_size=4)
  params = {"w": jnp.asarray([0.0, 1.0, -2.0])}
  result, traces = _step_traces(lambda: run_phases(
      phases, params, param_shardings=jax.tree.map(lambda _: rep, params), mesh=mesh,
      train_data=stream, workdir=tmp_path / "w",
      options=RunOptions(checkpoint_every=100, log_every=1, progress=False), log=lambda _: None))
  assert traces == 1
  expected = params
  for config, n in zip(configs, steps):  # each phase: a fresh optimizer and its own schedule
    tx = make_optimizer(config, n)
    state = tx.init(expected)
    for _ in range(n):
      grads = jax.grad(lambda p: _toy_loss(p, {"x": jnp.zeros((4, 1))}, None, None)[0])(expected)
      updates, state = tx.update(grads, state, expected)
      expected = optax.apply_updates(expected, updates)
  np.testing.assert_allclose(np.asarray(result.params["w"]), np.asarray(expected["w"]),
                             rtol=1e-6, atol=1e-6)
  rates = [r["learning_rate"] for r in read_metrics(tmp_path / "w") if "learning_rate" in r]
  assert rates[:2] == [0.0, pytest.approx(0.25)] and rates[-1] == pytest.approx(0.3)


def _track_open_and_close(monkeypatch, cls):
  """Records the instances of ``cls`` created and closed from now on."""
  opened, closed = [], []
  init, close = cls.__init__, cls.close

  def tracked_init(self, *args, **kwargs):
    opened.append(id(self))
    init(self, *args, **kwargs)

  def tracked_close(self, *args, **kwargs):
    closed.append(id(self))
    return close(self, *args, **kwargs)

  monkeypatch.setattr(cls, "__init__", tracked_init)
  monkeypatch.setattr(cls, "close", tracked_close)
  return opened, closed


@pytest.mark.parametrize("failure", ["another_plan", "restore_error"])
def test_a_failed_resume_closes_the_checkpoint_manager_and_the_writer(tmp_path, monkeypatch,
                                                                      failure):
  # Regression: run_phases opened the Orbax manager (with its threads) and the TensorBoard writer
  # (with its thread and file) before resuming, but closed them only once training had begun,
  # so every failed resume leaked both.
  import orbax.checkpoint as ocp
  import tensorboardX
  _toy_run(tmp_path, {"w": jnp.zeros((1,))})
  managers = _track_open_and_close(monkeypatch, ocp.CheckpointManager)
  writers = _track_open_and_close(monkeypatch, tensorboardX.SummaryWriter)
  if failure == "another_plan":
    with pytest.raises(IncompatibleWorkdirError):
      _toy_run(tmp_path, {"w": jnp.zeros((1,))}, num_steps=5)
  else:  # the checkpointed parameters have another shape: Orbax refuses to restore them
    with pytest.raises(CorruptFileError, match="not compatible with the stored shape.*fresh "
                       "workdir.*delete .*checkpoints/4 to resume from the one before"):
      _toy_run(tmp_path, {"w": jnp.zeros((2,))})
  for opened, closed in (managers, writers):
    assert len(opened) == 1 and set(closed) == set(opened)


# ---------------------------------------------------------------------------------------------
# Ctrl-C


class _InterruptingStream:
  """An ArrayStream that sends this process SIGINT (Ctrl-C) when batch ``at`` is fetched."""

  def __init__(self, stream, at):
    self._stream, self._at, self._fetched = stream, at, 0

  def __getattr__(self, name):
    return getattr(self._stream, name)

  def device_batches(self, mesh, data_axis="data"):
    for batch in self._stream.device_batches(mesh, data_axis):
      if self._fetched == self._at:
        signal.raise_signal(signal.SIGINT)
      self._fetched += 1
      yield batch


class _Killed(Exception):
  pass


class _DyingStream(_InterruptingStream):
  """An ArrayStream whose run dies (raises :class:`_Killed`) when batch ``at`` is fetched."""

  def device_batches(self, mesh, data_axis="data"):
    for batch in self._stream.device_batches(mesh, data_axis):
      if self._fetched == self._at:
        raise _Killed()
      self._fetched += 1
      yield batch


def _two_phase_toy_run(workdir, interrupt_at=None, log=lambda _: None, kill_at=None):
  from autodistill.finetune.features import ArrayStream
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  rep = sharding.replicated(mesh)
  phases = [Phase("first", 5, _toy_loss, OptimizerConfig(learning_rate=0.5)),
            Phase("second", 5, _toy_loss, OptimizerConfig(learning_rate=0.2))]
  stream = ArrayStream({"x": np.zeros((16, 1), np.float32)}, global_batch_size=4)
  if interrupt_at is not None:
    stream = _InterruptingStream(stream, interrupt_at)
  if kill_at is not None:
    stream = _DyingStream(stream, kill_at)
  params = {"w": jnp.zeros((3,))}
  return run_phases(phases, params, param_shardings=jax.tree.map(lambda _: rep, params),
                    mesh=mesh, train_data=stream, workdir=workdir,
                    options=RunOptions(checkpoint_every=4, progress=False), log=log)


@pytest.mark.parametrize("interrupt_at", [2, 4])  # mid-phase; the last step of the first phase
def test_ctrl_c_checkpoints_the_step_in_flight_and_resumes_to_the_uninterrupted_result(
    tmp_path, interrupt_at):
  from autodistill.errors import Interrupted
  reference = _two_phase_toy_run(tmp_path / "reference")
  lines = []
  with pytest.raises(Interrupted, match="saved a checkpoint at step") as stopped:
    _two_phase_toy_run(tmp_path / "run", interrupt_at=interrupt_at, log=lines.append)
  # The batch fetched when Ctrl-C came is trained on, then saved: no step is lost, and the
  # checkpoint is not one of the periodic ones (every 4 steps).
  saved = interrupt_at + 1
  assert f"step {saved} of 10" in str(stopped.value)
  assert any("Ctrl-C again" in line for line in lines)
  assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                if p.name.isdigit())[-1] == saved
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
  resumed = _two_phase_toy_run(tmp_path / "run")
  assert resumed.resumed_from == saved
  np.testing.assert_array_equal(np.asarray(resumed.params["w"]), np.asarray(reference.params["w"]))
  steps = [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r]
  assert steps == sorted(set(steps))  # no step logged twice


def test_checkpoints_every_n_steps_across_phases_and_at_the_end(tmp_path, monkeypatch):
  """Phase ends do not force a save: two 5-step phases with checkpoint_every=4 save at steps 4
  and 8 (counted across the phase end at 5) and at the end, 10; a run killed after step 9
  resumes from step 8 to the uninterrupted result."""
  from autodistill.train import checkpointing
  saved = []
  save = checkpointing.Checkpoints.save

  def recording_save(self, step, *args, **kwargs):
    saved.append(step)
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpointing.Checkpoints, "save", recording_save)
  reference = _two_phase_toy_run(tmp_path / "reference")
  assert saved == [4, 8, 10]

  saved.clear()
  with pytest.raises(_Killed):
    _two_phase_toy_run(tmp_path / "killed", kill_at=9)
  assert saved == [4, 8]
  resumed = _two_phase_toy_run(tmp_path / "killed")
  assert resumed.resumed_from == 8 and saved == [4, 8, 10]
  np.testing.assert_array_equal(np.asarray(resumed.params["w"]), np.asarray(reference.params["w"]))
