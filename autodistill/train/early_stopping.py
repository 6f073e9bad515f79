"""Early stopping on an evaluation metric, and the record of the best evaluation so far.

:class:`EarlyStopping` is the rule (which metric, which direction, how much patience);
:class:`BestSoFar` is what a run carries while following it: the best metrics, their step, a
copy of their parameters, and how many evaluations since then did not improve. Fine-tuning keeps
the parameters of its best dev evaluation this way and stops once ``patience`` evaluations in a
row did not beat them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

Params = Any


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
    """Whether ``value`` beats ``best`` (None: nothing yet, so any finite value does)."""
    if best is None:
      return math.isfinite(value)
    return (value > best + self.min_delta if self.mode == "max"
            else value < best - self.min_delta)


@dataclasses.dataclass
class BestSoFar:
  """The best evaluation of a run under an :class:`EarlyStopping` rule (inert without one).

  Attributes:
    rule: the rule, or None (then nothing is tracked and the run never stops early).
    metrics: the best evaluation's metrics.
    step: its global step.
    params: a device copy of its parameters.
    since: evaluations since the best one.
    stopped_at: the global step where the run stopped early, else None.
  """

  rule: Optional[EarlyStopping] = None
  metrics: Optional[dict[str, float]] = None
  step: Optional[int] = None
  params: Optional[Params] = None
  since: int = 0
  stopped_at: Optional[int] = None

  def observe(self, step: int, metrics: Mapping[str, float], params: Params) -> None:
    """Takes in the evaluation of ``params`` at global ``step``.

    Raises:
      KeyError: the evaluation does not report the watched metric.
    """
    if self.rule is None:
      return
    if self.rule.metric not in metrics:
      raise KeyError(f"early stopping watches {self.rule.metric!r}, which the evaluation "
                     f"does not report (it reports {sorted(metrics)}).")
    best = None if self.metrics is None else self.metrics[self.rule.metric]
    if self.rule.improves(float(metrics[self.rule.metric]), best):
      # A copy: the live parameters are donated to the next step.
      self.metrics, self.step, self.since = dict(metrics), step, 0
      self.params = jax.tree.map(jnp.copy, params)
    else:
      self.since += 1

  def patience_exhausted(self) -> bool:
    """Whether ``patience`` evaluations in a row did not improve (never with patience 0)."""
    return (self.rule is not None and self.rule.patience > 0
            and self.since >= self.rule.patience)

  def describe_stop(self) -> str:
    """One line on why the run stopped, for the log."""
    return (f"no improvement of {self.rule.metric} in {self.since} evaluations; best "
            f"{self.metrics[self.rule.metric]:.4f} at step {self.step}")

  def state_dict(self) -> dict[str, Any]:
    """Everything but the parameters, as JSON (the parameters are checkpointed as arrays)."""
    return {"metrics": self.metrics, "step": self.step, "since": self.since,
            "stopped_at": self.stopped_at}

  def load_state_dict(self, state: Mapping[str, Any], params: Params) -> None:
    """Restores :meth:`state_dict`'s output and the checkpointed ``params``."""
    self.metrics, self.step = state["metrics"], state["step"]
    self.since, self.stopped_at = state["since"], state["stopped_at"]
    self.params = params
