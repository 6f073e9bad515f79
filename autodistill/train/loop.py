"""The one trainer behind every phase: teacher head fitting, progressive transfer, pre-training
distillation, regular distillation and fine-tuning.

A phase is a loss, a step count, an optimizer setting and a rule for which parameters train
(:class:`Phase`). :func:`run_phases` jits each phase's pure step
(:func:`~autodistill.train.state.make_train_step`) once, with ``NamedSharding`` over a ``Mesh``
(parameters from logical-axis rules, batch over the ``data`` axis, state donated), and drives it
with checkpoints, metrics, a progress bar and evaluation. Phases with the same loss function,
``trainable`` rule, optimizer settings and step count share one jitted step: what differs
between them (``context``, ``mask``) is passed to it as data, so they cost one compile.

Checkpoints (:class:`~autodistill.train.checkpointing.Checkpoints`) are numbered by global step
across phases and hold the train state plus JSON metadata: the phase plan, phase index, step
within the phase, the data pipeline's position and the evaluations so far. A run killed at any
point and started again with the same arguments resumes from the last checkpoint and reproduces
the uninterrupted run: the data order is a function of the position and the dropout key of a step
is ``fold_in(fold_in(seed, phase), step)``.

Fine-tuning adds evaluation every ``eval_every`` steps and
:class:`~autodistill.train.early_stopping.EarlyStopping`: the run keeps the parameters of its best
evaluation, saves them in the same checkpoint as the train state (so a kill can never leave the
two out of step) and ends once ``patience`` evaluations in a row did not improve on the best.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from autodistill import sharding
from autodistill.errors import Interrupted, UserError
from autodistill.progress import progress_bar
from autodistill.timing import Stopwatch
from autodistill.train.checkpointing import Checkpoints, phase_plan
from autodistill.train.early_stopping import BestSoFar, EarlyStopping
from autodistill.train.metrics import MetricWriter
from autodistill.train.optimizers import (FROZEN, TRAIN, OptimizerConfig, count_by_label,
                                          freeze_labels, learning_rate_schedule, make_optimizer)
from autodistill.train.state import (LossFn, Program, TrainState, abstract_state,
                                     make_train_step, mask_tree, place, state_initializer,
                                     state_shardings, with_shardings)

Params = Any
EvalFn = Callable[[Params], dict[str, float]]


class NonFiniteLossError(UserError, FloatingPointError):
  """A loss term became NaN or infinite; the run stopped before checkpointing that state.

  Attributes:
    phase: the phase's name.
    step: global step (1-based count of steps taken when it happened).
    terms: the non-finite terms and their values.
  """

  def __init__(self, phase: str, step: int, terms: Mapping[str, float]):
    self.phase, self.step, self.terms = phase, step, dict(terms)
    names = ", ".join(f"{k}={v}" for k, v in self.terms.items())
    super().__init__(f"non-finite loss in phase {phase!r} at step {step}: {names}. Lower the "
                     "learning rate, enable gradient clipping, or check the teacher and data; "
                     "the last checkpoint before this step is intact.")


@dataclasses.dataclass(frozen=True)
class Phase:
  """One training phase.

  Attributes:
    name: shown in progress output, metrics and checkpoints (e.g. ``"progressive/block_3"``).
    num_steps: optimizer steps.
    loss_fn: ``loss_fn(params, batch, rng, context) -> (loss, metrics)``; pure and jittable.
    optimizer: LAMB and schedule settings (the schedule spans this phase).
    trainable: ``trainable(path) -> bool`` over parameter paths; None trains everything.
    context: arrays the loss reads but never trains, e.g. the teacher's parameters. They are
      passed to the jitted step as an argument (never baked into the program as constants).
    context_shardings: NamedShardings for ``context`` (None: replicated).
    evaluate: run the evaluation at the end of this phase.
    mask: ``mask(path) -> bool`` (or, for a leaf of stacked layers, one bool per layer: see
      :func:`~autodistill.train.state.mask_tree`): of the parameters ``trainable`` trains,
      the ones this phase updates; the others stay bit-identical. Unlike ``trainable`` it is passed to the step as
      data, so phases that differ only in ``mask`` and ``context`` run one compiled program
      (e.g. the stages of progressive transfer, each training one block). None: no mask.
  """

  name: str
  num_steps: int
  loss_fn: LossFn
  optimizer: OptimizerConfig = OptimizerConfig()
  trainable: Optional[Callable[[tuple[str, ...]], bool]] = None
  context: Any = None
  context_shardings: Any = None
  evaluate: bool = True
  mask: Optional[Callable[[tuple[str, ...]], bool]] = None


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How often a run logs, checkpoints and evaluates, and what it shows.

  Attributes:
    checkpoint_every: save after every this many steps since the last checkpoint (across phase
      ends and evaluations, which do not force one), and at the end of the run; a kill loses at
      most this many steps, which a resumed run trains again to the same result.
    log_every: write metrics every this many steps (and at a phase's last step).
    eval_every: also evaluate every this many steps within a phase (0: only at phase ends).
    eval_at_start: also evaluate the initial parameters (reported as phase ``"init"``).
    keep_checkpoints: checkpoints kept on disk.
    progress: show a progress bar per phase.
    data_axis: the mesh axis the batch is split over.
  """

  checkpoint_every: int = 500
  log_every: int = 50
  eval_every: int = 0
  eval_at_start: bool = False
  keep_checkpoints: int = 2
  progress: bool = True
  data_axis: str = "data"

  def __post_init__(self):
    if self.eval_every < 0:
      raise ValueError(f"eval_every must be >= 0, not {self.eval_every}.")
    if self.checkpoint_every < 1 or self.log_every < 1:
      raise ValueError(f"checkpoint_every and log_every must be >= 1; got {self}.")


