"""The ``gp_bandit`` designer: Vizier's GP bandit, its acquisition maximised over the finite space.

With two objectives Vizier's ``VizierGPBandit`` fits an independent multi-task GP (one GP per
metric, hyperparameters tied) and maximises a UCB averaged over random hypervolume
scalarisations (Golovin & Zhang 2020) of the predictions. :class:`DiscreteGPBandit` wraps it for
the finite spaces of the search, with the two changes below: the acquisition maximised over the
space's students, and one masked GP per objective on padded trials.

**The acquisition is maximised exactly over the unevaluated students** (:class:`GridGPBandit`).
Vizier maximises it with its vectorised eagle optimizer in a continuous relaxation of the space
(75,000 evaluations in batches of 25): on a finite space of up to :data:`GRID_LIMIT` students
(Table 1 has 576) this designer instead scores every student not yet evaluated or running with
the same fitted GP and the same scoring function (Vizier's scalarised UCB, see
:class:`ScalarizedUCB`), in batches of a fixed shape, and suggests the best. That is the exact
maximum over the students a trial may be spent on, where the relaxation kept landing on
students already distilled (in the cpu_demo search most suggestions after the baseline did), and
it costs one batched scoring instead of compiling and running the eagle loop: a suggestion on
the Table 1 space took 22 s after 10 trials with the eagle optimizer and 7-10 s with the grid
(``bench/designer_cost.py``; the GP's fit, compiled for every trial count, was most of the rest
until the padding below).
Larger or continuous spaces keep Vizier's optimizer.

**One masked GP per objective, on trials padded to a power of two** (:data:`GP_PADDING`,
:class:`PerMetricGP`). The GP's arrays have one row per trial, so without padding every
suggestion traces and compiles the GP fit for a new shape. Vizier can pad the trial axis, but
with two objectives its GP is a multi-task GP whose likelihood it does not mask for padded rows
(it logs "padding/masking is not yet supported"; the padded labels are NaN). So each objective
gets its own single-metric Vizier GP (the same tuned model and ARD fit, its own
hyperparameters), whose likelihood and posterior do mask the padded rows; Vizier's default
multi-task GP for two objectives is "independent" anyway, with the hyperparameters tied. The
acquisition is Vizier's scalarised UCB (:class:`ScalarizedUCB`) with its floor taken over the
real rows and kept as data, and the scoring is one jitted function (``_score``) taking the
scoring function as an argument. Every suggestion whose trial count pads to the same size then
reuses the compiled programs (tested: the second of two suggestions in one size compiles
nothing).

**In 64-bit floats.** Vizier's GP is written for float64 (it asks for float64 arrays, which JAX
truncates to float32 unless x64 is on, as it is not in autodistill). In float32 the single-metric
GP of a noiseless objective with repeated students went NaN at 200 trials (Cholesky of a
near-singular covariance; ``bench/designer_cost.py``'s synthetic latency); in float64 it fits.
:class:`DiscreteGPBandit` runs ``suggest`` and ``predict`` inside ``jax.enable_x64(True)``, a
context local to the calling thread, so the search's float32 programs are untouched.

**JAX's caches are cleared every** :data:`CLEAR_JAX_CACHES_EVERY` **(16) suggestions**
(:func:`release_compiled`). Vizier converts and pads each suggestion's unpadded trials with
single eager operations, and each of those compiles a small program for the new trial count
(about 30 per suggestion, ~0.5 MB each on CPU) that is never used again: with the caches kept,
a process grew by ~17 MB per suggestion. Clearing them after every suggestion (as the unpadded
designer did) would also drop the GP's programs, which the next suggestion then has to trace
again and load from the persistent compilation cache. Every 16th suggestion bounds the growth
and costs that reload once per 16.

The prediction errors, seconds and megabytes behind these choices, and the command that
measures them (``bench/designer_cost.py``), are in ``bench/README.md``.

Not handled: Vizier's GP bandit has no notion of pending points, so it ignores ACTIVE trials
(the grid excludes their students, but the GP does not condition on them).
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Any, Optional, Sequence

import equinox as eqx
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from tensorflow_probability.substrates import jax as tfp
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

# The trial axis is padded to a power of two (module docstring): one compiled fit per size.
GP_PADDING = padding.PaddingSchedule(num_trials=padding.PaddingType.POWERS_OF_2)


class _BatchedSuggestionWarning(logging.Filter):
  """Drops Vizier's warning that a batch of GP-bandit suggestions is "likely to be very similar":
  we ask for several on purpose, as candidates from which the replay keeps the ones no trial
  has evaluated (``replay.NOVELTY_CANDIDATES``), so in a search's output it is only noise."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "not optimized for batched" not in record.getMessage()


