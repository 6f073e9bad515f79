"""One row of the search's trials table: what a trial was and what it measured."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

# Trial states as reported in the table.
COMPLETED = "completed"    # distilled and evaluated; feasible
INFEASIBLE = "infeasible"  # invalid, violated a constraint, or failed (reason says which)
ACTIVE = "active"          # suggested, not yet completed (a worker has it or was killed)

# The parts of a trial's wall time in ``TrialRecord.seconds`` (see autodistill.timing): building
# the student and its programs' inputs, compiling, training steps, held-out evaluation,
# checkpoints, and the latency measurement (0 when the latency cache had the student).
TIME_PARTS = ("setup", "compile", "train", "evaluate", "checkpoint", "latency")


@dataclasses.dataclass
class TrialRecord:
  """A trial of the search, flattened for tables, plots and the Pareto front.

  Attributes:
    trial_id: Vizier trial id (1-based, in suggestion order).
    name: the student's architecture name (``Model_...``), or "" if the point is invalid.
    factors: the design-space point (factor -> value).
    status: :data:`COMPLETED`, :data:`INFEASIBLE` or :data:`ACTIVE`.
    reason: why an infeasible trial is infeasible ("" otherwise).
    is_baseline: the space's baseline (e.g. MobileBERT), evaluated like every other trial.
    params: encoder parameters.
    latency_ms, latency_p10_ms, latency_p90_ms, latency_std_ms: batch-1 latency statistics.
    flops: FLOPs of one batch-1 forward.
    mlm_accuracy, nsp_accuracy: held-out accuracy after flash distillation.
    mlm_accuracy_init: held-out MLM accuracy at step 0 (the initialised student); None for
      trials, which skip that diagnostic evaluation (``search.evaluate.trial_recipe``).
    mlm_loss, nsp_loss: held-out cross-entropies after flash distillation.
    mlm_predictions: how many held-out masked predictions ``mlm_accuracy`` and ``mlm_loss``
      average over; mlm_loss_std: the standard deviation of those predictions' losses (with
      them, :func:`~autodistill.search.pareto.metric_noise` gives the accuracy's and the loss's
      standard errors).
    relation_loss: held-out self-attention relation loss of a subnet in the shared weights of an
      AutoDistil SuperLM (:mod:`autodistill.supernet`); None for distilled trials.
    latency_s, distill_s, total_s: wall-clock seconds of each stage of the trial.
    seconds: where the trial's time went, by part (:data:`TIME_PARTS`); empty for a trial that
      never reached distillation or whose distillation was read back from an earlier run.
    client_id: the worker that ran it.
    repeat_of: the trial whose result this one reuses (a designer suggested the student again).
    workdir: the trial's distillation directory (relative to the search workdir).
  """

  trial_id: int
  name: str = ""
  factors: dict[str, Any] = dataclasses.field(default_factory=dict)
  status: str = ACTIVE
  reason: str = ""
  is_baseline: bool = False
  params: Optional[int] = None
  latency_ms: Optional[float] = None
  latency_p10_ms: Optional[float] = None
  latency_p90_ms: Optional[float] = None
  latency_std_ms: Optional[float] = None
  flops: Optional[float] = None
  mlm_accuracy: Optional[float] = None
  nsp_accuracy: Optional[float] = None
  mlm_accuracy_init: Optional[float] = None
  mlm_loss: Optional[float] = None
  nsp_loss: Optional[float] = None
  mlm_predictions: Optional[float] = None
  mlm_loss_std: Optional[float] = None
  relation_loss: Optional[float] = None
  latency_s: Optional[float] = None
  distill_s: Optional[float] = None
  total_s: Optional[float] = None
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  client_id: str = ""
  repeat_of: Optional[int] = None
  workdir: str = ""

  @property
  def feasible(self) -> bool:
    return self.status == COMPLETED

  def metric(self, name: str) -> Optional[float]:
    value = getattr(self, name, None)
    return None if value is None else float(value)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "TrialRecord":
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})
