"""Seeded, stateless Vizier designers of the architecture search (paper sections 3.5 and 4.3).

The paper's Model Exploration step (section 3.5) asks a multi-objective Bayesian optimizer (OSS
Vizier's GP bandit) for the next student, given every student distilled so far; section 4.3 also
compares search algorithms on the same accuracy / latency objectives (random search and the
firefly-style evolutionary baseline among them). :data:`DESIGNERS` names the algorithms a search
can use:

* ``gp_bandit`` (default): ``VizierGPBandit``. With two objectives it fits one GP per metric
  (an independent multi-task GP) and maximises a UCB averaged over random hypervolume
  scalarisations (Golovin & Zhang 2020) of the predictions. Wrapped by
  :class:`DiscreteGPBandit`: when Vizier's suggestion is a student already evaluated, the same
  GP scores every unevaluated point of the (finite) space instead.
* ``random``: ``RandomDesigner``, uniform over the product of the factors.
* ``quasi_random``: ``QuasiRandomDesigner``, a scrambled Halton sequence over the factors.
* ``eagle``: ``EagleStrategyDesigner`` (firefly algorithm), single-objective, behind the
  scalarisation of :class:`ScalarizedEagle` (below).
* ``nsga2``: ``NSGA2Designer`` (mutation-only NSGA-II with Pareto rank and crowding distance),
  see :class:`SteadyStateNSGA2` for the settings used here.

**Stateless.** The Vizier service builds a policy per suggestion request, and a search can be
killed and resumed by another process at any moment, so nothing is kept in memory between
suggestions: :func:`suggest` rebuilds the designer from the study's full history (its COMPLETED and
ACTIVE trials, which live in the SQLite database) on every call. The designer's seed for a call
is derived from ``(seed, number of completed + active trials)`` (:func:`call_seed`): random
search does not repeat itself from call to call, and re-running a call with the same seed and the
same history returns the same suggestion. Per designer (read from Vizier's code):

* ``random``: a fresh ``RandomState(call_seed)`` per call.
* ``quasi_random``: one Halton sequence per search (scrambled by ``seed``) whose index is
  ``1000 + number of trials`` (Vizier skips the first 1000 points): the k-th suggestion of the
  search is the k-th point of the sequence, as Vizier's stateful policy would give.
* ``gp_bandit``: Vizier's own service wraps it the same way (``DesignerPolicy``: a new designer
  per call, updated with all trials); only its ``rng`` is derived per call.
* ``eagle``: replaying the history rebuilds the firefly pool from the trials in id order (each
  trial carries its parent fly id in its ``eagle`` metadata). Two counters of the pool are not
  reconstructed by Vizier's replay, and :class:`ScalarizedEagle` restores them from the history:
  the next fresh fly id (otherwise new flies reuse ids already in the study) and the last moved
  fly (otherwise every suggestion moves the same fly). The pool's initial fill draws from the
  search's Halton sequence, as ``quasi_random`` does.
* ``nsga2``: survival selects the population from all feasible completed trials at once, and
  each call mutates members drawn at random (a steady-state NSGA-II).

Vizier's alternative, ``PartiallySerializableDesignerPolicy``, stores designer state in the study
metadata; it is not used: ``NSGA2Designer`` does not serialise its trial count (a restored one
samples randomly forever), it would make the policy and the offline replay of
:func:`suggest` (``bench/designer_cost.py``) two code paths, and the random scalarisation of
``eagle`` needs a fresh pool per call.

**Not handled.** ``gp_bandit`` ignores ACTIVE trials (Vizier's GP bandit has no notion of pending
points), so parallel workers asking at the same moment may receive the same student; the call
seeds differ, which only perturbs the acquisition optimiser. NSGA-II's crowding distance breaks
ties with an unseeded generator inside Vizier, so ``nsga2`` is reproducible only up to such ties.

**GP padding and memory** (:data:`GP_PADDING`, :func:`release_compiled`). ``gp_bandit``'s
arrays have one row per trial, so every suggestion compiles its programs for a new shape; Vizier
can pad the trial axis (``PaddingSchedule(num_trials=MULTIPLES_OF_10 | POWERS_OF_2)``) to
compile less often. Not used here: with two objectives the GP is a multi-task GP, whose
likelihood Vizier does not mask for padded rows (it logs "padding/masking is not yet supported"),
so the padded rows corrupt the model. ``bench/designer_cost.py`` on Table 1 with synthetic
accuracy / latency, ``--max-trials 200 --every 20`` (2 cores, shared with other jobs: load
average 4-7, so the seconds are about twice an idle machine's):

* held-out mean absolute error of the GP's prediction at 20/40/60/80/100 trials, accuracy:
  0.0058/0.0035/0.0026/0.0029/0.0023 unpadded, 0.030/0.014/0.0064/0.013/0.027 with
  ``POWERS_OF_2``; latency (ms): 0.13/0.046/0.039/0.039/0.043 against 0.93/0.41/0.069/0.27/0.67;
* padding saves little compilation here (9-14 s per padded call, 10-22 s unpadded): the
  designer is rebuilt per call and its jitted closures are new objects, so they recompile even
  at an unchanged padded shape (140-200 trials all pad to 256 rows and still compile 9-12 s);
  and padded calls compute more (47-143 s, median 107 s, at 140-200 trials against 41-50 s
  unpadded);
* unpadded suggestions take 26-66 s from 20 to 200 trials (10-22 s of it compiling), 49.6 s at
  200 trials.

The compiled programs stay in JAX's caches and are never used again (the next call has another
trial count): resident memory grows by about 70 MB per suggestion (547 MB -> 1257 MB over 7
calls, ``--keep-caches``), i.e. tens of GB over a 500-trial search. :func:`suggest` therefore
calls ``jax.clear_caches()`` after every ``gp_bandit`` suggestion
(:data:`CLEAR_JAX_CACHES_AFTER_GP`): memory then stays at about 1 GB (985 MB at 100 trials,
980 MB at 200; 923 MB at 500 in a run measuring at 250 and 500 only).

Cost at 500 trials: 76.9 s per suggestion (13.3 s compiling; 48.1 s at 250 trials) at load
average 4, so the non-compile part grows about linearly with the trials; a 500-trial search
spends hours of its 2 cores in ``gp_bandit`` (the others take under 0.3 s per call at 500).
"""

