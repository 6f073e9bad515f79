"""The Pareto front of a search (paper section 3.5, Figure 4) and measures of its quality.

A trial's *metric vector* holds one value per objective (e.g. MLM accuracy, latency). Vector
``a`` *dominates* ``b`` when it is no worse in every objective and strictly better in at least
one; the Pareto front is the set of feasible trials that no other feasible trial dominates.
Identical vectors do not dominate each other, so repeated evaluations of one architecture (or
two architectures that measure the same) are all on the front.

Objectives are :class:`~autodistill.search.settings.Objective` instances or their names in
:data:`~autodistill.search.settings.OBJECTIVES`. A missing (``None``) or NaN metric makes a vector
incomplete: it neither dominates nor is dominated, and its trial is never on the front.

**Latency within its noise is a tie.** A latency is a measurement: each record keeps the standard
deviation of its timed calls, and :func:`latency_noise_ms` is ``NOISE_K`` (2) times it, the rule
of :func:`autodistill.hardware.latency.within_noise`. Between two records, a latency difference no
larger than the larger of their two noises counts as equal (:func:`noise_margins`), both for "no
worse" and for "strictly better", so neither the front nor "dominates the baseline" turns on a
difference the measurement cannot resolve. Records without a standard deviation (older tables,
synthetic tests) compare exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Hashable, Optional, Sequence, Union

from autodistill.hardware.latency import NOISE_K
from autodistill.search.settings import DEFAULT_OBJECTIVES, Objective, get_objectives
from autodistill.search.records import TrialRecord

ObjectiveLike = Union[str, Objective]
Vector = Sequence[Optional[float]]


def as_objectives(objectives: Sequence[ObjectiveLike]) -> list[Objective]:
  """:class:`Objective` instances of ``objectives`` (names are looked up in ``OBJECTIVES``).

  Raises:
    ValueError: no objective, an unknown name, or a repeated objective.
  """
  if isinstance(objectives, (str, Objective)):
    objectives = [objectives]
  objectives = list(objectives)
  if all(isinstance(o, str) for o in objectives):
    return get_objectives(objectives)
  result = [o if isinstance(o, Objective) else get_objectives([o])[0] for o in objectives]
  names = [o.name for o in result]
  if len(set(names)) != len(names):
    raise ValueError(f"objectives {names} repeat a name.")
  return result


def _complete(vector: Optional[Vector]) -> bool:
  return vector is not None and all(
      v is not None and not (isinstance(v, float) and math.isnan(v)) for v in vector)


def dominates(a: Vector, b: Vector, objectives: Sequence[ObjectiveLike],
              margins: Optional[Sequence[float]] = None) -> bool:
  """True when metric vector ``a`` Pareto-dominates ``b`` under ``objectives``.

  ``a`` dominates ``b`` when it is no worse in every objective and strictly better in at least
  one. With ``margins`` (one per objective, >= 0), a difference no larger than the objective's
  margin is a tie: ``a`` is worse only by more than the margin and better only by more than it.
  Incomplete vectors (``None``, or a ``None`` or NaN value) never dominate and are never
  dominated.

  Raises:
    ValueError: a vector whose length differs from the number of objectives.
  """
  objectives = as_objectives(objectives)
  if a is None or b is None:
    return False
  if len(a) != len(objectives) or len(b) != len(objectives):
    raise ValueError(f"metric vectors {list(a)} and {list(b)} must have one value per objective "
                     f"({[o.name for o in objectives]}).")
  if not (_complete(a) and _complete(b)):
    return False
  strictly = False
  for objective, x, y, margin in zip(objectives, a, b, margins or [0.0] * len(objectives)):
    if _better_by(objective, y, x, margin):
      return False
    strictly = strictly or _better_by(objective, x, y, margin)
  return strictly


def _better_by(objective: Objective, a: float, b: float, margin: float) -> bool:
  """``a`` better than ``b`` by more than ``margin`` (exactly ``objective.better`` at 0)."""
  if margin <= 0:
    return objective.better(a, b)
  return (a - b if objective.goal == "maximize" else b - a) > margin


def latency_noise_ms(record: TrialRecord) -> float:
  """``NOISE_K`` times the standard deviation of the record's timed calls: how far its latency
  can move by measurement alone (0 when unknown)."""
  std = record.latency_std_ms
  if std is None or not math.isfinite(std):
    return 0.0
  return NOISE_K * max(std, 0.0)


def _standard_error(record: TrialRecord, name: str) -> Optional[float]:
  """The standard error of a held-out MLM metric over the record's masked predictions."""
  n, value = record.mlm_predictions, record.metric(name)
  if not n or value is None or not math.isfinite(value):
    return None
  if name == "mlm_accuracy":
    return math.sqrt(max(value * (1.0 - value), 0.0) / n)
  if name == "mlm_loss" and record.mlm_loss_std is not None:
    return record.mlm_loss_std / math.sqrt(n)
  return None


