"""Reading a study's history: its objectives, the trials that report them, and students."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from vizier import pyvizier as vz


def objectives(problem: vz.ProblemStatement) -> list[vz.MetricInformation]:
  """The problem's objective metrics (not its safety metrics), in order."""
  return list(problem.metric_information.of_type(vz.MetricType.OBJECTIVE))


def has_objectives(trial: vz.Trial, names: Sequence[str]) -> bool:
  """True when the trial's final measurement has a finite value for every name."""
  measurement = trial.final_measurement
  return measurement is not None and all(
      name in measurement.metrics and np.isfinite(measurement.metrics[name].value)
      for name in names)


def student_key(parameters: vz.ParameterDict) -> tuple:
  """A hashable key of a trial's parameters: equal keys are the same student."""
  return tuple(sorted((k, str(v.value)) for k, v in parameters.items()))