from __future__ import annotations

import copy
import itertools
from typing import Iterable, Optional, Sequence

import jax
import numpy as np
from vizier import algorithms as vza
from vizier import pythia
from vizier import pyvizier as vz
from vizier._src.algorithms.designers import gp_bandit
from vizier._src.algorithms.designers import quasi_random
from vizier._src.algorithms.designers import random as random_designer
from vizier._src.algorithms.designers.eagle_strategy import eagle_strategy
from vizier._src.algorithms.evolution import nsga2
from vizier._src.algorithms.evolution import numpy_populations
from vizier.pyvizier.converters import padding

from autodistill.search.problem import METADATA_NS

DESIGNERS = ("gp_bandit", "random", "quasi_random", "eagle", "nsga2")
DEFAULT_DESIGNER = "gp_bandit"

# Vizier algorithm names accepted in the study's `algorithm` field when the problem metadata
# names no designer (the search loop stores the designer in metadata and sets "DEFAULT").
ALGORITHM_ALIASES = {
    "DEFAULT": DEFAULT_DESIGNER,
    "ALGORITHM_UNSPECIFIED": DEFAULT_DESIGNER,
    "": DEFAULT_DESIGNER,
    "GAUSSIAN_PROCESS_BANDIT": "gp_bandit",
    "RANDOM_SEARCH": "random",
    "QUASI_RANDOM_SEARCH": "quasi_random",
    "EAGLE_STRATEGY": "eagle",
    "NSGA2": "nsga2",
}

# Vizier skips this many leading points of a Halton sequence (QuasiRandomDesigner's default).
HALTON_SKIP = 1000

# Every designer is asked for this many candidates beyond those returned, and the first ones
# that are not students of the study's history are returned, so no trial is spent on a student
# already evaluated while a designer offers an alternative. (Vizier's GP bandit returns copies
# of one point here; DiscreteGPBandit handles its repeats.)
NOVELTY_CANDIDATES = 8

