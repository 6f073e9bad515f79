"""A designer rebuilt from a study's history for every suggestion (paper section 3.5).

**Stateless.** The Vizier service builds a policy per suggestion request, and a search can be
killed and resumed by another process at any moment, so nothing is kept in memory between
suggestions: :func:`suggest` rebuilds the designer from the study's full history (its COMPLETED
and ACTIVE trials, which live in the SQLite database) on every call. The designer's seed for a
call is derived from ``(seed, number of completed + active trials)``
(:func:`~autodistill.search.designers.seeds.call_seed`): random search does not repeat itself
from call to call, and re-running a call with the same seed and the same history returns the same
suggestion. Per designer (read from Vizier's code):

* ``random``: a fresh ``RandomState(call_seed)`` per call.
* ``quasi_random``: one Halton sequence per search (scrambled by ``seed``) whose index is
  ``HALTON_SKIP + number of trials``: the k-th suggestion of the search is the k-th point of the
  sequence, as Vizier's stateful policy would give.
* ``gp_bandit``: Vizier's own service wraps it the same way (``DesignerPolicy``: a new designer
  per call, updated with all trials); only its ``rng`` is derived per call.
* ``eagle``: the firefly pool is rebuilt from the trials in id order, with two counters restored
  from the history (:mod:`autodistill.search.designers.eagle`).
* ``nsga2``: survival selects the population from all feasible completed trials at once, and
  each call mutates members drawn at random (a steady-state NSGA-II).
* ``kdnas``: the controller's weights start from the search's seed and REINFORCE replays every
  completed trial in id order; its samples use the call's seed
  (:mod:`autodistill.search.designers.kdnas`).

Vizier's alternative, ``PartiallySerializableDesignerPolicy``, stores designer state in the study
metadata; it is not used: ``NSGA2Designer`` does not serialise its trial count, it would make the
policy and an offline replay of :func:`suggest` (``bench/designer_cost.py``,
``bench/search_replay.py``) two code paths, and the random scalarisation of ``eagle`` needs a
fresh pool per call.
"""

from __future__ import annotations

import copy
from typing import Iterable, Optional, Sequence

from vizier import algorithms as vza
from vizier import pyvizier as vz
from vizier.pyvizier.converters import padding

from autodistill.search.designers import _vizier
from autodistill.search.designers import check_designer
from autodistill.search.designers import eagle
from autodistill.search.designers import gp_bandit
from autodistill.search.designers import history
from autodistill.search.designers import kdnas
from autodistill.search.designers import nsga2
from autodistill.search.designers import seeds

# Every designer is asked for this many candidates beyond those returned, and the first ones
# that are not students of the study's history are returned, so no trial is spent on a student
# already evaluated while a designer offers an alternative. (Vizier's GP bandit returns copies
# of one point here; DiscreteGPBandit suggests only unevaluated students of a finite space.)
NOVELTY_CANDIDATES = 8


def make_designer(name: str, problem: vz.ProblemStatement, *, seed: int, num_trials: int = 0,
                  padding_schedule: Optional[padding.PaddingSchedule] = None) -> vza.Designer:
  """A seeded designer for the suggestion made after ``num_trials`` trials (section 3.5).

  Args:
    name: one of :data:`~autodistill.search.designers.DESIGNERS`.
    problem: the study's problem (``autodistill.search.problem.problem_statement``).
    seed: the search's seed.
    num_trials: completed + active trials of the study so far; the designer's randomness is
      ``call_seed(seed, num_trials)`` and ``quasi_random`` starts at that index.
    padding_schedule: ``gp_bandit`` only: overrides ``gp_bandit.GP_PADDING`` (for benchmarks).

  Raises:
    ValueError: unknown ``name``.
  """
  check_designer(name)
  s = seeds.call_seed(seed, num_trials)
  if name == "gp_bandit":
    return gp_bandit.DiscreteGPBandit(
        problem, rng_seed=s,
        padding_schedule=gp_bandit.GP_PADDING if padding_schedule is None else padding_schedule)
  if name == "random":
    return _vizier.RandomDesigner(problem.search_space, seed=s)
  if name == "quasi_random":
    return seeds.halton_designer(problem, seed=seed, num_trials=num_trials)
  if name == "eagle":
    return eagle.ScalarizedEagle(problem, seed=seed, num_trials=num_trials)
  if name == "kdnas":
    return kdnas.KdnasController(problem, seed=seed, num_trials=num_trials)
  return nsga2.SteadyStateNSGA2(problem, seed=seed, num_trials=num_trials)


def suggest(name: str, problem: vz.ProblemStatement, completed_trials: Iterable[vz.Trial],
            active_trials: Iterable[vz.Trial], *, seed: int,
            count: int = 1) -> list[vz.TrialSuggestion]:
  """The designer's next ``count`` suggestions given a study's history, statelessly.

  Builds :func:`make_designer` ``(name, problem, seed=seed, num_trials=len(completed) +
  len(active))``, updates it with the completed and active trials (sorted by id; copies, the
  caller's trials are not modified) and asks for ``count`` suggestions, preferring students not
  in the history. The same arguments give the same suggestions (up to NSGA-II's unseeded
  tie-breaking). Used by the Vizier policy (:mod:`autodistill.search.policy`) and by offline
  replays (``bench/designer_cost.py``, ``bench/search_replay.py``). After a ``gp_bandit``
  suggestion ``gp_bandit.release_compiled`` runs (it clears JAX's compilation caches after every
  ``gp_bandit.CLEAR_JAX_CACHES_EVERY``-th).

  Raises:
    ValueError: unknown ``name`` or ``count`` below 1.
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
      gp_bandit.release_compiled()


def _prefer_novel(candidates: Sequence[vz.TrialSuggestion], trials: Sequence[vz.Trial],
                  count: int) -> list[vz.TrialSuggestion]:
  """The first ``count`` candidates that are not a student of ``trials`` (in the designer's
  order), topped up with the best repeats when there are too few new ones."""
  seen = {history.student_key(t.parameters) for t in trials}
  novel, repeats = [], []
  for candidate in candidates:
    key = history.student_key(candidate.parameters)
    (repeats if key in seen else novel).append(candidate)
    seen.add(key)
  return (novel + repeats)[:count]