@dataclasses.dataclass
class RunResult:
  """What :func:`run_phases` returns.

  Attributes:
    params: the parameters at the end (or where early stopping ended the run).
    evals: the evaluation at the end of each phase (and ``"init"``).
    global_step: steps taken in all.
    resumed_from: the checkpoint step this call resumed from, if any.
    seconds: wall time of this call.
    history: every evaluation in order, each ``{"step", "phase", **metrics}``.
    best_params, best_step, best: with early stopping, the parameters of the best evaluation,
      its global step and its metrics.
    stopped_early_at: the global step where early stopping ended the run, else None.
    timings: wall seconds of this call by part: ``setup``, ``compile``, ``train``, ``evaluate``,
      ``checkpoint`` (see :class:`~autodistill.timing.Stopwatch`).
  """

  params: Params
  evals: dict[str, dict[str, float]]
  global_step: int
  resumed_from: Optional[int] = None
  seconds: float = 0.0
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  best_params: Optional[Params] = None
  best_step: Optional[int] = None
  best: Optional[dict[str, float]] = None
  stopped_early_at: Optional[int] = None
  timings: dict[str, float] = dataclasses.field(default_factory=dict)


def run_phases(phases: Sequence[Phase], params: Params, *, param_shardings: Params, mesh: Mesh,
               train_data: Any, workdir: str | os.PathLike, seed: int = 0,
               eval_fn: Optional[EvalFn] = None, early_stopping: Optional[EarlyStopping] = None,
               options: RunOptions = RunOptions(), writer: Optional[MetricWriter] = None,
               log: Callable[[str], None] = print,
               stopwatch: Optional[Stopwatch] = None,
               programs: Optional[dict[Any, Any]] = None) -> RunResult:
  """Runs ``phases`` in order on one parameter tree, resuming from ``workdir`` if possible.

  Args:
    phases: the plan; each phase starts from the previous one's parameters with a fresh
      optimizer state.
    params: initial parameters (host or device arrays); ignored when resuming.
    param_shardings: a NamedSharding per parameter (see :mod:`autodistill.sharding`).
    mesh: the device mesh; the batch is split over ``options.data_axis``.
    train_data: a :class:`~autodistill.data.PretrainingData` (or anything with
      ``device_batches(mesh, data_axis)``, ``state_dict()``, ``load_state_dict()`` and
      ``global_batch_size``); it continues across phases.
    workdir: holds ``checkpoints/``, ``metrics.jsonl`` and ``tensorboard/``.
    seed: root of the dropout keys.
    eval_fn: ``eval_fn(params) -> metrics`` run at the end of every phase (held-out accuracy).
    early_stopping: keep the parameters of the best evaluation and end the run (skipping any
      later phases) after ``patience`` evaluations without improvement. Needs ``eval_fn``.
    options: logging, checkpoint and evaluation cadence.
    writer: a metric writer (default: one in ``workdir``, closed when the run ends).
    log: where one-line progress messages go.
    stopwatch: where the time of this call goes by part (default: a new one); pass the caller's
      to account its own set-up in the same breakdown.
    programs: where the jitted steps are kept, by what makes their program (the phase's loss
      function, trainable predicate, optimizer and step count, and the mesh). Pass the same dict
      to runs whose phases share those (their parameters must then share shapes and shardings,
      e.g. students of one elastic envelope) and they share the compiled steps; None: this run's
      own.

  Returns:
    The :class:`RunResult`.

  Raises:
    NonFiniteLossError: a loss term became NaN/inf.
    IncompatibleWorkdirError: ``workdir`` holds checkpoints of a different plan.
    CorruptFileError: its newest checkpoint cannot be restored.
    Interrupted: Ctrl-C (SIGINT, main thread only); the run saved a checkpoint after the step in
      flight first, so calling again resumes there.
  """
  start_time = time.time()
  _check_arguments(mesh, train_data, eval_fn, early_stopping, options)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  watch = stopwatch or Stopwatch()
  # Closes the checkpoints and the writer on every way out, a failed resume included.
  with contextlib.ExitStack() as closing:
    closing.enter_context(watch("setup"))  # what the parts below leave over
    if writer is None:
      writer = closing.enter_context(MetricWriter(workdir))
    else:
      closing.callback(writer.flush)
    checkpoints = closing.enter_context(Checkpoints(workdir, options.keep_checkpoints))
    interrupt = closing.enter_context(_Interrupt(log))
    run = _Run(phases, param_shardings, jax.eval_shape(lambda p: p, params), mesh, train_data,
               workdir, seed, eval_fn, options, writer, checkpoints, log,
               _Record(best=BestSoFar(early_stopping)), interrupt, watch,
               steps=programs if programs is not None else {})
    at = run.resume(params) or run.start(params)
    while at.phase < len(phases) and run.record.best.stopped_at is None:
      state = run.train_phase(at)
      run.finish_phase(at.phase, state)
      if at.phase + 1 < len(phases) and run.record.best.stopped_at is None:
        run.stop_if_interrupted(at.phase, phases[at.phase].num_steps, state, None)
      at = _Position(at.phase + 1, 0, None, state.params)
    with watch("checkpoint"):
      checkpoints.wait_until_finished()
  return run.result(at.params, time.time() - start_time)


