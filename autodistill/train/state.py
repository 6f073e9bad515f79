"""The train state, the pure jitted step, and how the state is laid out over a mesh.

:func:`make_train_step` turns a loss into ``train_step(state, batch, context) -> (state,
metrics)`` (``jax.value_and_grad(..., has_aux=True)``, optional gradient accumulation);
:func:`state_shardings` and :func:`create_state` put a fresh :class:`TrainState` on the mesh with
``jax.jit(out_shardings=...)``, optimizer moments following their parameters.

Frozen parameters (section 3.3.3) are handled three ways at once: the loss sees them through
``stop_gradient`` (no backward work), the optimizer gives them ``optax.set_to_zero`` inside
``optax.multi_transform`` (no optimizer state, see
:func:`~autodistill.train.optimizers.make_optimizer`), and the step returns the old leaves
themselves (bit-identical, even for -0.0).

A step may also take a ``mask``: a tree of boolean scalars like the parameters, *data* rather
than part of the program, that holds trainable parameters fixed for this call (zero gradient
through ``jnp.where(mask, p, stop_gradient(p))``, the old leaf selected after the update, so
again bit-identical). Phases that differ only in which parameters they train then run one
compiled program: the K stages of progressive transfer are one program with the stage as data.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from autodistill import sharding
from autodistill.train.optimizers import FROZEN

Params = Any
Batch = Mapping[str, jax.Array]
LossFn = Callable[[Params, Batch, jax.Array, Any], tuple[jax.Array, dict[str, jax.Array]]]
TrainStep = Callable[..., tuple["TrainState", dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes: step within the phase, parameters, optimizer state, key."""

  step: jax.Array
  params: Params
  opt_state: Any
  rng: jax.Array


def _select_frozen(labels: Params, frozen: Params, live: Params) -> Params:
  return jax.tree.map(lambda label, f, l: f if label == FROZEN else l, labels, frozen, live)


def _hold(mask: Params, params: Params) -> Params:
  """``params`` with no gradient where ``mask`` is false (a data-dependent stop_gradient)."""
  return jax.tree.map(lambda m, p: jnp.where(m, p, jax.lax.stop_gradient(p)), mask, params)


def _select_masked(mask: Params, old: Params, new: Params) -> Params:
  return jax.tree.map(lambda m, o, n: jnp.where(m, n, o), mask, old, new)


def mask_tree(params: Params, predicate: Callable[[tuple[str, ...]], Any]) -> Params:
  """A phase's data ``mask`` (module docstring) from ``predicate(path)``: a NumPy bool per leaf,
  or, where the predicate gives one bool per layer for a leaf of stacked layers (leading axis,
  e.g. a student's ``scan_blocks`` parameters), that vector shaped ``[layers, 1, ...]`` so that
  it broadcasts over the leaf and holds whole layers.

  ``path`` is the tuple of dict keys to the leaf; ``params`` may be abstract (shapes only).
  """
  def leaf(path, x):
    keys = tuple(getattr(p, "key", str(p)) for p in path)
    m = np.asarray(predicate(keys), bool)
    if m.ndim == 0:
      return np.bool_(m)
    if m.shape != tuple(x.shape[:1]):
      raise ValueError(f"a mask of shape {m.shape} for {'/'.join(keys)} of shape {x.shape}: "
                       "a per-layer mask needs one entry per entry of the leading axis.")
    return m.reshape(m.shape + (1,) * (len(x.shape) - 1))
  return jax.tree_util.tree_map_with_path(leaf, params)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    labels: Optional[Params] = None, grad_accum_steps: int = 1) -> TrainStep:
  """The pure training step of a phase.

  Args:
    loss_fn: ``(params, batch, rng, context) -> (loss, metrics)``.
    optimizer: from :func:`~autodistill.train.optimizers.make_optimizer` (with the same labels),
      built with ``unit_learning_rate=True`` so that the step applies the rate it is given.
    labels: ``"train"``/``"frozen"`` tree, or None.
    grad_accum_steps: split the batch into this many micro-batches (rows ``i::k``, so every
      device keeps its share) and average their gradients before one update.

  Returns:
    ``train_step(state, batch, context=None, mask=None, learning_rate=1.0) -> (state,
    metrics)``; metrics hold the loss terms, ``grad_norm``, ``param_norm`` and
    ``learning_rate``. ``mask`` (see the module docstring) holds the parameters where it is
    false fixed for this step. The optimizer's updates are multiplied by ``learning_rate``, a
    traced scalar: the schedule is evaluated by the caller, so one compiled step serves any
    schedule, step count and peak rate (flash and regular distillation of one student, every
    recipe of the tests). With an optimizer that carries its own schedule, leave it at 1.
  """

  def loss_with_freezing(params, batch, rng, context, mask):
    if labels is not None:
      params = jax.tree.map(lambda label, p: jax.lax.stop_gradient(p) if label == FROZEN else p,
                            labels, params)
    if mask is not None:
      params = _hold(mask, params)
    loss, metrics = loss_fn(params, batch, rng, context)
    return loss, {"loss": loss, **metrics}

  grad_fn = jax.value_and_grad(loss_with_freezing, has_aux=True)

  def train_step(state: TrainState, batch: Batch, context: Any = None, mask: Any = None,
                 learning_rate: Any = 1.0):
    rng = jax.random.fold_in(state.rng, state.step)
    if grad_accum_steps == 1:
      (_, metrics), grads = grad_fn(state.params, batch, rng, context, mask)
    else:
      k = grad_accum_steps
      micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1),
                           batch)

      def accumulate(carry, inputs):
        i, mb = inputs
        (_, m), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i), context, mask)
        return jax.tree.map(jnp.add, carry, (g, m)), None

      (_, m_shape), g_shape = jax.eval_shape(grad_fn, state.params,
                                             jax.tree.map(lambda x: x[0], micro), rng, context,
                                             mask)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (g_shape, m_shape))
      (grads, metrics), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(k), micro))
      grads, metrics = jax.tree.map(lambda x: x / k, (grads, metrics))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: u * jnp.asarray(learning_rate, u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    if labels is not None:
      params = _select_frozen(labels, state.params, params)
    if mask is not None:
      params = _select_masked(mask, state.params, params)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params),
                   learning_rate=jnp.asarray(learning_rate, jnp.float32))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def state_shardings(param_shardings: Params, optimizer: optax.GradientTransformation,
                    abstract_params: Params, mesh: Mesh) -> TrainState:
  """Shardings of a :class:`TrainState`: optimizer moments follow their parameters."""
  abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
  rep = sharding.replicated(mesh)
  masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731  (frozen leaves: no state)
  opt = optax.tree_map_params(optimizer, lambda p, s: p if masked(p) else s, abstract_opt,
                              param_shardings, transform_non_params=lambda _: rep,
                              is_leaf=masked)
  return TrainState(step=rep, params=param_shardings, opt_state=opt, rng=rep)


