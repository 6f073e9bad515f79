"""The ``eagle`` designer: Vizier's Eagle strategy (firefly algorithm) on a scalarisation.

Replaying the history rebuilds Eagle's firefly pool from the trials in id order (each trial
carries its parent fly id in its ``eagle`` metadata). Two counters of the pool are not
reconstructed by Vizier's replay, and :class:`ScalarizedEagle` restores them from the history: the
next fresh fly id (otherwise new flies reuse ids already in the study) and the last moved fly
(otherwise every suggestion moves the same fly). The pool's initial fill draws from the search's
Halton sequence, as ``quasi_random`` does.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
from vizier import algorithms as vza
from vizier import pyvizier as vz

from autodistill.search.designers import _vizier
from autodistill.search.designers import history
from autodistill.search.designers import seeds

# Augmentation weight of the Chebyshev scalarisation of ScalarizedEagle.
EAGLE_AUGMENT = 0.05


class ScalarizedEagle(vza.Designer):
  """Vizier's Eagle strategy (firefly algorithm) on a random Chebyshev scalarisation.

  Eagle is single-objective. For the paper's two objectives (section 4.3 compares the search
  algorithms on MLM accuracy and latency), each suggestion scalarises them ParEGO-style
  (Knowles 2006), so that successive suggestions aim at different parts of the Pareto front:

  1. Each objective is turned into "larger is better" (minimised metrics are negated) and
     min-max normalised over the feasible completed trials: ``y_i in [0, 1]``, 1 the best seen
     (a constant objective maps to 0). Normalising makes the weights independent of units
     (accuracy is ~0.5, latency is milliseconds).
  2. Weights ``w ~ Dirichlet(1, ..., 1)`` (uniform on the simplex) are drawn from the call's
     seed (:func:`~autodistill.search.designers.seeds.call_seed`), so they change from
     suggestion to suggestion, reproducibly.
  3. ``scalarized = min_i w_i y_i + 0.05 * sum_i w_i y_i``: the augmented Chebyshev
     scalarisation (Vizier's ``LinearAugmentedScalarization`` over ``ChebyshevScalarization``).
     Unlike a weighted sum it reaches non-convex parts of the front; the small linear term
     breaks ties between weakly dominated points.

  Infeasible trials stay infeasible (Eagle keeps away from them); feasible trials that lack an
  objective are left out. The Eagle designer is rebuilt on every call from the whole history (see
  the module docstring for the two pool counters restored here). A single-objective problem is
  passed to Eagle unchanged.
  """

  METRIC = "scalarized"

  def __init__(self, problem: vz.ProblemStatement, *, seed: int, num_trials: int):
    self._objectives = history.objectives(problem)
    self._rng = np.random.default_rng(seeds.call_seed(seed, num_trials))
    self._weights = self._rng.dirichlet(np.ones(len(self._objectives)))
    inner = copy.deepcopy(problem)
    if len(self._objectives) > 1:
      metrics = problem.metric_information.exclude_type(vz.MetricType.OBJECTIVE)
      metrics.append(vz.MetricInformation(self.METRIC, goal=vz.ObjectiveMetricGoal.MAXIMIZE))
      inner.metric_information = metrics

    def initial(scaled_problem: vz.ProblemStatement, **unused) -> vza.Designer:
      # Eagle passes its own (per-call) seed; the initial fill follows the search's sequence.
      del unused
      return seeds.halton_designer(scaled_problem, seed=seed, num_trials=num_trials)

    self._eagle = _vizier.EagleStrategyDesigner(
        inner, seed=seeds.call_seed(seed, num_trials), initial_designer_factory=initial)
    pool = self._eagle._firefly_pool  # pylint: disable=protected-access
    if not (hasattr(pool, "_max_fly_id") and hasattr(pool, "_last_id")):
      raise RuntimeError("this Vizier's FireflyPool lacks _max_fly_id/_last_id; "
                         "autodistill.search.designers.eagle.ScalarizedEagle needs updating.")
    self._pool = pool

  @property
  def weights(self) -> np.ndarray:
    """This call's scalarisation weights (one per objective, summing to 1)."""
    return self._weights

  def scalarize(self, trials: Sequence[vz.Trial]) -> list[vz.Trial]:
    """Copies of ``trials`` whose only metric is the scalarised objective (see class doc)."""
    if len(self._objectives) <= 1:
      return [copy.deepcopy(t) for t in trials]
    names = [m.name for m in self._objectives]
    signs = np.array([1.0 if m.goal == vz.ObjectiveMetricGoal.MAXIMIZE else -1.0
                      for m in self._objectives])
    feasible = [t for t in trials if not t.infeasible and history.has_objectives(t, names)]
    values = np.array([[t.final_measurement.metrics[n].value for n in names] for t in feasible],
                      dtype=np.float64).reshape(len(feasible), len(names)) * signs
    low, high = (values.min(axis=0), values.max(axis=0)) if feasible else (0.0, 1.0)
    span = np.where(high > low, high - low, 1.0)
    normed = (values - low) / span
    weighted = normed * self._weights
    scores = weighted.min(axis=1) + EAGLE_AUGMENT * weighted.sum(axis=1)
    score_of = {id(t): float(s) for t, s in zip(feasible, scores)}
    result = []
    for trial in trials:
      if trial.infeasible:
        new = vz.Trial(parameters=trial.parameters, metadata=copy.deepcopy(trial.metadata),
                       id=trial.id)
        new.complete(vz.Measurement(), infeasibility_reason=trial.infeasibility_reason or
                     "infeasible")
      elif id(trial) in score_of:
        new = vz.Trial(parameters=trial.parameters, metadata=copy.deepcopy(trial.metadata),
                       id=trial.id)
        new.complete(vz.Measurement(metrics={self.METRIC: score_of[id(trial)]}))
      else:
        continue
      result.append(new)
    return result

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    """Rebuilds the firefly pool from the scalarised history."""
    trials = list(completed.trials) + list(all_active.trials)
    fly_ids = [(t.id, int(t.metadata.ns("eagle")["parent_fly_id"])) for t in trials
               if t.metadata.ns("eagle").get("parent_fly_id") not in (None, "")]
    if fly_ids:
      # Flies created while replaying (for trials without a parent, e.g. the baseline) and by
      # this call's suggestions must not reuse ids that trials of the study already carry.
      self._pool._max_fly_id = max(self._pool._max_fly_id, max(f for _, f in fly_ids) + 1)
    self._eagle.update(vza.CompletedTrials(self.scalarize(completed.trials)), all_active)
    if fly_ids:
      self._pool._max_fly_id = max(self._pool._max_fly_id, max(f for _, f in fly_ids) + 1)
      # The fly that moved last is the parent of the newest trial: the next suggestion moves
      # the following fly of the pool, as the stateful designer would.
      self._pool._last_id = max(fly_ids)[1]

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    return self._eagle.suggest(count or 1)
