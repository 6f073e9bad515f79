"""The optimizer of every training phase: LAMB (You et al. 2020) or AdamW (Loshchilov & Hutter
2019), built from optax combinators.

:func:`make_optimizer` returns ``clip_by_global_norm -> optax.lamb's chain`` (Adam moments,
decoupled weight decay on a mask, trust ratio, learning-rate schedule), or the same chain without
the trust ratio (AdamW, BERT's fine-tuning optimizer), with the first-moment dtype configurable,
and wrapped in ``optax.multi_transform`` so that frozen parameters (the embedding and heads
during progressive transfer, every other block too with ``progressive_program="per_block"``, the
teacher's encoder while its heads are fitted) get ``optax.set_to_zero`` and therefore *no
optimizer state at all*. (Under the shared progressive program the blocks a stage does not train
are held by a data mask instead, see :mod:`autodistill.train.state`, and keep Adam state.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

Params = Any
TRAIN, FROZEN = "train", "frozen"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """The optimizer and its schedule (defaults: LAMB as in BERT/MobileBERT pre-training).

  Attributes:
    name: "lamb" (layer-wise trust ratio; pre-training and distillation) or "adamw" (decoupled
      weight decay, no trust ratio; BERT's fine-tuning optimizer).
    learning_rate: peak learning rate after warm-up.
    warmup_steps: linear warm-up from 0 (per phase).
    decay: "linear" (to ``end_lr_fraction`` at the end of the phase, BERT), "cosine", or
      "constant" (after warm-up).
    end_lr_fraction: final learning rate as a fraction of the peak.
    b1, b2, eps: Adam moment decays and epsilon (LAMB's defaults).
    weight_decay: decoupled weight decay; never applied to biases or normalisation parameters.
    clip_norm: global gradient-norm clip, or None.
    exclude_from_layer_adaptation: biases and norm parameters skip LAMB's trust ratio (plain
      Adam steps), as in the LAMB of BERT/MobileBERT pre-training; with False every leaf gets it,
      exactly ``optax.lamb``. A zero-initialised bias under the trust ratio moves by a fraction
      ``lr`` of its own (zero) norm per step, i.e. barely at all.
    mu_dtype: dtype of the first moment (e.g. "bfloat16" to halve it), None = parameter dtype.
    grad_accum_steps: micro-batches per step; the global batch is split and gradients summed
      before one update (same result as one big batch, less activation memory).
    learning_rate_scales: ``(prefix, factor)`` pairs, a second parameter group: leaves whose
      path (keys joined by "/") is ``prefix`` or starts with ``prefix + "/"`` train at ``factor``
      times the learning rate (the first matching prefix counts). Adam's, AdamW's and LAMB's
      updates (weight decay included) are proportional to the learning rate, so scaling a
      leaf's final update is exactly a per-group learning rate: for example a pre-trained
      encoder adapted at 1e-4 beside fresh heads at 2e-3 (``(("encoder", 0.05),)``).
  """

  learning_rate: float = 1e-3
  name: str = "lamb"
  warmup_steps: int = 0
  decay: str = "linear"
  end_lr_fraction: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-6
  weight_decay: float = 0.01
  clip_norm: Optional[float] = 1.0
  exclude_from_layer_adaptation: bool = True
  mu_dtype: Optional[str] = None
  grad_accum_steps: int = 1
  learning_rate_scales: tuple[tuple[str, float], ...] = ()

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.name!r}; choose one of {sorted(OPTIMIZERS)}.")
    if self.decay not in _DECAYS:
      raise ValueError(f"unknown decay {self.decay!r}; choose one of {sorted(_DECAYS)}.")
    if self.learning_rate <= 0 or self.warmup_steps < 0 or self.grad_accum_steps < 1:
      raise ValueError("learning_rate must be positive, warmup_steps >= 0 and "
                       f"grad_accum_steps >= 1; got {self}.")
    for prefix, factor in self.learning_rate_scales:
      if not prefix or not factor > 0:
        raise ValueError("learning_rate_scales takes (path prefix, factor > 0) pairs; got "
                         f"{self.learning_rate_scales!r}.")

  def replace(self, **changes) -> "OptimizerConfig":
    return dataclasses.replace(self, **changes)


def _linear(peak: float, end: float, steps: int) -> optax.Schedule:
  return optax.linear_schedule(peak, end, max(steps, 1))


def _cosine(peak: float, end: float, steps: int) -> optax.Schedule:
  return optax.cosine_decay_schedule(peak, max(steps, 1), alpha=end / peak if peak else 0.0)


def _constant(peak: float, end: float, steps: int) -> optax.Schedule:
  del end, steps
  return optax.constant_schedule(peak)


_DECAYS: dict[str, Callable[[float, float, int], optax.Schedule]] = {
    "linear": _linear, "cosine": _cosine, "constant": _constant}


def learning_rate_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Linear warm-up to the peak over ``warmup_steps``, then the configured decay to the end."""
  peak = config.learning_rate
  decay = _DECAYS[config.decay](peak, peak * config.end_lr_fraction,
                                total_steps - config.warmup_steps)
  if config.warmup_steps == 0:
    return decay
  warmup = optax.linear_schedule(0.0, peak, config.warmup_steps)
  return optax.join_schedules([warmup, decay], [config.warmup_steps])


def decay_mask(params: Params) -> Params:
  """True where weight decay applies: kernels and embeddings, not biases or norm scales."""
  def decays(path, _):
    name = getattr(path[-1], "key", str(path[-1]))
    return name not in ("bias", "scale")
  return jax.tree_util.tree_map_with_path(decays, params)


def lamb(config: OptimizerConfig,
         schedule: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  """``optax.lamb``'s chain with a configurable first-moment dtype and the decay mask.

  Identical to ``optax.lamb(schedule, b1, b2, eps, weight_decay=..., mask=decay_mask)`` when
  ``mu_dtype`` is None and ``exclude_from_layer_adaptation`` is False (tested).
  """
  trust_ratio = optax.scale_by_trust_ratio()
  if config.exclude_from_layer_adaptation:
    trust_ratio = optax.masked(trust_ratio, decay_mask)
  return optax.chain(
      optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps,
                          mu_dtype=None if config.mu_dtype is None else jnp.dtype(config.mu_dtype)),
      optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
      trust_ratio,
      optax.scale_by_learning_rate(schedule),
  )


def adamw(config: OptimizerConfig,
          schedule: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  """AdamW with the decay mask: ``optax.adamw(schedule, b1, b2, eps, weight_decay=...,
  mask=decay_mask)`` with a configurable first-moment dtype (tested equal to it)."""
  return optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                     weight_decay=config.weight_decay, mask=decay_mask,
                     mu_dtype=None if config.mu_dtype is None else jnp.dtype(config.mu_dtype))


def _path_string(path: Sequence[Any]) -> str:
  return "/".join(str(getattr(p, "key", p)) for p in path)


def scale_groups(scales: Sequence[tuple[str, float]]) -> optax.GradientTransformation:
  """Multiplies the update of every leaf under a path prefix by its factor (see
  ``OptimizerConfig.learning_rate_scales``); stateless, and leaves no prefix matches unchanged."""

  def factor(path) -> float:
    name = _path_string(path)
    for prefix, value in scales:
      if name == prefix or name.startswith(prefix + "/"):
        return float(value)
    return 1.0

  def update(updates, state, params=None):
    del params
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, u: u if factor(path) == 1.0 else u * jnp.asarray(factor(path), u.dtype),
        updates)
    return scaled, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


