"""The one trainer behind every phase: teacher head fitting, progressive transfer, pre-training
distillation, regular distillation and fine-tuning.

A phase is a loss, a step count, an optimizer setting and a rule for which parameters train
(:class:`Phase`). :func:`make_train_step` turns it into a pure
``train_step(state, batch) -> (state, metrics)``; :func:`run_phases` jits that step once per phase
with ``NamedSharding`` over a ``Mesh`` (parameters from logical-axis rules, batch over the ``data``
axis, state donated) and drives it with checkpointing, metrics, a progress bar and evaluation.

Frozen parameters (section 3.3.3) are handled three ways at once: the loss sees them through
``stop_gradient`` (no backward work), the optimizer gives them ``optax.set_to_zero`` inside
``optax.multi_transform`` (no optimizer state), and the step returns the old leaves themselves
(bit-identical, even for -0.0).

Checkpoints (Orbax ``CheckpointManager`` in ``<workdir>/checkpoints``) are numbered by global step
across phases and hold the train state plus JSON metadata: the phase plan, phase index, step
within the phase, the data pipeline's position and the evaluations so far. A run killed at any
point and started again with the same arguments resumes from the last checkpoint and reproduces
the uninterrupted run: the data order is a function of the position and the dropout key of a step
is ``fold_in(fold_in(seed, phase), step)``.

Fine-tuning adds evaluation every ``eval_every`` steps and :class:`EarlyStopping`: the run keeps
the parameters of its best evaluation, saves them in the same checkpoint as the train state (so a
kill can never leave the two out of step) and ends once ``patience`` evaluations in a row did not
improve on the best.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from autodistill.distill.metrics import MetricWriter
from autodistill.distill.optim import (FROZEN, OptimizerConfig, count_by_label, freeze_labels,
                                       learning_rate_schedule, make_optimizer)

Params = Any
Batch = Mapping[str, jax.Array]
LossFn = Callable[[Params, Batch, jax.Array, Any], tuple[jax.Array, dict[str, jax.Array]]]


class NonFiniteLossError(FloatingPointError):
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


class IncompatibleWorkdirError(ValueError):
  """The workdir's checkpoints come from a run with a different phase plan."""


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes: step within the phase, parameters, optimizer state, key."""

  step: jax.Array
  params: Params
  opt_state: Any
  rng: jax.Array


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
  """

  name: str
  num_steps: int
  loss_fn: LossFn
  optimizer: OptimizerConfig = OptimizerConfig()
  trainable: Optional[Callable[[tuple[str, ...]], bool]] = None
  context: Any = None
  context_shardings: Any = None
  evaluate: bool = True


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Stop a run when its evaluations stop improving, keeping the best parameters.

  Attributes:
    metric: the evaluation metric watched (a key of ``eval_fn``'s result), e.g. ``"accuracy"``.
    mode: ``"max"`` (higher is better) or ``"min"``.
    patience: evaluations in a row without improvement before the run stops; 0 never stops
      early (the best parameters are still kept).
    min_delta: an improvement must beat the best by more than this.
  """

  metric: str
  mode: str = "max"
  patience: int = 3
  min_delta: float = 0.0

  def __post_init__(self):
    if self.mode not in ("max", "min") or self.patience < 0 or self.min_delta < 0:
      raise ValueError(f"EarlyStopping needs mode 'max' or 'min', patience >= 0 and "
                       f"min_delta >= 0; got {self}.")

  def improves(self, value: float, best: Optional[float]) -> bool:
    if best is None:
      return math.isfinite(value)
    return (value > best + self.min_delta if self.mode == "max"
            else value < best - self.min_delta)


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


# ---------------------------------------------------------------------------------------------
# The step


def _select_frozen(labels: Params, frozen: Params, live: Params) -> Params:
  return jax.tree.map(lambda label, f, l: f if label == FROZEN else l, labels, frozen, live)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, labels: Optional[Params] = None,
                    grad_accum_steps: int = 1) -> Callable[[TrainState, Batch],
                                                           tuple[TrainState, dict[str, jax.Array]]]:
  """The pure training step of a phase.

  Args:
    loss_fn: ``(params, batch, rng) -> (loss, metrics)``.
    optimizer: from :func:`~autodistill.distill.optim.make_optimizer` (with the same labels).
    schedule: the learning-rate schedule (logged).
    labels: ``"train"``/``"frozen"`` tree, or None.
    grad_accum_steps: split the batch into this many micro-batches (rows ``i::k``, so every
      device keeps its share) and average their gradients before one update.

  Returns:
    ``train_step(state, batch, context=None) -> (state, metrics)``; metrics hold the loss terms,
    ``grad_norm``,
    ``param_norm`` and ``learning_rate``.
  """

  def loss_with_freezing(params, batch, rng, context):
    if labels is not None:
      params = jax.tree.map(lambda label, p: jax.lax.stop_gradient(p) if label == FROZEN else p,
                            labels, params)
    loss, metrics = loss_fn(params, batch, rng, context)
    return loss, {"loss": loss, **metrics}

  grad_fn = jax.value_and_grad(loss_with_freezing, has_aux=True)

  def train_step(state: TrainState, batch: Batch, context: Any = None):
    rng = jax.random.fold_in(state.rng, state.step)
    if grad_accum_steps == 1:
      (_, metrics), grads = grad_fn(state.params, batch, rng, context)
    else:
      k = grad_accum_steps
      micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1),
                           batch)

      def accumulate(carry, inputs):
        i, mb = inputs
        (_, m), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i), context)
        return jax.tree.map(jnp.add, carry, (g, m)), None

      (_, m_shape), g_shape = jax.eval_shape(grad_fn, state.params,
                                             jax.tree.map(lambda x: x[0], micro), rng, context)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (g_shape, m_shape))
      (grads, metrics), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(k), micro))
      grads, metrics = jax.tree.map(lambda x: x / k, (grads, metrics))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if labels is not None:
      params = _select_frozen(labels, state.params, params)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params),
                   learning_rate=schedule(state.step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


# ---------------------------------------------------------------------------------------------
# Sharding and state creation


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_shardings(mesh: Mesh, data_axis: str = "data") -> NamedSharding:
  """Shards the leading (batch) dimension of every feature over ``data_axis``."""
  return NamedSharding(mesh, PartitionSpec(data_axis))


def state_shardings(param_shardings: Params, optimizer: optax.GradientTransformation,
                    abstract_params: Params, mesh: Mesh) -> TrainState:
  """Shardings of a :class:`TrainState`: optimizer moments follow their parameters."""
  abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
  rep = replicated(mesh)
  masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731  (frozen leaves: no state)
  opt = optax.tree_map_params(optimizer, lambda p, s: p if masked(p) else s, abstract_opt,
                              param_shardings, transform_non_params=lambda _: rep,
                              is_leaf=masked)
  return TrainState(step=rep, params=param_shardings, opt_state=opt, rng=rep)


def _abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      tree, shardings)


def create_state(params: Params, optimizer: optax.GradientTransformation, rng: jax.Array,
                 shardings: TrainState) -> TrainState:
  """A fresh state (step 0, new optimizer state) placed on ``shardings``."""
  def build(p, r):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p), rng=r)
  return jax.jit(build, out_shardings=shardings)(params, rng)


def place(tree: Params, shardings: Params) -> Params:
  """Puts host or device arrays onto their shardings."""
  return jax.tree.map(lambda x, s: jax.device_put(x, s), tree, shardings)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _manager(directory: pathlib.Path, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  # Orbax refuses relative paths; a workdir relative to the current directory is common.
  return ocp.CheckpointManager(pathlib.Path(directory).absolute(),
                               item_names=("state", "meta", "best"), options=options)


def _plan(phases: Sequence[Phase]) -> list[list[Any]]:
  return [[p.name, int(p.num_steps)] for p in phases]


# ---------------------------------------------------------------------------------------------
# The loop


def _to_float(tree: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(dict(tree)).items()}


def run_phases(phases: Sequence[Phase], params: Params, *, param_shardings: Params, mesh: Mesh,
               train_data: Any, workdir: str | os.PathLike, seed: int = 0,
               eval_fn: Optional[Callable[[Params], dict[str, float]]] = None,
               eval_at_start: bool = False, checkpoint_every: int = 500, log_every: int = 50,
               keep_checkpoints: int = 2, progress: bool = True,
               writer: Optional[MetricWriter] = None, data_axis: str = "data",
               eval_every: int = 0, early_stopping: Optional[EarlyStopping] = None,
               log: Callable[[str], None] = print) -> RunResult:
  """Runs ``phases`` in order on one parameter tree, resuming from ``workdir`` if possible.

  Args:
    phases: the plan; each phase starts from the previous one's parameters with a fresh
      optimizer state.
    params: initial parameters (host or device arrays); ignored when resuming.
    param_shardings: a NamedSharding per parameter (see :mod:`autodistill.sharding`).
    mesh: the device mesh; the batch is split over ``data_axis``.
    train_data: a :class:`~autodistill.data.PretrainingData` (or anything with
      ``device_batches(mesh)``, ``state_dict()``, ``load_state_dict()`` and
      ``global_batch_size``); it continues across phases.
    workdir: holds ``checkpoints/``, ``metrics.jsonl`` and ``tensorboard/``.
    seed: root of the dropout keys.
    eval_fn: ``eval_fn(params) -> metrics`` run at the end of every phase (held-out accuracy).
    eval_at_start: also evaluate the initial parameters (reported as phase ``"init"``).
    checkpoint_every: save every this many steps within a phase (and always at a phase's end).
    log_every: write metrics every this many steps.
    keep_checkpoints: checkpoints kept on disk.
    progress: show a progress bar per phase.
    writer: a metric writer (default: one in ``workdir``).
    eval_every: also evaluate every this many steps within a phase (0: only at phase ends).
    early_stopping: keep the parameters of the best evaluation and end the run (skipping any
      later phases) after ``patience`` evaluations without improvement. Needs ``eval_fn``.
    log: where one-line progress messages go.

  Raises:
    NonFiniteLossError: a loss term became NaN/inf.
    IncompatibleWorkdirError: ``workdir`` holds checkpoints of a different plan.
  """
  start_time = time.time()
  if early_stopping is not None and eval_fn is None:
    raise ValueError("early_stopping needs an eval_fn to watch.")
  if eval_every < 0:
    raise ValueError(f"eval_every must be >= 0, not {eval_every}.")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  own_writer = writer is None
  writer = writer or MetricWriter(workdir)
  data_size = mesh.shape[data_axis]
  if train_data.global_batch_size % data_size:
    raise ValueError(f"the global batch size {train_data.global_batch_size} is not divisible by "
                     f"the mesh's {data_axis!r} axis ({data_size} devices); choose a multiple.")
  batch_sh = batch_shardings(mesh, data_axis)
  root = jax.random.PRNGKey(seed)
  plan = _plan(phases)
  offsets = np.concatenate([[0], np.cumsum([p.num_steps for p in phases])]).astype(int)
  manager = _manager(workdir / "checkpoints", keep_checkpoints)
  abstract_params = jax.eval_shape(lambda p: p, params)

  def build(i: int, current: Params):
    phase = phases[i]
    labels = freeze_labels(current, phase.trainable) if phase.trainable else None
    optimizer = make_optimizer(phase.optimizer, phase.num_steps, labels)
    schedule = learning_rate_schedule(phase.optimizer, phase.num_steps)
    shardings = state_shardings(param_shardings, optimizer, abstract_params, mesh)
    return labels, optimizer, schedule, shardings

  evals: dict[str, dict[str, float]] = {}
  history: list[dict[str, Any]] = []
  # Early stopping: best metrics, their global step, a device copy of their parameters, and the
  # number of evaluations since the best.
  best: dict[str, Any] = {"metrics": None, "step": None, "params": None, "since": 0,
                          "stopped_at": None}
  def save(global_step: int, i: int, s: int, st: TrainState, force: bool = False) -> None:
    meta = {"plan": plan, "phase_index": i, "phase_step": s, "phase": phases[i].name,
            "data": train_data.state_dict(), "evals": evals, "history": history}
    items = {"state": ocp.args.StandardSave(st)}
    if best["params"] is not None:
      meta["best"] = {k: v for k, v in best.items() if k != "params"}
      items["best"] = ocp.args.StandardSave(best["params"])
    manager.save(global_step, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **items),
                 force=force)

  def evaluate(global_step: int, phase_name: str, current: Params) -> dict[str, float]:
    """Runs eval_fn, records it, and updates early stopping's best (copying its params)."""
    metrics = eval_fn(current)
    history.append({"step": global_step, "phase": phase_name, **metrics})
    writer.write_scalars(global_step, {f"eval/{k}": v for k, v in metrics.items()},
                         phase=phase_name)
    if early_stopping is not None:
      if early_stopping.metric not in metrics:
        raise KeyError(f"early stopping watches {early_stopping.metric!r}, which the evaluation "
                       f"does not report (it reports {sorted(metrics)}).")
      if early_stopping.improves(float(metrics[early_stopping.metric]),
                                 None if best["metrics"] is None
                                 else best["metrics"][early_stopping.metric]):
        # A copy: the live parameters are donated to the next step.
        best.update(metrics=dict(metrics), step=global_step, since=0,
                    params=jax.tree.map(jnp.copy, current))
      else:
        best["since"] += 1
    return metrics

  def patience_exhausted() -> bool:
    return (early_stopping is not None and early_stopping.patience > 0
            and best["since"] >= early_stopping.patience)

  start_phase, start_step, state, resumed_from = 0, 0, None, None
  latest = manager.latest_step()
  if latest is not None:
    meta = manager.restore(latest, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if meta["plan"] != plan:
      raise IncompatibleWorkdirError(
          f"{workdir} holds checkpoints of another run (phases {meta['plan']}), not of this one "
          f"({plan}); use a fresh workdir, or the same settings to resume.")
    i, s = int(meta["phase_index"]), int(meta["phase_step"])
    _, optimizer, _, shardings = build(i, params)
    abstract_state = _abstract(jax.eval_shape(
        lambda p: TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p),
                             jax.random.PRNGKey(0)), abstract_params), shardings)
    restored = manager.restore(latest, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))["state"]
    train_data.load_state_dict(meta["data"])
    evals = {k: dict(v) for k, v in meta["evals"].items()}
    history = list(meta.get("history", []))
    if meta.get("best") is not None:
      best.update(meta["best"])
      best["params"] = manager.restore(latest, args=ocp.args.Composite(
          best=ocp.args.StandardRestore(_abstract(abstract_params, param_shardings))))["best"]
    writer.truncate_after(latest)
    resumed_from = latest
    params = restored.params
    if best["stopped_at"] is not None:
      start_phase = len(phases)
    elif s >= phases[i].num_steps:
      start_phase = i + 1
    else:
      start_phase, start_step, state = i, s, restored
    log(f"resumed from step {latest} ({phases[i].name}, step {s}/{phases[i].num_steps}) "
        f"in {workdir}")
  else:
    params = place(params, param_shardings)
    if eval_fn is not None and eval_at_start:
      evals["init"] = evaluate(0, "init", params)
      log("init: " + _format(evals["init"]))

  try:
    for i in range(start_phase, len(phases)):
      phase = phases[i]
      labels, optimizer, schedule, shardings = build(i, params)
      if state is None:
        state = create_state(params, optimizer, jax.random.fold_in(root, i), shardings)
        start_step = 0
      if labels is not None:
        counts = count_by_label(params, labels)
        log(f"{phase.name}: {phase.num_steps} steps, training {counts['train']:,} parameters, "
            f"{counts['frozen']:,} frozen")
      else:
        log(f"{phase.name}: {phase.num_steps} steps")
      context_sh = (jax.tree.map(lambda _: replicated(mesh), phase.context)
                    if phase.context_shardings is None else phase.context_shardings)
      context = place(phase.context, context_sh)
      step_fn = jax.jit(make_train_step(phase.loss_fn, optimizer, schedule, labels,
                                        phase.optimizer.grad_accum_steps),
                        in_shardings=(shardings, batch_sh, context_sh),
                        out_shardings=(shardings, None), donate_argnums=0)
      bar = tqdm(total=phase.num_steps, initial=start_step, desc=phase.name, disable=not progress,
                 dynamic_ncols=True, leave=False)
      batches = train_data.device_batches(mesh, data_axis)
      pending: Optional[tuple[int, dict[str, jax.Array]]] = None

      def drain() -> None:
        # Checks (and logs) the previous step's metrics after the next step was dispatched, so
        # the host never stalls the device waiting for a scalar.
        nonlocal pending
        if pending is None:
          return
        s, metrics = pending
        pending = None
        values = _to_float(metrics)
        bad = {k: v for k, v in values.items() if not math.isfinite(v) and k != "learning_rate"}
        if bad:
          raise NonFiniteLossError(phase.name, int(offsets[i]) + s + 1, bad)
        bar.update(1)
        if (s + 1) % log_every == 0 or s + 1 == phase.num_steps:
          writer.write_scalars(int(offsets[i]) + s + 1, values, phase=phase.name)
          bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)

      evaluates = eval_fn is not None and phase.evaluate
      try:
        for s in range(start_step, phase.num_steps):
          batch = next(batches)
          state, metrics = step_fn(state, batch, context)
          drain()
          pending = (s, metrics)
          if evaluates and eval_every and (s + 1) % eval_every == 0 and s + 1 < phase.num_steps:
            drain()
            step = int(offsets[i]) + s + 1
            bar.set_postfix_str(_format(evaluate(step, phase.name, state.params)), refresh=False)
            if patience_exhausted():
              best["stopped_at"] = step
              log(f"{phase.name}: early stopping at step {step}: no improvement of "
                  f"{early_stopping.metric} in {best['since']} evaluations; best "
                  f"{best['metrics'][early_stopping.metric]:.4f} at step {best['step']}")
              break
            # Saved with every evaluation, so history and best survive a kill together.
            save(step, i, s + 1, state, force=True)
          elif (s + 1) % checkpoint_every == 0 and s + 1 < phase.num_steps:
            drain()
            save(int(offsets[i]) + s + 1, i, s + 1, state)
        drain()
      finally:
        batches.close()
        bar.close()
      params = state.params
      if best["stopped_at"] is not None:
        evals[phase.name] = dict(history[-1])
        del evals[phase.name]["step"], evals[phase.name]["phase"]
        save(best["stopped_at"], i, phase.num_steps, state, force=True)
        break
      if evaluates:
        evals[phase.name] = evaluate(int(offsets[i + 1]), phase.name, params)
        log(f"{phase.name}: " + _format(evals[phase.name]))
      save(int(offsets[i + 1]), i, phase.num_steps, state, force=True)
      state = None
    manager.wait_until_finished()
  finally:
    manager.close()
    writer.flush()
    if own_writer:
      writer.close()
  return RunResult(params=params, evals=evals,
                   global_step=int(offsets[-1]) if best["stopped_at"] is None
                   else int(best["stopped_at"]),
                   resumed_from=resumed_from, seconds=time.time() - start_time, history=history,
                   best_params=best["params"], best_step=best["step"], best=best["metrics"],
                   stopped_early_at=best["stopped_at"])


def _format(metrics: Mapping[str, float]) -> str:
  return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                   for k, v in metrics.items())