def metric_noise(record: TrialRecord, name: str) -> Optional[float]:
  """How far a record's metric can move by measurement alone, ``NOISE_K`` standard deviations:

  * ``latency_ms``: :func:`latency_noise_ms` (of the timed calls);
  * ``mlm_accuracy``: of a share over the ``mlm_predictions`` held-out masked tokens,
    sqrt(p (1 - p) / n) (binomial);
  * ``mlm_loss``: of a mean over them, ``mlm_loss_std / sqrt(n)``.

  None for other metrics, and where the record lacks what it needs (older tables).
  """
  if name == "latency_ms":
    return None if record.latency_std_ms is None else latency_noise_ms(record)
  error = _standard_error(record, name)
  return None if error is None else NOISE_K * error


@dataclasses.dataclass(frozen=True)
class Difference:
  """``value - reference`` of one metric of two records, and the noise of that difference."""

  name: str
  value: float
  reference: float
  noise: Optional[float]

  @property
  def delta(self) -> float:
    return self.value - self.reference

  @property
  def beyond_noise(self) -> Optional[bool]:
    """Whether the difference is larger than its noise (None: the noise is unknown)."""
    return None if self.noise is None else abs(self.delta) > self.noise


def difference(record: TrialRecord, reference: TrialRecord, name: str,
               paired_se: Optional[float] = None) -> Optional[Difference]:
  """``record`` against ``reference`` in metric ``name`` (None if either lacks it).

  The noise of a latency difference is the larger of the two latency noises, the rule of the
  Pareto front and of "dominates the baseline" (:func:`noise_margins`). For an accuracy or a
  loss it is ``NOISE_K`` standard errors of the difference: ``paired_se`` when given (the two
  students scored on the same held-out predictions, the standard error of their per-prediction
  differences: :func:`autodistill.search.fidelity.paired_standard_error`), otherwise the
  unpaired ``sqrt(se_a^2 + se_b^2)``, which is far larger when the students err on the same
  tokens (``bench/flash_fidelity.py``).
  """
  value, ref = record.metric(name), reference.metric(name)
  if value is None or ref is None or not (math.isfinite(value) and math.isfinite(ref)):
    return None
  if name == "latency_ms":
    noises = [metric_noise(r, name) for r in (record, reference)]
    noise = None if None in noises else max(noises)
  elif paired_se is not None:
    noise = NOISE_K * paired_se
  else:
    errors = [_standard_error(r, name) for r in (record, reference)]
    noise = None if None in errors else NOISE_K * math.hypot(*errors)
  return Difference(name, value, ref, noise)


def noise_margins(a: TrialRecord, b: TrialRecord,
                  objectives: Sequence[ObjectiveLike]) -> list[float]:
  """Per objective, the difference between ``a`` and ``b`` that counts as a tie: the larger of
  their latency noises for ``latency_ms``, 0 for every other objective."""
  return [max(latency_noise_ms(a), latency_noise_ms(b)) if o.name == "latency_ms" else 0.0
          for o in as_objectives(objectives)]


def record_dominates(a: TrialRecord, b: TrialRecord,
                     objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES) -> bool:
  """:func:`dominates` of two records' metric vectors, latency ties within noise included."""
  return dominates(metric_vector(a, objectives), metric_vector(b, objectives), objectives,
                   noise_margins(a, b, objectives))