logging.getLogger("absl").addFilter(_BatchedSuggestionWarning())

# Drop JAX's compilation caches after every CLEAR_JAX_CACHES_EVERY-th gp_bandit suggestion
# (module docstring); 1 = after each, 0 = never.
CLEAR_JAX_CACHES_EVERY = 16
_suggestions_since_clear = 0


def release_compiled() -> None:
  """Frees the programs XLA compiled for a ``gp_bandit`` suggestion (``jax.clear_caches()``).

  Called after every ``gp_bandit`` suggestion; clears after every
  :data:`CLEAR_JAX_CACHES_EVERY`-th (module docstring). The caches are process-wide; the
  distillation programs a search keeps are ahead-of-time compiled
  :class:`~autodistill.train.state.Program` objects, which survive it.
  """
  global _suggestions_since_clear
  _suggestions_since_clear += 1
  if CLEAR_JAX_CACHES_EVERY and _suggestions_since_clear >= CLEAR_JAX_CACHES_EVERY:
    jax.clear_caches()
    _suggestions_since_clear = 0


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


@_vizier.filter_jit
def _score(scoring_fn: Any, features: Any, seed: jax.Array) -> jax.Array:
  # One jitted function for every suggestion: the scoring function is an argument (its arrays
  # are data), so a new suggestion with the same padded shapes reuses the compiled program.
  return scoring_fn.score(features, seed)


def acquisition_values(scoring_fn: Any, converter: Any,
                       candidates: Sequence[vz.TrialSuggestion], seed: jax.Array) -> np.ndarray:
  """``scoring_fn``'s acquisition value at each candidate, scored in batches of one shape (the
  last batch is filled with copies of its first candidate, whose values are dropped)."""
  score = functools.partial(_score, scoring_fn)
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


def _column(labels: Any, i: int) -> Any:
  """Metric ``i`` of padded ``labels`` [trials, metrics] as padded [trials, 1] labels with the
  same padded rows (``_nopadding_done`` is kept False so every trial count traces alike)."""
  rows = int(labels._original_shape[0])  # pylint: disable=protected-access
  return type(labels)(padded_array=labels.padded_array[:, i:i + 1],
                      fill_value=labels.fill_value, _original_shape=np.array([rows, 1]),
                      _mask=labels._mask[:, i:i + 1])  # pylint: disable=protected-access


class PerMetricGP(eqx.Module):
  """Independent single-metric GPs, one per objective, predicting together (``Predictive``).

  Each is Vizier's tuned GP with its own hyperparameters, fitted on the padded trials with the
  padded rows masked out of the likelihood (a single-metric GP supports that; Vizier's
  multi-metric GP does not). The prediction is one Normal per objective, [..., metrics].
  """

  gps: tuple[Any, ...]
  data: Any

  def predict_with_aux(self, features: Any) -> tuple[Any, dict]:
    dists = [gp.predict_with_aux(features)[0] for gp in self.gps]
    mean = jnp.stack([d.mean() for d in dists], axis=-1)
    stddev = jnp.stack([d.stddev() for d in dists], axis=-1)
    return tfp.distributions.Normal(mean, stddev), {}