# DiscreteGPBandit: spaces up to this many points are scored exhaustively when Vizier's
# suggestion is a repeat; the UCB coefficient (Vizier's GP-bandit default is 1.8) and the number
# of random hypervolume scalarisations of its multi-objective acquisition.
GRID_LIMIT = 20_000
UCB_COEFFICIENT = 1.8
NUM_SCALARIZATIONS = 1000

# No padding for gp_bandit: see the module docstring ("GP padding and memory").
GP_PADDING = padding.PaddingSchedule()

# Drop JAX's compilation caches after each gp_bandit suggestion (module docstring).
CLEAR_JAX_CACHES_AFTER_GP = True

# NSGA-II settings (see SteadyStateNSGA2).
NSGA2_POPULATION = 20
NSGA2_MUTATION_NORM = 0.2

# Augmentation weight of the Chebyshev scalarisation of ScalarizedEagle.
EAGLE_AUGMENT = 0.05


def check_designer(name: str) -> str:
  """Returns ``name`` if it is one of :data:`DESIGNERS`.

  Raises:
    ValueError: unknown name (the message lists :data:`DESIGNERS`).
  """
  if name not in DESIGNERS:
    raise ValueError(f"unknown designer {name!r}; choose one of {list(DESIGNERS)}.")
  return name


def _derive(*values: int) -> int:
  """A 31-bit seed hashed from integers (any sign or size)."""
  entropy = [int(v) % (1 << 64) for v in values]
  return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0] >> 1)


def call_seed(seed: int, num_trials: int) -> int:
  """The seed of the designer that makes a study's suggestion after ``num_trials`` trials.

  Hashes ``(seed, num_trials)``, so that a designer rebuilt per suggestion (section 3.5's loop
  runs statelessly in the Vizier service) varies from call to call yet reproduces a call exactly.
  """
  return _derive(seed, num_trials)


def _sequence_seed(seed: int) -> int:
  """The seed of a search's single Halton sequence (independent of the trial count)."""
  return _derive(seed, 0x5EED)


def _objectives(problem: vz.ProblemStatement) -> list[vz.MetricInformation]:
  return list(problem.metric_information.of_type(vz.MetricType.OBJECTIVE))