def latency_ties(records: Sequence[TrialRecord]) -> list[tuple[TrialRecord, TrialRecord]]:
  """Pairs of ``records`` (in order, each pair once) with different latencies that are equal
  within the measured noise (:func:`noise_margins`)."""
  ties = []
  for i, a in enumerate(records):
    for b in records[i + 1:]:
      if a.latency_ms is None or b.latency_ms is None or a.latency_ms == b.latency_ms:
        continue
      if abs(a.latency_ms - b.latency_ms) <= max(latency_noise_ms(a), latency_noise_ms(b)):
        ties.append((a, b))
  return ties


def metric_vector(record: TrialRecord,
                  objectives: Sequence[ObjectiveLike]) -> list[Optional[float]]:
  """The record's value of each objective (``None`` where unknown)."""
  return [record.metric(o.name) for o in as_objectives(objectives)]


def feasible_records(records: Sequence[TrialRecord],
                     objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES
                     ) -> list[TrialRecord]:
  """Records that are completed and have every objective metric (not None, not NaN).

  A trial that repeats an earlier one (``repeat_of``: the designer suggested the same student
  again and the search reused its result) is left out, so each student counts once.
  """
  objectives = as_objectives(objectives)
  return [r for r in records if r.feasible and not r.repeat_of
          and _complete(metric_vector(r, objectives))]


def _plot_order(records: Sequence[TrialRecord], objectives: Sequence[Objective]
                ) -> list[TrialRecord]:
  """Sorted by the second objective ascending (the first with one objective), then the first
  objective ascending, then trial id."""
  x = objectives[1] if len(objectives) > 1 else objectives[0]
  y = objectives[0]
  return sorted(records, key=lambda r: (r.metric(x.name), r.metric(y.name), r.trial_id))


def pareto_front(records: Sequence[TrialRecord],
                 objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES) -> list[TrialRecord]:
  """The feasible records that no other feasible record dominates.

  Feasible means completed with every objective metric known (see :func:`feasible_records`).
  Records with identical metric vectors do not dominate each other, so all of them are kept;
  nor do latencies within their measured noise (see the module docstring).

  Returns:
    The front sorted for plotting: by the *second* objective's value ascending (e.g. latency,
    the x-axis of :func:`autodistill.search.report.plot_search`), ties by the first objective's
    value ascending, then by trial id. With a single objective, by its value ascending.
  """
  objectives = as_objectives(objectives)
  candidates = feasible_records(records, objectives)
  front = [record for record in candidates
           if not any(record_dominates(other, record, objectives) for other in candidates)]
  return _plot_order(front, objectives)


def baseline_record(records: Sequence[TrialRecord]) -> Optional[TrialRecord]:
  """The baseline: the completed ``is_baseline`` record with the lowest trial id, or None."""
  baselines = [r for r in records if r.is_baseline and r.feasible]
  return min(baselines, key=lambda r: r.trial_id) if baselines else None


def dominating_baseline(records: Sequence[TrialRecord],
                        objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES
                        ) -> list[TrialRecord]:
  """Feasible non-baseline records that dominate the baseline (see :func:`baseline_record`);
  a latency within the measured noise of the baseline's is not better than it.

  Returns:
    Those records in trial-id order; empty when there is no completed baseline or the baseline
    lacks an objective metric.
  """
  objectives = as_objectives(objectives)
  baseline = baseline_record(records)
  if baseline is None:
    return []
  result = [r for r in feasible_records(records, objectives)
            if not r.is_baseline and record_dominates(r, baseline, objectives)]
  return sorted(result, key=lambda r: r.trial_id)


def ranked_front(records: Sequence[TrialRecord],
                 objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES) -> list[TrialRecord]:
  """The Pareto front, best first: the students that dominate the baseline, then by the first
  objective (e.g. the most accurate, or the lowest MLM loss). Its first record is the search's
  winner, the one finalized first."""
  objectives = as_objectives(objectives)
  beats = {r.trial_id for r in dominating_baseline(records, objectives)}
  first = objectives[0]
  sign = -1.0 if first.goal == "maximize" else 1.0
  return sorted(pareto_front(records, objectives),
                key=lambda r: (r.trial_id not in beats, sign * r.metric(first.name)))


