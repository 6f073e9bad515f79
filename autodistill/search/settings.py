"""What a search optimises and how it runs, without Vizier: objectives, constraints, settings.

:data:`OBJECTIVES` are the metrics a completed trial reports (paper section 3.5: held-out MLM
accuracy, maximised, and batch-1 latency on the target device, minimised, are the default pair);
:class:`Constraints` are the user's limits; :class:`SearchSettings` and
:class:`FinalizeSettings` are the typed ``search`` and ``finalize`` sections of an experiment
config (see :func:`autodistill.config.parse_config`). The Vizier problem built from them is in
:mod:`autodistill.search.problem`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional, Sequence

from autodistill.distill.recipe import DistillConfig
from autodistill.errors import UserError


@dataclasses.dataclass(frozen=True)
class Objective:
  """A metric a trial reports and the direction the search pushes it."""

  name: str
  goal: str  # "maximize" or "minimize"
  description: str

  @property
  def vizier_goal(self) -> Any:
    """The ``vizier.pyvizier.ObjectiveMetricGoal`` (Vizier is imported only when asked)."""
    from vizier import pyvizier as vz  # pylint: disable=import-outside-toplevel
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


class IncompatibleStudyError(UserError, ValueError):
  """The workdir's study was created by a search with other settings."""


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """How the search runs (the ``search`` section of an experiment config).

  Attributes:
    designer: a name of :data:`autodistill.search.designers.DESIGNERS`.
    num_trials: trials to evaluate (pruned ones do not count).
    seed: the designer's seed.
    objectives: names of :data:`OBJECTIVES`, in order.
    evaluate_baseline: the space's baseline is the first trial.
    constraints: limits; a violating student is infeasible.
    study_id: the Vizier study id (owner ``autodistill``).
    endpoint: a Vizier server's ``host:port``; "" runs one in-process on the workdir.
    client_id: this worker's id; an interrupted trial comes back to it.
    max_suggestions: stop after this many suggestions (a mostly invalid space cannot loop).
    elastic: distil every trial inside the space's elastic envelope
      (:mod:`autodistill.models.elastic`), so all students share one set of compiled programs;
      where the space's students cannot share one (say, some have the teacher's width and need
      no feature projection) trials fall back to their own shapes and the log says why.
    latency_budgets_ms: latency budgets: ``autodistill recommend`` names the best student found
      within each; the ``kdnas`` designer's budget T is the first (none: the baseline trial's
      latency), in its reward MnasNet's ``quality * (latency / T) ** w``
      (:func:`autodistill.search.designers.kdnas.reward`).
    kdnas_exponent: that ``w`` (MnasNet's soft -0.07) unless ``kdnas_hard``: ``w`` is 0 within
      the budget and -1 beyond it.
    proxy_documents: KD-NAS's proxy set: trials distil on a fixed, seeded subset of this many
      training documents (:meth:`autodistill.data.PretrainingData.proxy`); ``finalize`` on all
      of them. 0: every training document.
  """

  designer: str = "gp_bandit"
  num_trials: int = 6
  seed: int = 0
  objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
  evaluate_baseline: bool = True
  constraints: Constraints = Constraints()
  study_id: str = "autodistill"
  endpoint: str = ""
  client_id: str = "worker-0"
  max_suggestions: int = 120
  elastic: bool = True
  latency_budgets_ms: tuple[float, ...] = ()
  kdnas_exponent: float = -0.07
  kdnas_hard: bool = False
  proxy_documents: int = 0

  def designer_metadata(self) -> dict[str, str]:
    """What the designer reads from the study's metadata besides its name and seed (only
    ``kdnas`` has settings; other designers' studies store nothing more)."""
    if self.designer != "kdnas":
      return {}
    budget = self.latency_budgets_ms[0] if self.latency_budgets_ms else None
    return {"kdnas": json.dumps({"budget_ms": budget,
                                 "exponent": self.kdnas_exponent, "hard": self.kdnas_hard},
                                sort_keys=True)}


@dataclasses.dataclass(frozen=True)
class FinalizeSettings:
  """Which of the search's students are finalized, and the recipe (paper sections 3.1, 4.6).

  Attributes:
    trials: trial ids; () = the Pareto front.
    max_students: at most this many of the front (those beating the baseline first); 0 = all.
    recipe: the distillation of the winners (regular by default).
  """

  trials: tuple[int, ...] = ()
  max_students: int = 1
  recipe: DistillConfig = DistillConfig(preset="regular")
