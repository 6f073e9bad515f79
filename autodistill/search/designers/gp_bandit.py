"""The ``gp_bandit`` designer: Vizier's GP bandit, its acquisition maximised over the finite space.

With two objectives Vizier's ``VizierGPBandit`` fits one GP per metric (an independent
multi-task GP) and maximises a UCB averaged over random hypervolume scalarisations (Golovin &
Zhang 2020) of the predictions. :class:`DiscreteGPBandit` wraps it for the finite spaces of the
search.

**The acquisition is maximised exactly over the unevaluated students** (:class:`GridGPBandit`).
Vizier maximises it with its vectorised eagle optimizer in a continuous relaxation of the space
(75,000 evaluations in batches of 25): on a finite space of up to :data:`GRID_LIMIT` students
(Table 1 has 576) this designer instead scores every student not yet evaluated or running with
the same fitted GP and the same scoring function (Vizier's scalarised UCB, built by Vizier from
the same data), in batches of a fixed shape, and suggests the best. That is the exact maximum
over the students a trial may be spent on, where the relaxation kept landing on students already
distilled (in the cpu_demo search most suggestions after the baseline did), and it costs one
batched scoring instead of compiling and running the eagle loop: a suggestion on the Table 1
space took 22 s after 10 trials with the eagle optimizer and 7-10 s with the grid
(``bench/designer_cost.py``; the GP's own fit and its compilation are most of what remains).
Larger or continuous spaces keep Vizier's optimizer.

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
process's memory grows with every suggestion, to tens of GB over a 500-trial search. The
search's own distillation programs are compiled ahead of time and kept outside those caches
(:class:`autodistill.train.state.Program`), so a worker running the server in-process does not
recompile its trials' programs after a suggestion.

The prediction errors, seconds and megabytes behind these choices, and the command that
measures them (``bench/designer_cost.py``), are in ``bench/README.md``.

Not handled: Vizier's GP bandit has no notion of pending points, so it ignores ACTIVE trials
(the grid excludes their students, but the GP does not condition on them).
"""

from __future__ import annotations

import itertools
from typing import Any, Optional, Sequence

import jax
import numpy as np
from vizier import algorithms as vza
from vizier import pyvizier as vz
from vizier.pyvizier.converters import padding

from autodistill.search.designers import _vizier
from autodistill.search.designers import history
from autodistill.search.problem import METADATA_NS

# Spaces up to this many points have their acquisition maximised over every unevaluated point;
# the candidates are scored in batches of at most SCORE_BATCH (one compiled shape per call).
GRID_LIMIT = 20_000
SCORE_BATCH = 1024

# No padding of the trial axis (module docstring).
GP_PADDING = padding.PaddingSchedule()

# Drop JAX's compilation caches after each gp_bandit suggestion (module docstring).
CLEAR_JAX_CACHES_AFTER_GP = True


def release_compiled() -> None:
  """Frees the programs XLA compiled for a ``gp_bandit`` suggestion (``jax.clear_caches()``).

  Called after every ``gp_bandit`` suggestion while :data:`CLEAR_JAX_CACHES_AFTER_GP` is true:
  each suggestion compiles the GP for a new trial count, and the cached programs are never used
  again but stay alive. The caches are process-wide; the distillation programs a search keeps
  are ahead-of-time compiled :class:`~autodistill.train.state.Program` objects, which survive it.
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


def _batch_size(count: int) -> int:
  """The smallest power of two >= ``count``, at least 2 (Vizier's scalarised acquisition
  squeezes a batch of one to a scalar) and at most :data:`SCORE_BATCH`."""
  return min(SCORE_BATCH, max(2, 1 << max(count - 1, 0).bit_length()))


def acquisition_values(scoring_fn: Any, converter: Any,
                       candidates: Sequence[vz.TrialSuggestion], seed: jax.Array) -> np.ndarray:
  """``scoring_fn``'s acquisition value at each candidate, scored in batches of one shape (the
  last batch is filled with copies of its first candidate, whose values are dropped)."""
  score = _vizier.filter_jit(scoring_fn.score)
  size = _batch_size(len(candidates))
  values = []
  for start in range(0, len(candidates), size):
    batch = list(candidates[start:start + size])
    real = len(batch)
    batch += [batch[0]] * (size - real)
    features = converter.to_features(batch)
    features = _vizier.ModelInput(
        continuous=features.continuous.replace_fill_value(0.0),
        categorical=features.categorical.replace_fill_value(0))
    values.append(np.asarray(score(features, seed))[:real])
  return np.concatenate(values)


class GridGPBandit(_vizier.VizierGPBandit):
  """``VizierGPBandit`` whose acquisition is maximised over :attr:`candidates` when it is set.

  ``_optimize_acquisition`` is the step Vizier marks as open to overriding; everything else (the
  GP, its hyperparameter fit, the scoring function, the seed trials) is Vizier's. With
  ``candidates`` None the eagle optimizer runs as in Vizier.
  """

  candidates: Optional[list[vz.TrialSuggestion]] = None

  def _optimize_acquisition(self, scoring_fn: Any, count: int) -> list[vz.Trial]:
    if not self.candidates:
      return super()._optimize_acquisition(scoring_fn, count)
    acq_rng, self._rng = jax.random.split(self._rng)
    values = acquisition_values(scoring_fn, self._converter, self.candidates, acq_rng)
    picked = []
    for i in np.argsort(-values, kind="stable")[:count]:
      trial = vz.Trial(parameters=self.candidates[i].parameters)
      metadata = trial.metadata.ns(METADATA_NS)
      metadata["acquisition"] = "grid"
      metadata["acquisition_value"] = f"{values[i]:.6g}"
      picked.append(trial)
    return picked


class DiscreteGPBandit(vza.Designer, vza.Predictor):
  """Vizier's GP bandit, suggesting only students not evaluated yet (nor running).

  On a finite space of up to :data:`GRID_LIMIT` students the suggestion is the unevaluated
  student with the highest acquisition (:class:`GridGPBandit`, module docstring); on a larger or
  continuous space it is Vizier's, which may repeat a student (the replay prefers novel ones among
  the candidates it asks for).
  """

  def __init__(self, problem: vz.ProblemStatement, *, rng_seed: int,
               padding_schedule: padding.PaddingSchedule):
    self._problem = problem
    self._gp = GridGPBandit(problem, rng=jax.random.PRNGKey(rng_seed),
                            padding_schedule=padding_schedule)
    self._seen: set[tuple] = set()

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    self._seen.update(history.student_key(t.parameters)
                      for t in list(completed.trials) + list(all_active.trials))
    self._gp.update(completed, all_active)

  def predict(self, trials: Sequence[vz.TrialSuggestion],
              rng: Optional[jax.Array] = None, num_samples: Optional[int] = 1000) -> vza.Prediction:
    """The fitted GP's posterior at ``trials`` (Vizier's ``VizierGPBandit.predict``)."""
    return self._gp.predict(trials, rng=rng, num_samples=num_samples)

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    grid = _grid(self._problem, GRID_LIMIT)
    if grid is not None:
      candidates = (vz.TrialSuggestion(parameters=p) for p in grid)
      self._gp.candidates = [c for c in candidates
                             if history.student_key(c.parameters) not in self._seen]
    return list(self._gp.suggest(count or 1))