def _check_arguments(mesh: Mesh, train_data: Any, eval_fn: Optional[EvalFn],
                     early_stopping: Optional[EarlyStopping], options: RunOptions) -> None:
  if early_stopping is not None and eval_fn is None:
    raise ValueError("early_stopping needs an eval_fn to watch.")
  data_size = mesh.shape[options.data_axis]
  if train_data.global_batch_size % data_size:
    raise ValueError(f"the global batch size {train_data.global_batch_size} is not divisible by "
                     f"the mesh's {options.data_axis!r} axis ({data_size} devices); choose a "
                     "multiple.")


# ---------------------------------------------------------------------------------------------
# The parts of a run


@dataclasses.dataclass
class _Record:
  """What a run has measured so far; saved in every checkpoint's metadata, restored on resume."""

  evals: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  best: BestSoFar = dataclasses.field(default_factory=BestSoFar)


@dataclasses.dataclass
class _Position:
  """Where training continues: phase index, step within it, its state (None: a fresh one)."""

  phase: int
  step: int
  state: Optional[TrainState]
  params: Params


@dataclasses.dataclass(frozen=True)
class _PhaseSetup:
  """What a phase's step is built from: freezing labels, optimizer (at a unit learning rate),
  the rate of each step (``schedule[s]``), state layout."""

  labels: Optional[Params]
  optimizer: Any
  schedule: Any
  shardings: TrainState