def _has_objectives(trial: vz.Trial, names: Sequence[str]) -> bool:
  measurement = trial.final_measurement
  return measurement is not None and all(
      name in measurement.metrics and np.isfinite(measurement.metrics[name].value)
      for name in names)


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
     seed (:func:`call_seed`), so they change from suggestion to suggestion, reproducibly.
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
    self._objectives = _objectives(problem)
    self._rng = np.random.default_rng(call_seed(seed, num_trials))
    self._weights = self._rng.dirichlet(np.ones(len(self._objectives)))
    inner = copy.deepcopy(problem)
    if len(self._objectives) > 1:
      metrics = problem.metric_information.exclude_type(vz.MetricType.OBJECTIVE)
      metrics.append(vz.MetricInformation(self.METRIC, goal=vz.ObjectiveMetricGoal.MAXIMIZE))
      inner.metric_information = metrics

    def initial(scaled_problem: vz.ProblemStatement, **unused) -> vza.Designer:
      # Eagle passes its own (per-call) seed; the initial fill follows the search's sequence.
      return _halton_designer(scaled_problem, seed=seed, num_trials=num_trials)

    self._eagle = eagle_strategy.EagleStrategyDesigner(
        inner, seed=call_seed(seed, num_trials), initial_designer_factory=initial)
    pool = self._eagle._firefly_pool  # pylint: disable=protected-access
    if not (hasattr(pool, "_max_fly_id") and hasattr(pool, "_last_id")):
      raise RuntimeError("this Vizier's FireflyPool lacks _max_fly_id/_last_id; "
                         "autodistill.search.designers.ScalarizedEagle needs updating.")
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
    feasible = [t for t in trials if not t.infeasible and _has_objectives(t, names)]
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
    history = list(completed.trials) + list(all_active.trials)
    fly_ids = [(t.id, int(t.metadata.ns("eagle")["parent_fly_id"])) for t in history
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


class SteadyStateNSGA2(vza.Designer):
  """Vizier's ``NSGA2Designer``, rebuilt from the history per call: a steady-state NSGA-II.

  Settings (Vizier's defaults are for long, batched, continuous studies):

  * population :data:`NSGA2_POPULATION` (20, not 50): the first 20 suggestions are uniformly
    random, afterwards survival (Pareto rank, then crowding distance) keeps 20 parents selected
    from all feasible completed trials;
  * mutation: uniform L-inf perturbation of norm :data:`NSGA2_MUTATION_NORM` (0.2, not
    NSGA2's 0.001) of the genes in [0, 1], which wrap around at the ends. A discrete factor is a
    gene rounded to the nearest of its 2-4 values, so at 0.001 a child almost always equals its
    parent (a wasted distillation). Measured on uniformly random genes: at 0.1 / 0.2 / 0.3 a
    child equals its parent with probability 0.38 / 0.12 / 0.04 on Table 1 (0.54 / 0.28 / 0.13
    on cpu_demo) and differs in 0.9 / 1.7 / 2.5 factors on average: 0.2 is a local move that
    is rarely a repeat;
  * Vizier mutates the whole population and returns one child per parent; a call returns
    ``count`` children of parents drawn at random (call seed), not a batch of 20 (the service
    would queue the rest as REQUESTED trials);
  * infeasible trials and trials missing an objective are not given to NSGA-II (its Pareto rank
    treats NaN as non-dominated, and its converter raises on missing metrics).
  """

  def __init__(self, problem: vz.ProblemStatement, *, seed: int, num_trials: int):
    self._names = [m.name for m in _objectives(problem)]
    s = call_seed(seed, num_trials)
    self._rng = np.random.default_rng(s)
    self._nsga2 = nsga2.NSGA2Designer(
        problem, population_size=NSGA2_POPULATION, first_survival_after=NSGA2_POPULATION,
        adaptation=numpy_populations.LinfMutation(norm=NSGA2_MUTATION_NORM, seed=s), seed=s)

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    usable = [t for t in completed.trials
              if not t.infeasible and _has_objectives(t, self._names)]
    self._nsga2.update(vza.CompletedTrials(usable), all_active)

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    count = count or 1
    children = list(self._nsga2.suggest(count))
    if len(children) > count:
      chosen = self._rng.choice(len(children), size=count, replace=False)
      children = [children[i] for i in sorted(chosen)]
    return children


def _halton_designer(problem: vz.ProblemStatement, seed: int, num_trials: int,
                     **unused) -> quasi_random.QuasiRandomDesigner:
  """The search's Halton sequence, positioned at its ``num_trials``-th point."""
  del unused
  return quasi_random.QuasiRandomDesigner(problem.search_space, seed=_sequence_seed(seed),
                                          skip_points=HALTON_SKIP + num_trials)


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


class DiscreteGPBandit(vza.Designer):
  """Vizier's GP bandit whose suggestion is always a student not evaluated yet.

  On a small discrete space with a deterministic evaluation, Vizier's acquisition optimiser
  (which works in a continuous relaxation) keeps landing on students already distilled:
  measured on the cpu_demo search, 9 of the 11 suggestions after the baseline repeated an
  earlier trial, and asking it for more candidates returned nine copies of one point. A repeat brings no information, so
  when Vizier's suggestion is a repeat this designer scores every unevaluated point of the
  space (up to :data:`GRID_LIMIT` points; Table 1 has 576) with the same fitted GP and picks
  the best by the acquisition the GP bandit uses for several objectives: UCB
  (``mean + UCB_COEFFICIENT * stddev``, objectives oriented to maximise and normalised by the
  observed range) scalarised by random hypervolume scalarisations (Golovin & Zhang 2020) and
  compared with the best scalarised value of the trials so far (expected improvement of the
  scalarisation).
  """

  def __init__(self, problem: vz.ProblemStatement, *, rng_seed: int,
               padding_schedule: padding.PaddingSchedule):
    self._problem = problem
    self._seed = rng_seed
    self._gp = gp_bandit.VizierGPBandit(problem, rng=jax.random.PRNGKey(rng_seed),
                                        padding_schedule=padding_schedule)
    self._completed: list[vz.Trial] = []
    self._active: list[vz.Trial] = []

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    self._completed.extend(completed.trials)
    self._active = list(all_active.trials)
    self._gp.update(completed, all_active)

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    count = count or 1
    suggestions = list(self._gp.suggest(count))
    seen = {_key(t.parameters) for t in self._completed + self._active}
    if all(_key(s.parameters) not in seen for s in suggestions):
      return suggestions
    grid = _grid(self._problem, GRID_LIMIT)
    feasible = [t for t in self._completed if not t.infeasible and t.final_measurement]
    if grid is None or len(feasible) < 2:
      return suggestions
    candidates = [vz.TrialSuggestion(parameters=p) for p in grid]
    candidates = [c for c in candidates if _key(c.parameters) not in seen]
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
    metrics = _objectives(self._problem)
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


def make_designer(name: str, problem: vz.ProblemStatement, *, seed: int, num_trials: int = 0,
                  padding_schedule: Optional[padding.PaddingSchedule] = None) -> vza.Designer:
  """A seeded designer for the suggestion made after ``num_trials`` trials (section 3.5).

  Args:
    name: one of :data:`DESIGNERS`.
    problem: the study's problem (``autodistill.search.problem.problem_statement``).
    seed: the search's seed.
    num_trials: completed + active trials of the study so far; the designer's randomness is
      :func:`call_seed` ``(seed, num_trials)`` and ``quasi_random`` starts at that index.
    padding_schedule: ``gp_bandit`` only: overrides :data:`GP_PADDING` (for benchmarks).

  Raises:
    ValueError: unknown ``name``.
  """
  check_designer(name)
  s = call_seed(seed, num_trials)
  if name == "gp_bandit":
    return DiscreteGPBandit(
        problem, rng_seed=s,
        padding_schedule=GP_PADDING if padding_schedule is None else padding_schedule)
  if name == "random":
    return random_designer.RandomDesigner(problem.search_space, seed=s)
  if name == "quasi_random":
    return _halton_designer(problem, seed=seed, num_trials=num_trials)
  if name == "eagle":
    return ScalarizedEagle(problem, seed=seed, num_trials=num_trials)
  return SteadyStateNSGA2(problem, seed=seed, num_trials=num_trials)


def suggest(name: str, problem: vz.ProblemStatement, completed_trials: Iterable[vz.Trial],
            active_trials: Iterable[vz.Trial], *, seed: int,
            count: int = 1) -> list[vz.TrialSuggestion]:
  """The designer's next ``count`` suggestions given a study's history, statelessly.

  Builds :func:`make_designer` ``(name, problem, seed=seed, num_trials=len(completed) +
  len(active))``, updates it with the completed and active trials (sorted by id; copies, the
  caller's trials are not modified) and asks for ``count`` suggestions. The same arguments give
  the same suggestions (up to NSGA-II's unseeded tie-breaking). Used by the Vizier policy of
  :class:`SearchPolicyFactory` and by offline replays (``bench/designer_cost.py``).
  """
  if count < 1:
    raise ValueError(f"count must be at least 1, not {count}.")
  completed = sorted((copy.deepcopy(t) for t in completed_trials), key=lambda t: t.id)
  active = sorted((copy.deepcopy(t) for t in active_trials), key=lambda t: t.id)
  designer = make_designer(name, problem, seed=seed, num_trials=len(completed) + len(active))
  try:
    designer.update(vza.CompletedTrials(completed), vza.ActiveTrials(active))
    candidates = list(designer.suggest(count + NOVELTY_CANDIDATES))
    return _prefer_novel(candidates, completed + active, count)
  finally:
    if name == "gp_bandit":
      release_compiled()


def _key(parameters: vz.ParameterDict) -> tuple:
  return tuple(sorted((k, str(v.value)) for k, v in parameters.items()))


def _prefer_novel(candidates: Sequence[vz.TrialSuggestion], history: Sequence[vz.Trial],
                  count: int) -> list[vz.TrialSuggestion]:
  """The first ``count`` candidates that are not a student of ``history`` (in the designer's
  order), topped up with the best repeats when there are too few new ones."""
  seen = {_key(t.parameters) for t in history}
  novel, repeats = [], []
  for candidate in candidates:
    key = _key(candidate.parameters)
    (repeats if key in seen else novel).append(candidate)
    seen.add(key)
  return (novel + repeats)[:count]


def release_compiled() -> None:
  """Frees the programs XLA compiled for a ``gp_bandit`` suggestion (``jax.clear_caches()``).

  Called after every ``gp_bandit`` suggestion while :data:`CLEAR_JAX_CACHES_AFTER_GP` is true.
  Each suggestion compiles the GP for a new trial count, and the cached programs are never used
  again but stay alive (about 60-100 MB per suggestion on Table 1, see the module docstring).
  The caches are process-wide: a search that runs the Vizier server in its own process
  recompiles its other jitted functions afterwards, which a new student's shapes need anyway.
  """
  if CLEAR_JAX_CACHES_AFTER_GP:
    jax.clear_caches()


def designer_and_seed(problem: vz.ProblemStatement, algorithm: str = "DEFAULT") -> tuple[str, int]:
  """The designer name and seed of a study.

  Read from the problem metadata (namespace ``autodistill``: ``designer`` and ``seed``), where
  the search loop stores them. Without a ``designer`` entry, ``algorithm`` decides: a name of
  :data:`DESIGNERS` (any case) or a Vizier algorithm of :data:`ALGORITHM_ALIASES` (``DEFAULT``
  is ``gp_bandit``). Without a ``seed`` entry the seed is 0.

  Raises:
    ValueError: unknown designer or algorithm, or a seed that is not an integer.
  """
  metadata = problem.metadata.ns(METADATA_NS)
  name = metadata.get("designer")
  if not name:
    key = (algorithm or "").strip()
    if key.lower() in DESIGNERS:
      name = key.lower()
    elif key.upper() in ALGORITHM_ALIASES:
      name = ALGORITHM_ALIASES[key.upper()]
    else:
      raise ValueError(f"unknown designer {algorithm!r} (study algorithm, no 'designer' in the "
                       f"{METADATA_NS!r} metadata); choose one of {list(DESIGNERS)}.")
  check_designer(name)
  raw = metadata.get("seed", "0")
  try:
    seed = int(raw)
  except ValueError:
    raise ValueError(f"study metadata {METADATA_NS}/seed={raw!r} is not an integer.") from None
  return name, seed


class StatelessDesignerPolicy(pythia.Policy):
  """A pythia policy that answers each request with :func:`suggest` on the study's trials.

  Keeps nothing between requests: the trials are read through the policy supporter (i.e. from
  the study's database) on every call, so the search survives being killed and resumed.
  """

  def __init__(self, supporter: pythia.PolicySupporter, designer: str, seed: int):
    self._supporter = supporter
    self._designer = check_designer(designer)
    self._seed = seed

  @property
  def name(self) -> str:
    return f"autodistill-{self._designer}"

  def suggest(self, request: pythia.SuggestRequest) -> pythia.SuggestDecision:
    completed = self._supporter.GetTrials(status_matches=vz.TrialStatus.COMPLETED)
    active = self._supporter.GetTrials(status_matches=vz.TrialStatus.ACTIVE)
    suggestions = suggest(self._designer, request.study_config, completed, active,
                          seed=self._seed, count=request.count)
    return pythia.SuggestDecision(suggestions, metadata=vz.MetadataDelta())

  def early_stop(self, request: pythia.EarlyStopRequest) -> pythia.EarlyStopDecisions:
    raise NotImplementedError("autodistill's designers do not stop trials early.")


class SearchPolicyFactory(pythia.PolicyFactory):
  """Pythia policy factory of the search's Vizier server (section 3.5's Model Exploration).

  Pass it as ``DefaultVizierServer(..., policy_factory=SearchPolicyFactory())``. The designer
  and seed come from the study's problem metadata (see :func:`designer_and_seed`).
  """

  def __call__(self, problem_statement: vz.ProblemStatement, algorithm: str,
               policy_supporter: pythia.PolicySupporter, study_name: str) -> pythia.Policy:
    del study_name
    designer, seed = designer_and_seed(problem_statement, algorithm)
    return StatelessDesignerPolicy(policy_supporter, designer, seed)