def _hypervolume_min(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
  """Volume of the union of boxes [p, reference] for minimisation, every p < reference."""
  if not points:
    return 0.0
  dims = len(reference)
  if dims == 1:
    return reference[0] - min(p[0] for p in points)
  if dims == 2:
    area, best_y = 0.0, reference[1]
    for x, y in sorted(points):
      if y < best_y:
        area += (reference[0] - x) * (best_y - y)
        best_y = y
    return area
  # Slice along the last axis: between consecutive levels, the cross-section is the
  # (d-1)-dimensional hypervolume of the points at or below the lower level.
  points = sorted(points, key=lambda p: p[-1])
  volume = 0.0
  for i, point in enumerate(points):
    upper = points[i + 1][-1] if i + 1 < len(points) else reference[-1]
    if upper > point[-1]:
      volume += (upper - point[-1]) * _hypervolume_min([p[:-1] for p in points[:i + 1]],
                                                       reference[:-1])
  return volume


def hypervolume(points: Sequence[Vector], reference: Sequence[float],
                objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES) -> float:
  """The exact hypervolume that ``points`` dominate with respect to ``reference``.

  That is the measure of the set of vectors that some point dominates (or equals) and that
  dominate the reference. Maximised objectives are negated, so any mix of goals works. Points
  that do not strictly beat the reference in every objective contribute nothing, and incomplete
  points (``None``/NaN) are ignored. Exact for any number of objectives: a sweep in 2-D, slicing
  along the last objective above (O(n^(d-1) log n); meant for up to a few hundred points in 2-3
  objectives).

  Raises:
    ValueError: an incomplete reference, or a point or reference of the wrong length.
  """
  objectives = as_objectives(objectives)
  if len(reference) != len(objectives) or not _complete(reference):
    raise ValueError(f"reference {list(reference)} must have one value per objective "
                     f"({[o.name for o in objectives]}).")
  signs = [1.0 if o.goal == "minimize" else -1.0 for o in objectives]
  ref = tuple(s * float(v) for s, v in zip(signs, reference))
  flipped = []
  for point in points:
    if len(point) != len(objectives):
      raise ValueError(f"point {list(point)} must have one value per objective "
                       f"({[o.name for o in objectives]}).")
    if not _complete(point):
      continue
    p = tuple(s * float(v) for s, v in zip(signs, point))
    if all(x < r for x, r in zip(p, ref)):
      flipped.append(p)
  return float(_hypervolume_min(flipped, ref))


def first_dominating_iteration(metric_rows: Sequence[Optional[Vector]], baseline: Vector,
                               objectives: Sequence[ObjectiveLike] = DEFAULT_OBJECTIVES,
                               k: int = 1, keys: Optional[Sequence[Hashable]] = None
                               ) -> Optional[int]:
  """The 1-based iteration at which the k-th row dominating ``baseline`` arrives.

  Args:
    metric_rows: metric vectors in suggestion order; ``None`` (or an incomplete vector) for a
      trial without metrics, e.g. an infeasible one. Each still counts as an iteration.
    baseline: the baseline's metric vector.
    objectives: the objectives of the vectors.
    k: how many dominating rows to wait for (at least 1).
    keys: optional architecture key of each row (e.g. the student's name). A key counts once:
      a later row with a key that already counted as dominating is not counted again.

  Returns:
    The iteration, or None when fewer than ``k`` rows dominate the baseline.

  Raises:
    ValueError: ``k < 1``, ``keys`` of another length than ``metric_rows``, or an incomplete
      baseline.
  """
  if k < 1:
    raise ValueError(f"k must be at least 1, got {k}.")
  objectives = as_objectives(objectives)
  if len(baseline) != len(objectives) or not _complete(baseline):
    raise ValueError(f"baseline {list(baseline)} must have a value for every objective "
                     f"({[o.name for o in objectives]}).")
  rows = list(metric_rows)
  if keys is not None and len(keys) != len(rows):
    raise ValueError(f"got {len(keys)} keys for {len(rows)} metric rows.")
  counted: set[Hashable] = set()
  count = 0
  for index, row in enumerate(rows):
    if row is None or not dominates(row, baseline, objectives):
      continue
    if keys is not None:
      if keys[index] in counted:
        continue
      counted.add(keys[index])
    count += 1
    if count >= k:
      return index + 1
  return None
