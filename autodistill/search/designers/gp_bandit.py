"""The ``gp_bandit`` designer: Vizier's GP bandit, never suggesting a student already evaluated.

With two objectives Vizier's ``VizierGPBandit`` fits one GP per metric (an independent
multi-task GP) and maximises a UCB averaged over random hypervolume scalarisations (Golovin &
Zhang 2020) of the predictions. :class:`DiscreteGPBandit` wraps it for the finite spaces of the
search.

**No padding** (:data:`GP_PADDING`). The GP's arrays have one row per trial, so every suggestion
compiles its programs for a new shape; Vizier can pad the trial axis
(``PaddingSchedule(num_trials=MULTIPLES_OF_10 | POWERS_OF_2)``) to compile less often. It is not
used: with two objectives the GP is a multi-task GP whose likelihood Vizier does not mask for
padded rows (it logs "padding/masking is not yet supported"), so the padded rows corrupt the
model; and padding would save little compilation anyway, because the designer is rebuilt per call
and its jitted closures are new objects that recompile even at an unchanged padded shape, while
the padded rows make each call compute more.

**Caches cleared after each suggestion** (:data:`CLEAR_JAX_CACHES_AFTER_GP`,
:func:`release_compiled`). The programs compiled for one trial count are never used again (the
next call has another trial count) but stay in JAX's caches, so without clearing them the
process's memory grows with every suggestion, to tens of GB over a 500-trial search.

The prediction errors, seconds and megabytes behind these two choices, and the command that
measures them (``bench/designer_cost.py``), are in ``bench/README.md``.

Not handled: Vizier's GP bandit has no notion of pending points, so it ignores ACTIVE trials, and
parallel workers asking at the same moment may receive the same student (their call seeds differ,
which only perturbs the acquisition optimiser).
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence

import jax
import numpy as np
from vizier import algorithms as vza
from vizier import pyvizier as vz
from vizier.pyvizier.converters import padding

from autodistill.search.designers import _vizier
from autodistill.search.designers import history
from autodistill.search.problem import METADATA_NS

# Spaces up to this many points are scored exhaustively when Vizier's suggestion is a repeat;
# the UCB coefficient (Vizier's GP-bandit default) and the number of random hypervolume
# scalarisations of the multi-objective acquisition.
GRID_LIMIT = 20_000
UCB_COEFFICIENT = 1.8
NUM_SCALARIZATIONS = 1000

# No padding of the trial axis (module docstring).
GP_PADDING = padding.PaddingSchedule()

# Drop JAX's compilation caches after each gp_bandit suggestion (module docstring).
CLEAR_JAX_CACHES_AFTER_GP = True


def release_compiled() -> None:
  """Frees the programs XLA compiled for a ``gp_bandit`` suggestion (``jax.clear_caches()``).

  Called after every ``gp_bandit`` suggestion while :data:`CLEAR_JAX_CACHES_AFTER_GP` is true:
  each suggestion compiles the GP for a new trial count, and the cached programs are never used
  again but stay alive. The caches are process-wide: a search that runs the Vizier server in its
  own process recompiles its other jitted functions afterwards, which a new student's shapes need
  anyway.
  """
  if CLEAR_JAX_CACHES_AFTER_GP:
    jax.clear_caches()


def _grid(problem: vz.ProblemStatement, limit: int) -> Optional[list[dict]]:
  """Every point of a finite search space (DISCRETE/CATEGORICAL/INTEGER), or None if larger
  than ``limit`` or not finite."""
  names, values = [], []
  for config in problem.search_space.parameters:
    if config.type == vz.ParameterType.DOUBLE:
      return None
    names.append(config.name)
    values.append(list(config.feasible_values))
  if np.prod([len(v) for v in values], dtype=float) > limit:
    return None
  return [dict(zip(names, combo)) for combo in itertools.product(*values)]


class DiscreteGPBandit(vza.Designer, vza.Predictor):
  """Vizier's GP bandit whose suggestion is always a student not evaluated yet.

  On a small discrete space with a deterministic evaluation, Vizier's acquisition optimiser
  (which works in a continuous relaxation) keeps landing on students already distilled (in the
  cpu_demo search most suggestions after the baseline did), and asking it for more candidates
  returns copies of one point. A repeat brings no information, so when Vizier's suggestion is a
  repeat this designer scores every unevaluated point of the space (up to :data:`GRID_LIMIT`
  points; Table 1 has 576) with the same fitted GP and picks the best by the acquisition the GP
  bandit uses for several objectives: UCB (``mean + UCB_COEFFICIENT * stddev``, objectives
  oriented to maximise and normalised by the observed range) scalarised by random hypervolume
  scalarisations (Golovin & Zhang 2020) and compared with the best scalarised value of the trials
  so far (expected improvement of the scalarisation).
  """

  def __init__(self, problem: vz.ProblemStatement, *, rng_seed: int,
               padding_schedule: padding.PaddingSchedule):
    self._problem = problem
    self._seed = rng_seed
    self._gp = _vizier.VizierGPBandit(problem, rng=jax.random.PRNGKey(rng_seed),
                                      padding_schedule=padding_schedule)
    self._completed: list[vz.Trial] = []
    self._active: list[vz.Trial] = []

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    self._completed.extend(completed.trials)
    self._active = list(all_active.trials)
    self._gp.update(completed, all_active)

  def predict(self, trials: Sequence[vz.TrialSuggestion],
              rng: Optional[jax.Array] = None, num_samples: Optional[int] = 1000) -> vza.Prediction:
    """The fitted GP's posterior at ``trials`` (Vizier's ``VizierGPBandit.predict``)."""
    return self._gp.predict(trials, rng=rng, num_samples=num_samples)

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    count = count or 1
    suggestions = list(self._gp.suggest(count))
    seen = {history.student_key(t.parameters) for t in self._completed + self._active}
    if all(history.student_key(s.parameters) not in seen for s in suggestions):
      return suggestions
    grid = _grid(self._problem, GRID_LIMIT)
    feasible = [t for t in self._completed if not t.infeasible and t.final_measurement]
    if grid is None or len(feasible) < 2:
      return suggestions
    candidates = [vz.TrialSuggestion(parameters=p) for p in grid]
    candidates = [c for c in candidates if history.student_key(c.parameters) not in seen]
    if not candidates:
      return suggestions
    scores = self._scores(candidates, feasible)
    order = np.argsort(-scores, kind="stable")
    picked = [candidates[i] for i in order[:count]]
    for c in picked:
      c.metadata.ns(METADATA_NS)["acquisition"] = "discrete_fallback"
    return picked

  def _scores(self, candidates: Sequence[vz.TrialSuggestion],
              feasible: Sequence[vz.Trial]) -> np.ndarray:
    metrics = history.objectives(self._problem)
    sign = np.array([1.0 if m.goal.is_maximize else -1.0 for m in metrics])
    observed = np.array([[t.final_measurement.metrics[m.name].value for m in metrics]
                         for t in feasible]) * sign
    low, span = observed.min(0), np.maximum(np.ptp(observed, 0), 1e-12)
    prediction = self._gp.predict(candidates, rng=jax.random.PRNGKey(self._seed))
    mean = np.asarray(prediction.mean).reshape(len(candidates), -1) * sign
    std = np.asarray(prediction.stddev).reshape(len(candidates), -1)
    ucb = (mean + UCB_COEFFICIENT * std - low) / span
    observed = (observed - low) / span
    # Random directions on the positive orthant; reference point just below the observed box.
    rng = np.random.default_rng(self._seed)
    weights = np.abs(rng.normal(size=(NUM_SCALARIZATIONS, len(metrics))))
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    reference = -0.1

    def scalarize(points):  # [P, M] -> [W, P]
      ratio = np.maximum(points[None, :, :] - reference, 0.0) / weights[:, None, :]
      return ratio.min(-1) ** len(metrics)

    best = scalarize(observed).max(1, keepdims=True)
    return np.maximum(scalarize(ucb) - best, 0.0).mean(0)
