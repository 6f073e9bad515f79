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

from typing import Any, Mapping, Optional, Sequence

from vizier import pyvizier as vz

# Objectives and constraints need no Vizier: they live in search.settings.
from autodistill.search.settings import DEFAULT_OBJECTIVES, METADATA_NS, get_objectives
from autodistill.space import Point, Space


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