@dataclasses.dataclass
class _Run:
  """One call of :func:`run_phases`: its fixed inputs, its record, and the parts of the loop."""

  phases: Sequence[Phase]
  param_shardings: Params
  abstract_params: Params
  mesh: Mesh
  train_data: Any
  workdir: pathlib.Path
  seed: int
  eval_fn: Optional[EvalFn]
  options: RunOptions
  writer: MetricWriter
  checkpoints: Checkpoints
  log: Callable[[str], None]
  record: _Record
  interrupt: "_Interrupt"
  watch: Stopwatch
  resumed_from: Optional[int] = None
  last_saved: Optional[int] = None
  plan: list[list[Any]] = dataclasses.field(init=False)
  # Jitted steps by what makes their program (see _program_key); shared by alike phases.
  steps: dict[tuple[Any, ...], Callable[..., Any]] = dataclasses.field(default_factory=dict)
  # offsets[i]: global steps before phase i; offsets[-1]: all steps of the plan.
  offsets: list[int] = dataclasses.field(init=False)

  def __post_init__(self):
    self.plan = phase_plan(self.phases)
    self.offsets = [0, *np.cumsum([p.num_steps for p in self.phases]).astype(int).tolist()]

  # -- start or resume ------------------------------------------------------------------------

  def start(self, params: Params) -> _Position:
    """A fresh run: the parameters placed on the mesh, evaluated first if asked."""
    params = place(params, self.param_shardings)
    if self.eval_fn is not None and self.options.eval_at_start:
      self.record.evals["init"] = self.evaluate(0, "init", params)
      self.log("init: " + _format(self.record.evals["init"]))
    return _Position(0, 0, None, params)

  def resume(self, params: Params) -> Optional[_Position]:
    """Continues from the workdir's newest checkpoint, if there is one."""
    latest = self.checkpoints.latest_step()
    if latest is None:
      return None
    with self.watch("checkpoint"):
      return self._restore(latest, params)

  def _restore(self, latest: int, params: Params) -> _Position:
    meta = self.checkpoints.restore_meta(latest, self.plan)
    i, s = int(meta["phase_index"]), int(meta["phase_step"])
    setup = self._setup(i, params)
    state = self.checkpoints.restore_state(
        latest, abstract_state(self.abstract_params, setup.optimizer, setup.shardings))
    self.train_data.load_state_dict(meta["data"])
    self.record.evals = {k: dict(v) for k, v in meta["evals"].items()}
    self.record.history = list(meta.get("history", []))
    if meta.get("best") is not None:
      best_params = None if meta["best"]["step"] is None else self.checkpoints.restore_best(
          latest, with_shardings(self.abstract_params, self.param_shardings))
      self.record.best.load_state_dict(meta["best"], best_params)
    self.writer.truncate_after(latest)
    self.resumed_from = self.last_saved = latest
    phase = self.phases[i]
    self.log(f"resumed from step {latest} ({phase.name}, step {s}/{phase.num_steps}) "
             f"in {self.workdir}")
    if s >= phase.num_steps:
      return _Position(i + 1, 0, None, state.params)
    return _Position(i, s, state, state.params)

  # -- one phase ------------------------------------------------------------------------------

  def _setup(self, i: int, params: Params) -> _PhaseSetup:
    phase = self.phases[i]
    labels = freeze_labels(params, phase.trainable) if phase.trainable else None
    optimizer = make_optimizer(phase.optimizer, phase.num_steps, labels, unit_learning_rate=True)
    return _PhaseSetup(labels, optimizer,
                       _learning_rates(phase.optimizer, phase.num_steps),
                       state_shardings(self.param_shardings, optimizer, self.abstract_params,
                                       self.mesh))

  def _compile(self, phase: Phase, setup: _PhaseSetup
               ) -> tuple[Callable[..., Any], Any, Optional[Params]]:
    """The phase's jitted step (state donated, every sharding explicit), its context and mask.

    Phases alike in everything but context and mask get the same jitted function, so JAX
    traces and compiles it once for all of them.
    """
    rep = sharding.replicated(self.mesh)
    context_sh = (jax.tree.map(lambda _: rep, phase.context)
                  if phase.context_shardings is None else phase.context_shardings)
    mask = None if phase.mask is None else mask_tree(self.abstract_params, phase.mask)
    key = (self.mesh, *_program_key(phase))
    if key not in self.steps:
      batch_sh = sharding.batch_sharding(self.mesh, data_axis=self.options.data_axis)
      step = make_train_step(phase.loss_fn, setup.optimizer, setup.labels,
                             phase.optimizer.grad_accum_steps)
      mask_sh = None if mask is None else jax.tree.map(lambda _: rep, mask)
      self.steps[key] = Program(jax.jit(
          step, in_shardings=(setup.shardings, batch_sh, context_sh, mask_sh, rep),
          out_shardings=(setup.shardings, None), donate_argnums=0))
    return self.steps[key], place(phase.context, context_sh), mask

  def train_phase(self, at: _Position) -> TrainState:
    """Runs phase ``at.phase`` from step ``at.step`` to its end (or to an early stop)."""
    with self.watch("train"):
      return self._train_phase(at)

  def _train_phase(self, at: _Position) -> TrainState:
    i, phase = at.phase, self.phases[at.phase]
    setup = self._setup(i, at.params)
    state = at.state
    if state is None:
      root = jax.random.PRNGKey(self.seed)
      key = (self.mesh, "fresh state", *_program_key(phase))
      if key not in self.steps:
        self.steps[key] = Program(state_initializer(setup.optimizer, setup.shardings))
      state = self.steps[key](at.params, jax.random.fold_in(root, i))
    self._log_start(phase, at.params, setup.labels)
    step_fn, context, mask = self._compile(phase, setup)
    steps = _StepLog(phase, self.offsets[i], at.step, self.writer, self.options)
    batches = self.train_data.device_batches(self.mesh, self.options.data_axis)
    try:
      for s in range(at.step, phase.num_steps):
        state, metrics = step_fn(state, next(batches), context, mask, setup.schedule[s])
        steps.push(s, metrics)
        if s + 1 < phase.num_steps:
          if self._after_step(i, s + 1, state, steps):
            break
          self.stop_if_interrupted(i, s + 1, state, steps)
      steps.flush()
    finally:
      batches.close()
      steps.close()
    return state

  def _after_step(self, i: int, done: int, state: TrainState, steps: _StepLog) -> bool:
    """Evaluates or checkpoints after ``done`` steps of phase ``i``; True stops the run early."""
    phase, step = self.phases[i], self.offsets[i] + done
    every = self.options.eval_every
    if self._evaluates(phase) and every and done % every == 0:
      steps.flush()
      steps.show(self.evaluate(step, phase.name, state.params))
      best = self.record.best
      if best.patience_exhausted():
        best.stopped_at = step
        self.log(f"{phase.name}: early stopping at step {step}: {best.describe_stop()}")
        return True
    if self._checkpoint_due(step):
      steps.flush()
      self.save(step, i, done, state)
    return False

  def _checkpoint_due(self, step: int) -> bool:
    """Whether ``checkpoint_every`` steps have run since the last checkpoint (or the start).

    Phase ends and evaluations do not force one: a save of a small model costs about as much as
    a training step of it (Orbax writes every array of the state), and what a kill loses is
    bounded by ``checkpoint_every`` steps either way; the evaluations and metrics after the
    checkpoint are run and written again on resume, with the same results.
    """
    return step - (self.last_saved or 0) >= self.options.checkpoint_every

  def finish_phase(self, i: int, state: TrainState) -> None:
    """Evaluates the end of phase ``i`` (unless the run stopped early in it); checkpoints it if
    one is due (:meth:`_checkpoint_due`) or the run ends there."""
    phase, best = self.phases[i], self.record.best
    if best.stopped_at is not None:
      last = self.record.history[-1]
      self.record.evals[phase.name] = {k: v for k, v in last.items()
                                       if k not in ("step", "phase")}
      self.save(best.stopped_at, i, phase.num_steps, state, force=True)
      return
    if self._evaluates(phase):
      self.record.evals[phase.name] = self.evaluate(self.offsets[i + 1], phase.name,
                                                    state.params)
      self.log(f"{phase.name}: " + _format(self.record.evals[phase.name]))
    step = self.offsets[i + 1]
    if i + 1 == len(self.phases) or self._checkpoint_due(step):  # the run's end is always saved
      self.save(step, i, phase.num_steps, state, force=True)

  def _log_start(self, phase: Phase, params: Params, labels: Optional[Params]) -> None:
    if phase.mask is not None:  # what this phase trains: trainable and not held by its mask
      trains = phase.trainable or (lambda path: True)
      mask = mask_tree(params, lambda path: np.logical_and(trains(path), phase.mask(path)))
      total = sum(int(x.size) for x in jax.tree.leaves(params))
      on = sum(int(np.broadcast_to(m, x.shape).sum())
               for m, x in zip(jax.tree.leaves(mask), jax.tree.leaves(params)))
      counts = {TRAIN: on, FROZEN: total - on}
    elif labels is None:
      self.log(f"{phase.name}: {phase.num_steps} steps")
      return
    else:
      counts = count_by_label(params, labels)
    self.log(f"{phase.name}: {phase.num_steps} steps, training {counts['train']:,} parameters, "
             f"{counts['frozen']:,} frozen")

  # -- evaluate, save, report -----------------------------------------------------------------

  def _evaluates(self, phase: Phase) -> bool:
    return self.eval_fn is not None and phase.evaluate

  def evaluate(self, step: int, phase_name: str, params: Params) -> dict[str, float]:
    """Runs ``eval_fn``, records and writes it, and lets early stopping see it."""
    with self.watch("evaluate"):
      metrics = self.eval_fn(params)
    self.record.history.append({"step": step, "phase": phase_name, **metrics})
    self.writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()},
                              phase=phase_name)
    self.record.best.observe(step, metrics, params)
    return metrics

  def save(self, step: int, i: int, phase_step: int, state: TrainState,
           force: bool = False) -> None:
    """Checkpoints ``state`` at global ``step`` (``phase_step`` steps into phase ``i``)."""
    best = self.record.best
    # Copies of the record: Orbax writes the metadata asynchronously while the run goes on.
    meta = {"plan": self.plan, "phase_index": i, "phase_step": phase_step,
            "phase": self.phases[i].name, "data": self.train_data.state_dict(),
            "evals": dict(self.record.evals), "history": list(self.record.history)}
    if best.rule is not None:
      meta["best"] = best.state_dict()
    with self.watch("checkpoint"):
      self.checkpoints.save(step, meta, state, best.params, force=force)
    self.last_saved = step

  def stop_if_interrupted(self, i: int, done: int, state: TrainState,
                          steps: Optional["_StepLog"]) -> None:
    """After Ctrl-C: checkpoints ``done`` steps into phase ``i`` (unless just saved) and raises
    :class:`~autodistill.errors.Interrupted`."""
    if not self.interrupt.requested:
      return
    step = self.offsets[i] + done
    if self.last_saved != step:
      if steps is not None:
        steps.flush()  # a non-finite loss still stops the run before its state is saved
      self.save(step, i, done, state, force=True)
    with self.watch("checkpoint"):
      self.checkpoints.wait_until_finished()
    raise Interrupted(f"saved a checkpoint at step {step} of {self.offsets[-1]} in "
                      f"{self.workdir / 'checkpoints'}")

  def result(self, params: Params, seconds: float) -> RunResult:
    best = self.record.best
    return RunResult(params=params, evals=self.record.evals,
                     global_step=(self.offsets[-1] if best.stopped_at is None
                                  else int(best.stopped_at)),
                     resumed_from=self.resumed_from, seconds=seconds,
                     history=self.record.history, best_params=best.params, best_step=best.step,
                     best=best.metrics, stopped_early_at=best.stopped_at,
                     timings=self.watch.rounded())