OPTIMIZERS: dict[str, Callable[[OptimizerConfig, optax.ScalarOrSchedule],
                                optax.GradientTransformation]] = {
    "lamb": lamb, "adamw": adamw}


def make_optimizer(config: OptimizerConfig, total_steps: int,
                   labels: Optional[Params] = None, *,
                   unit_learning_rate: bool = False) -> optax.GradientTransformation:
  """The phase's optimizer: clipping + LAMB/AdamW on trainable leaves, nothing on frozen ones.

  Args:
    config: the optimizer settings.
    total_steps: steps of the phase (the schedule decays over them).
    labels: a tree like the parameters with ``"train"`` or ``"frozen"`` leaves (see
      :func:`freeze_labels`); None trains everything.
    unit_learning_rate: build the optimizer at learning rate 1, without the schedule, for a
      caller that multiplies the updates by each step's rate itself (the train step does: the
      rate is then data, and one compiled step serves every schedule, step count and peak
      rate). The updates of these optimizers are proportional to the rate, so this changes
      nothing but where the schedule is evaluated.
  """
  schedule = 1.0 if unit_learning_rate else learning_rate_schedule(config, total_steps)
  inner = OPTIMIZERS[config.name](config, schedule)
  if config.learning_rate_scales:
    inner = optax.chain(inner, scale_groups(config.learning_rate_scales))
  if config.clip_norm is not None:
    inner = optax.chain(optax.clip_by_global_norm(config.clip_norm), inner)
  if labels is None:
    return inner
  # Clipping sees only the trainable gradients (frozen ones are zero anyway).
  return optax.multi_transform({TRAIN: inner, FROZEN: optax.set_to_zero()}, labels)


def freeze_labels(params: Params, trainable: Callable[[tuple[str, ...]], bool]) -> Params:
  """A label tree: ``"train"`` where ``trainable(path)`` is true, else ``"frozen"``.

  ``path`` is the tuple of dict keys to a leaf, e.g. ``("student", "encoder", "block_3",
  "attention", "query", "kernel")``.
  """
  def label(path, _):
    keys = tuple(getattr(p, "key", str(p)) for p in path)
    return TRAIN if trainable(keys) else FROZEN
  return jax.tree_util.tree_map_with_path(label, params)


def count_by_label(params: Params, labels: Params) -> dict[str, int]:
  """Number of parameters per label (for progress output and tests)."""
  counts = {TRAIN: 0, FROZEN: 0}
  for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels)):
    counts[label] += int(leaf.size)
  return counts
