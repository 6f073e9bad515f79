"""The search problem in Vizier's terms (paper section 3.5): parameters, objectives, constraints.

Every factor of a :class:`~autodistill.space.Space` becomes one Vizier parameter: numeric
factors are ``DISCRETE`` (ordered, so the GP sees that 384 lies between 256 and 512), strings and
bools ``CATEGORICAL``. The objectives are metrics of a completed trial (:data:`OBJECTIVES`); the
default pair is the paper's: held-out MLM accuracy (maximise) and batch-1 latency on the target
device (minimise).

Constraints (:class:`Constraints`) are checked by the search loop before any distillation where
they can be: parameter count analytically, latency from the latency cache or a measurement that
costs seconds. A violating student is completed as infeasible with the reason, so the designer
learns to avoid the region and no distillation is spent on it. ``min_accuracy`` can only be
known after distillation; such trials keep their metrics but are marked infeasible.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from vizier import pyvizier as vz

from autodistill.space import Point, Space


@dataclasses.dataclass(frozen=True)
class Objective:
  """A metric a trial reports and the direction the search pushes it."""

  name: str
  goal: str  # "maximize" or "minimize"
  description: str

  @property
  def vizier_goal(self) -> vz.ObjectiveMetricGoal:
    return (vz.ObjectiveMetricGoal.MAXIMIZE if self.goal == "maximize"
            else vz.ObjectiveMetricGoal.MINIMIZE)

  def better(self, a: float, b: float) -> bool:
    """True when ``a`` is strictly better than ``b`` for this objective."""
    return a > b if self.goal == "maximize" else a < b


OBJECTIVES: dict[str, Objective] = {
    "mlm_accuracy": Objective("mlm_accuracy", "maximize",
                              "held-out masked-LM accuracy after flash distillation"),
    "nsp_accuracy": Objective("nsp_accuracy", "maximize",
                              "held-out next-sentence accuracy after flash distillation"),
    "mlm_loss": Objective("mlm_loss", "minimize",
                          "held-out masked-LM cross-entropy after flash distillation (separates "
                          "students whose accuracy ties at tiny budgets)"),
    "latency_ms": Objective("latency_ms", "minimize",
                            "median batch-1 inference latency on the target device"),
    "params": Objective("params", "minimize", "encoder parameters (no pre-training heads)"),
    "flops": Objective("flops", "minimize", "FLOPs of one batch-1 forward pass"),
}

DEFAULT_OBJECTIVES = ("mlm_accuracy", "latency_ms")

# Metadata namespace for what autodistill stores in a Vizier study and its trials.
METADATA_NS = "autodistill"


def get_objectives(names: Sequence[str]) -> list[Objective]:
  """The :class:`Objective` of each name, in order.

  Raises:
    ValueError: an unknown or repeated name, or fewer than one objective.
  """
  names = list(names)
  if not names:
    raise ValueError(f"give at least one objective; known: {sorted(OBJECTIVES)}.")
  unknown = [n for n in names if n not in OBJECTIVES]
  if unknown:
    raise ValueError(f"unknown objective(s) {unknown}; choose from {sorted(OBJECTIVES)}.")
  if len(set(names)) != len(names):
    raise ValueError(f"objectives {names} repeat a name.")
  return [OBJECTIVES[n] for n in names]


@dataclasses.dataclass(frozen=True)
class Constraints:
  """User limits on a student; None means no limit.

  Attributes:
    max_latency_ms: the batch-1 latency on the target device must not exceed this.
    max_params: the encoder's parameter count must not exceed this.
    min_accuracy: the held-out MLM accuracy after flash distillation must reach this.
  """

  max_latency_ms: Optional[float] = None
  max_params: Optional[int] = None
  min_accuracy: Optional[float] = None

  def violation(self, metrics: Mapping[str, Any]) -> Optional[str]:
    """The first constraint ``metrics`` break (only those metrics present are checked)."""
    latency, params, accuracy = (metrics.get("latency_ms"), metrics.get("params"),
                                 metrics.get("mlm_accuracy"))
    if self.max_params is not None and params is not None and params > self.max_params:
      return f"{params:,} parameters exceed max_params={self.max_params:,}"
    if (self.max_latency_ms is not None and latency is not None
        and latency > self.max_latency_ms):
      return f"latency {latency:.3f} ms exceeds max_latency_ms={self.max_latency_ms}"
    if self.min_accuracy is not None and accuracy is not None and accuracy < self.min_accuracy:
      return f"MLM accuracy {accuracy:.4f} is below min_accuracy={self.min_accuracy}"
    return None


def _is_numeric(values: Sequence[Any]) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _categorical(value: Any) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


def search_space(space: Space) -> vz.SearchSpace:
  """The Vizier search space of ``space``: one DISCRETE or CATEGORICAL parameter per factor."""
  result = vz.SearchSpace()
  for factor, values in space.factors.items():
    if _is_numeric(values):
      if len(values) == 1:  # Vizier needs two feasible values for DISCRETE; a constant is fine.
        result.root.add_categorical_param(factor, [_categorical(values[0])])
      else:
        result.root.add_discrete_param(factor, sorted(float(v) for v in values))
    else:
      result.root.add_categorical_param(factor, [_categorical(v) for v in values])
  return result


def problem_statement(space: Space, objectives: Sequence[str] = DEFAULT_OBJECTIVES,
                      metadata: Optional[Mapping[str, str]] = None) -> vz.ProblemStatement:
  """The Vizier problem: the space's parameters and one metric per objective.

  Args:
    space: the design space.
    objectives: names from :data:`OBJECTIVES` (default: MLM accuracy and latency).
    metadata: strings stored under the ``autodistill`` namespace (designer, seed, space).
  """
  metrics = vz.MetricsConfig([vz.MetricInformation(o.name, goal=o.vizier_goal)
                              for o in get_objectives(objectives)])
  problem = vz.ProblemStatement(search_space=search_space(space), metric_information=metrics)
  for key, value in (metadata or {}).items():
    problem.metadata.ns(METADATA_NS)[key] = str(value)
  return problem


def parameters_of(space: Space, point: Mapping[str, Any]) -> dict[str, Any]:
  """Vizier parameter values of a point (for requesting a specific trial, e.g. the baseline)."""
  space.check_point(point)
  result = {}
  for factor, value in point.items():
    values = space.factors[factor]
    numeric = _is_numeric(values) and len(values) > 1
    result[factor] = float(value) if numeric else _categorical(value)
  return result


def point_of(space: Space, parameters: Mapping[str, Any]) -> Point:
  """The space point of a Vizier trial's parameter values (floats and strings back to values).

  Raises:
    ValueError: a value that is not one of the factor's values (a study from another space).
  """
  point: Point = {}
  for factor, values in space.factors.items():
    if factor not in parameters:
      raise ValueError(f"trial parameters {dict(parameters)} lack factor {factor!r} of space "
                       f"{space.name!r}; is the study from another space?")
    raw = parameters[factor]
    raw = getattr(raw, "value", raw)
    match = [v for v in values if (_categorical(v) == raw if isinstance(raw, str)
                                   else _is_numeric([v]) and abs(float(v) - float(raw)) < 1e-9)]
    if not match:
      raise ValueError(f"{factor}={raw!r} is not a value of space {space.name!r} "
                       f"({list(values)}); is the study from another space?")
    point[factor] = match[0]
  return point