class _Interrupt:
  """Ctrl-C during :func:`run_phases`: the first SIGINT asks the run to checkpoint after the
  step in flight and stop (:meth:`_Run.stop_if_interrupted`); a second one stops at once.

  Python runs signal handlers in the main thread only, so elsewhere (a run in a worker thread)
  Ctrl-C keeps its default behaviour.
  """

  def __init__(self, log: Callable[[str], None]):
    self.requested = False
    self._log = log
    self._previous: Any = None

  def _handle(self, signum: int, frame: Any) -> None:
    del signum, frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    self._log("interrupted: saving a checkpoint after the current step (Ctrl-C again to stop "
              "at once)")

  def __enter__(self) -> "_Interrupt":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def __exit__(self, *exc_info: Any) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)


class _StepLog:
  """A phase's progress bar and per-step metrics, read one step late.

  A step's metrics are fetched only after the next step was dispatched, so the host never stalls
  the device waiting for a scalar. Every checkpoint and evaluation calls :meth:`flush` first, so
  a non-finite loss still stops the run before the state after it is saved.
  """

  def __init__(self, phase: Phase, offset: int, first_step: int, writer: MetricWriter,
               options: RunOptions):
    self._phase, self._offset, self._writer = phase, offset, writer
    self._log_every = options.log_every
    self._pending: Optional[tuple[int, dict[str, jax.Array]]] = None
    self._bar = progress_bar(phase.num_steps, initial=first_step, desc=phase.name, unit="steps",
                             enabled=options.progress, dynamic_ncols=True, leave=False)

  def push(self, s: int, metrics: dict[str, jax.Array]) -> None:
    """Holds step ``s``'s metrics after checking the previous step's."""
    self.flush()
    self._pending = (s, metrics)

  def flush(self) -> None:
    """Checks and logs the held metrics, if any.

    Raises:
      NonFiniteLossError: a term other than the learning rate is NaN or infinite.
    """
    if self._pending is None:
      return
    s, metrics = self._pending
    self._pending = None
    values = {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}
    bad = {k: v for k, v in values.items() if not math.isfinite(v) and k != "learning_rate"}
    if bad:
      raise NonFiniteLossError(self._phase.name, self._offset + s + 1, bad)
    self._bar.update(1)
    if (s + 1) % self._log_every == 0 or s + 1 == self._phase.num_steps:
      self._writer.write_scalars(self._offset + s + 1, values, phase=self._phase.name)
      self._bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)

  def show(self, metrics: Mapping[str, float]) -> None:
    self._bar.set_postfix_str(_format(metrics), refresh=False)

  def close(self) -> None:
    self._bar.close()


def _program_key(phase: Phase) -> tuple[Any, ...]:
  """What decides a phase's compiled step; phases with equal keys share one. The learning-rate
  schedule is data (each step's rate is an argument), so step counts, warm-up, decay and peak
  rate do not count."""
  optimizer = phase.optimizer.replace(learning_rate=1.0, warmup_steps=0, decay="constant",
                                      end_lr_fraction=0.0)
  return (phase.loss_fn, phase.trainable, optimizer, phase.mask is None)


def _learning_rates(config: Any, num_steps: int) -> np.ndarray:
  """The rate of every step of a phase, evaluated once on the host (float32 scalars)."""
  steps = np.arange(max(num_steps, 1))
  rates = jax.device_get(learning_rate_schedule(config, num_steps)(steps))
  return np.broadcast_to(np.asarray(rates, np.float32), steps.shape)  # constant: a scalar


def _format(metrics: Mapping[str, float]) -> str:
  return ", ".join(f"{k} {v:.0f}" if isinstance(v, float) and v.is_integer() and abs(v) >= 1
                   else f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                   for k, v in metrics.items())