@flax.struct.dataclass
class ScalarizedUCB(_vizier.AcquisitionFunction):
  """Vizier's multi-objective acquisition (UCB per objective, random hypervolume scalarisations,
  floored at the best observed scalarised value, averaged), with the floor as data.

  Vizier builds the same function (``ScalarizeOverAcquisitions``) with the floor and the
  reduction as static fields, so every suggestion compiles its scoring anew, and it takes the
  floor over the padded label rows too (NaN with padding). Here the floor is a pytree leaf
  computed over the real rows only.
  """

  scalarizer: Any
  max_scalarized: jax.Array  # [scalarisations]
  acquisition_fn: Any = _vizier.UCB()

  def __call__(self, dist: Any, seed: Optional[jax.Array] = None) -> jax.Array:
    scalarized = self.scalarizer(self.acquisition_fn(dist, seed).squeeze())  # [S, batch]
    floor = self.max_scalarized.reshape(self.max_scalarized.shape
                                        + (1,) * (scalarized.ndim - 1))
    return jnp.mean(jnp.maximum(scalarized, floor), axis=0)


def scalarized_ucb_factory(num_scalarizations: int, rng: jax.Array) -> Any:
  """The ``data -> acquisition`` factory of :class:`ScalarizedUCB` (the same weights for every
  call, as Vizier's)."""

  def factory(data: Any) -> ScalarizedUCB:
    scalarizer = _vizier.create_hv_scalarization(num_scalarizations, data.labels, rng)
    labels = data.labels.replace_fill_value(-jnp.inf).padded_array
    if labels.shape[0]:
      floor = jnp.max(scalarizer(labels), axis=-1)
    else:
      floor = jnp.full((num_scalarizations,), -jnp.inf)
    return ScalarizedUCB(scalarizer=scalarizer, max_scalarized=floor)

  return factory


class GridGPBandit(_vizier.VizierGPBandit):
  """``VizierGPBandit`` whose acquisition is maximised over :attr:`candidates` when it is set.

  ``_optimize_acquisition`` is the step Vizier marks as open to overriding; everything else (the
  GP, its hyperparameter fit, the scoring function, the seed trials) is Vizier's. With
  ``candidates`` None the eagle optimizer runs as in Vizier.
  """

  candidates: Optional[list[vz.TrialSuggestion]] = None

  def __attrs_post_init__(self):
    super().__attrs_post_init__()
    if not self._problem.metric_information.is_single_objective:
      self._rng, weights_rng = jax.random.split(self._rng)
      self._scoring_function_factory = _vizier.bayesian_scoring_function_factory(
          scalarized_ucb_factory(self._num_scalarizations, weights_rng))

  def _update_gp(self, data: Any) -> Any:
    """One masked single-metric GP per objective (:class:`PerMetricGP`) on the padded trials."""
    if data.labels.shape[-1] == 1 or self._prior_gp is not None:
      return super()._update_gp(data)
    if len(self._trials) == self._incorporated_trials_count:
      return self._last_computed_gp
    self._incorporated_trials_count = len(self._trials)
    gps = []
    for i in range(data.labels.shape[-1]):
      self._rng, ard_rng = jax.random.split(self._rng)
      column = _vizier.ModelData(features=data.features, labels=_column(data.labels, i))
      gps.append(_vizier.train_gp(spec=self._create_gp_spec(column, ard_rng), data=column))
    self._last_computed_gp = PerMetricGP(gps=tuple(gps), data=data)
    return self._last_computed_gp

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
    with jax.enable_x64(True):  # module docstring
      return self._gp.predict(trials, rng=rng, num_samples=num_samples)

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    grid = _grid(self._problem, GRID_LIMIT)
    if grid is not None:
      candidates = (vz.TrialSuggestion(parameters=p) for p in grid)
      self._gp.candidates = [c for c in candidates
                             if history.student_key(c.parameters) not in self._seen]
    with jax.enable_x64(True):  # module docstring
      return list(self._gp.suggest(count or 1))