def _fresh(params: Params, optimizer: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    rng=rng)


def create_state(params: Params, optimizer: optax.GradientTransformation, rng: jax.Array,
                 shardings: TrainState) -> TrainState:
  """A fresh state (step 0, new optimizer state) placed on ``shardings``."""
  return state_initializer(optimizer, shardings)(params, rng)


class Program:
  """A jitted function compiled ahead of time for each argument signature it meets, and kept.

  Later calls with the same signature (the arguments' tree structure, shapes and dtypes) run
  the kept executable directly, so nothing that clears JAX's caches (a ``gp_bandit`` suggestion
  calls ``jax.clear_caches()``) makes it trace, lower or compile again; a Program kept across
  runs (a student distilled twice in one process, by its flash trial and then by finalize) also
  serves a run whose batches have other shapes, with one more compile. Shardings are the jitted
  function's own (``in_shardings``), so a signature does not repeat them.

  Attributes:
    compiles: how many times it was compiled (1 after the first call): a recompilation guard.
  """

  def __init__(self, jitted: Callable[..., Any]):
    self._jitted = jitted
    self._compiled: dict[Any, Callable[..., Any]] = {}
    self.compiles = 0

  def __call__(self, *args: Any) -> Any:
    leaves, treedef = jax.tree.flatten(args)
    signature = (treedef, tuple((x.shape, x.dtype) if hasattr(x, "dtype") else type(x)
                                for x in leaves))
    compiled = self._compiled.get(signature)
    if compiled is None:
      compiled = self._compiled[signature] = self._jitted.lower(*args).compile()
      self.compiles += 1
    return compiled(*args)


def state_initializer(optimizer: optax.GradientTransformation,
                      shardings: TrainState) -> Callable[[Params, jax.Array], TrainState]:
  """The jitted ``(params, rng) -> fresh state`` of :func:`create_state`, to keep and reuse."""

  def fresh(params: Params, rng: jax.Array) -> TrainState:
    return _fresh(params, optimizer, rng)

  return jax.jit(fresh, out_shardings=shardings)


def abstract_state(abstract_params: Params, optimizer: optax.GradientTransformation,
                   shardings: TrainState) -> TrainState:
  """The shapes, dtypes and shardings of a state (what a checkpoint is restored into)."""
  shapes = jax.eval_shape(lambda p: _fresh(p, optimizer, jax.random.PRNGKey(0)), abstract_params)
  return with_shardings(shapes, shardings)


def with_shardings(tree: Any, shardings: Any) -> Any:
  """``jax.ShapeDtypeStruct``s of ``tree``'s leaves carrying ``shardings``."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      tree, shardings)


def place(tree: Params, shardings: Params) -> Params:
  """Puts host or device arrays onto their shardings."""
  return jax.tree.map(lambda x, s: jax.device_put(x, s), tree, shardings)
