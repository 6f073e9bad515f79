"""The ``kdnas`` designer: KD-NAS's reward-driven NAS controller (Trivedi et al. 2023), read by us.

The paper's abstract says: "In each episode of the search process, a NAS controller predicts a
reward based on the distillation loss and latency of inference. The top candidate architectures
are then distilled from the teacher on a small proxy set." It gives no controller, training rule
or reward formula. Everything below is **our reading**, from the NAS-controller literature the
paper builds on (Zoph & Le 2017; Pham et al. 2018, ENAS; Tan et al. 2019, MnasNet):

1. **Policy** (:class:`Controller`, Flax): autoregressive over the space's factors in the search
   space's order, a small recurrent net: ``h_0`` learned; for factor *i*,
   ``logits_i = Dense_i(h_{i-1})`` over that factor's values, ``a_i ~ softmax(logits_i)``,
   ``h_i = tanh(W h_{i-1} + E_i[a_i])``. The heads start at zero: the first policy is uniform.
2. **Reward** (:func:`reward`): MnasNet's ``R = q * (latency / T) ** w`` with the latency budget
   ``T`` and exponent ``w`` (soft: ``w = -0.07`` on both sides of ``T``; hard: 0 within the
   budget, -1 beyond), and the quality ``q`` a monotone function of the held-out distillation
   result: ``exp(-mlm_loss)`` (the geometric-mean probability of the right token) when the
   study's objectives include ``mlm_loss``, else the MLM accuracy. Infeasible students get 0.
3. **Training**: REINFORCE with a moving-average baseline and an entropy bonus, one Adam step per
   completed trial in id order (advantage ``R - b`` with the baseline ``b`` before the trial,
   then ``b <- 0.9 b + 0.1 R``; loss ``-(R - b) log pi(a) - 0.02 H(pi)``; rewards are divided by
   their standard deviation so far, so the step size does not depend on the reward's units).
4. **Reward predictor**: Bayesian ridge regression of the observed rewards on the one-hot
   encoding of the factors, read optimistically (mean + one standard deviation, so a value no
   trial has tried is not taken for a bad one). Each suggestion samples :data:`CANDIDATES`
   architectures from the policy and returns them ranked by predicted reward, so only the top
   ones are distilled (by the search loop, with the trial's recipe; the paper's proxy set is
   ``search.proxy_documents`` training documents, a fixed subset, with the flash budget).
5. **Stateless and seeded** like every designer here (:mod:`~autodistill.search.designers.replay`):
   the controller's weights start from the search's seed and the whole history is replayed on
   every call (so a killed search resumes exactly); sampling uses the call's seed.

The budget and exponent come from the study's metadata (``autodistill/kdnas``, written by the
search from the first of ``search.latency_budgets_ms`` and ``search.kdnas_exponent``); without a
budget, ``T`` is
the baseline trial's latency (else the median latency seen so far).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from vizier import algorithms as vza
from vizier import pyvizier as vz

from autodistill.search.designers import seeds
from autodistill.search.settings import METADATA_NS

# Architectures sampled from the policy per suggestion, then ranked by the reward predictor.
CANDIDATES = 256
# MnasNet's soft latency exponent.
SOFT_EXPONENT = -0.07
HIDDEN = 32
LEARNING_RATE = 0.02
BASELINE_DECAY = 0.9
ENTROPY_BONUS = 0.02
RIDGE = 1e-2
OPTIMISM = 1.0


def reward(quality: float, latency_ms: Optional[float], budget_ms: Optional[float],
           exponent: float = SOFT_EXPONENT, hard: bool = False) -> float:
  """MnasNet's reward ``q * (latency / T) ** w`` (see the module docstring).

  ``hard``: ``w = 0`` within the budget and ``-1`` beyond it (a student over budget loses reward
  in proportion); otherwise ``w = exponent`` everywhere. Without a latency or a budget the
  reward is the quality. Increasing in ``quality``, non-increasing in ``latency_ms``.
  """
  if latency_ms is None or budget_ms is None or not budget_ms > 0:
    return float(quality)
  w = (0.0 if latency_ms <= budget_ms else -1.0) if hard else exponent
  return float(quality * (max(latency_ms, 1e-9) / budget_ms) ** w)


class Controller(nn.Module):
  """The policy: logits of every factor given the choices before it (teacher forcing).

  ``actions`` [F] int (only ``actions[:i]`` matter for factor *i*); returns logits [F, C] with
  ``C`` the largest factor's size, values a factor lacks at -1e9.
  """

  sizes: tuple[int, ...]
  hidden: int = HIDDEN

  @nn.compact
  def __call__(self, actions: jax.Array) -> jax.Array:
    width = max(self.sizes)
    h = jnp.tanh(self.param("h0", nn.initializers.normal(0.1), (self.hidden,)))
    cell = nn.Dense(self.hidden, name="cell")
    logits = []
    for i, size in enumerate(self.sizes):
      head = nn.Dense(width, kernel_init=nn.initializers.zeros, name=f"head_{i}")(h)
      logits.append(jnp.where(jnp.arange(width) < size, head, -1e9))
      choice = nn.Embed(size, self.hidden, name=f"embed_{i}")(actions[i])
      h = jnp.tanh(cell(h) + choice)
    return jnp.stack(logits)


def _log_prob_and_entropy(logits: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
  logp = jax.nn.log_softmax(logits, axis=-1)
  chosen = jnp.take_along_axis(logp, actions[:, None], axis=-1)[:, 0]
  entropy = -jnp.sum(jnp.where(logits > -1e8, jnp.exp(logp) * logp, 0.0), axis=-1)
  return jnp.sum(chosen), jnp.sum(entropy)


class KdnasController(vza.Designer):
  """KD-NAS's controller as a Vizier designer (module docstring), rebuilt for every call."""

  def __init__(self, problem: vz.ProblemStatement, *, seed: int, num_trials: int):
    self._params_config = list(problem.search_space.parameters)
    self._sizes = tuple(len(p.feasible_values) for p in self._params_config)
    self._model = Controller(self._sizes)
    self._params = self._model.init(jax.random.PRNGKey(seeds.sequence_seed(seed)),
                                    jnp.zeros(len(self._sizes), jnp.int32))
    self._opt_state = _OPTIMIZER.init(self._params)
    self._rng = np.random.default_rng(seeds.call_seed(seed, num_trials))
    settings = json.loads(problem.metadata.ns(METADATA_NS).get("kdnas") or "{}")
    self._budget_ms = settings.get("budget_ms")
    self._exponent = float(settings.get("exponent", SOFT_EXPONENT))
    self._hard = bool(settings.get("hard", False))
    metrics = {m.name for m in problem.metric_information}
    self._quality = "mlm_loss" if "mlm_loss" in metrics else (
        "mlm_accuracy" if "mlm_accuracy" in metrics else None)
    self._latency = "latency_ms" if "latency_ms" in metrics else None
    self._seen: list[tuple[np.ndarray, float]] = []  # (actions, reward) of completed trials

  # -- history ----------------------------------------------------------------------------------

  def _actions(self, parameters: vz.ParameterDict) -> np.ndarray:
    out = []
    for config in self._params_config:
      value = parameters[config.name].value
      values = list(config.feasible_values)
      if config.type == vz.ParameterType.CATEGORICAL:
        out.append(values.index(str(value)))
      else:
        out.append(int(np.argmin([abs(float(v) - float(value)) for v in values])))
    return np.asarray(out, np.int32)

  def _value(self, trial: vz.Trial, name: Optional[str]) -> Optional[float]:
    if name is None or trial.final_measurement is None:
      return None
    metric = trial.final_measurement.metrics.get(name)
    return None if metric is None or not np.isfinite(metric.value) else float(metric.value)

  def _budget(self, trials: Sequence[vz.Trial]) -> Optional[float]:
    if self._budget_ms is not None:
      return float(self._budget_ms)
    for trial in trials:
      if trial.metadata.ns(METADATA_NS).get("baseline") == "true":
        latency = self._value(trial, self._latency)
        if latency is not None:
          return latency
    latencies = [v for v in (self._value(t, self._latency) for t in trials) if v is not None]
    return float(np.median(latencies)) if latencies else None

  def trial_reward(self, trial: vz.Trial, budget_ms: Optional[float]) -> float:
    """The reward of a completed trial (0 if infeasible or without a quality)."""
    if trial.infeasible:
      return 0.0
    value = self._value(trial, self._quality)
    if value is None:
      return 0.0
    quality = float(np.exp(-value)) if self._quality == "mlm_loss" else value
    return reward(quality, self._value(trial, self._latency), budget_ms, self._exponent,
                  self._hard)

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    """Replays every completed trial (in id order) through REINFORCE."""
    trials = sorted(completed.trials, key=lambda t: t.id)
    budget = self._budget(trials)
    new = [(self._actions(t.parameters), self.trial_reward(t, budget)) for t in trials]
    self._seen.extend(new)
    del all_active  # running trials have no reward yet; the replay skips their students
    rewards = np.asarray([r for _, r in self._seen])
    scale = float(rewards.std()) if len(rewards) > 1 and rewards.std() > 0 else 1.0
    baseline = None
    for actions, r in self._seen:
      r = r / scale
      baseline = r if baseline is None else baseline
      self._params, self._opt_state = _reinforce_step(
          self._model, self._params, self._opt_state, jnp.asarray(actions),
          jnp.float32(r - baseline))
      baseline = BASELINE_DECAY * baseline + (1 - BASELINE_DECAY) * r

  # -- suggestions ------------------------------------------------------------------------------

  def sample(self, count: int) -> np.ndarray:
    """``count`` architectures [count, F] (value indices) drawn from the policy."""
    actions = np.zeros((count, len(self._sizes)), np.int32)
    for i, size in enumerate(self._sizes):
      logits = np.asarray(_batched_logits(self._model, self._params, jnp.asarray(actions)))[:, i]
      probs = np.exp(logits[:, :size] - logits[:, :size].max(axis=1, keepdims=True))
      probs /= probs.sum(axis=1, keepdims=True)
      actions[:, i] = [self._rng.choice(size, p=p) for p in probs]
    return actions

  def _features(self, actions: np.ndarray) -> np.ndarray:
    columns = [np.ones((len(actions), 1))]
    for i, size in enumerate(self._sizes):
      columns.append(np.eye(size)[actions[:, i]])
    return np.concatenate(columns, axis=1)

  def predicted_rewards(self, actions: np.ndarray) -> np.ndarray:
    """The reward predictor: Bayesian ridge regression on one-hot factors over the observed
    rewards; returns the predicted mean plus :data:`OPTIMISM` standard deviations of it (an
    upper confidence bound, so values no trial has tried yet are not ranked as if known to be
    bad). Zeros before any trial."""
    if not self._seen:
      return np.zeros(len(actions))
    x = self._features(np.stack([a for a, _ in self._seen]))
    y = np.asarray([r for _, r in self._seen])
    precision = x.T @ x + RIDGE * max(len(y), 1) * np.eye(x.shape[1])
    coef = np.linalg.solve(precision, x.T @ y)
    noise = float(np.var(y)) if len(y) > 1 else 1.0
    f = self._features(actions)
    spread = np.sqrt(np.maximum(noise * np.einsum("ij,ji->i", f, np.linalg.solve(precision, f.T)),
                                0.0))
    return f @ coef + OPTIMISM * spread

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    """``count`` distinct architectures among :data:`CANDIDATES` policy samples, the highest
    predicted rewards first (ties: the policy's sampling order)."""
    count = count or 1
    sampled = self.sample(max(CANDIDATES, count))
    _, first = np.unique(sampled, axis=0, return_index=True)
    unique = sampled[np.sort(first)]
    order = np.argsort(-self.predicted_rewards(unique), kind="stable")
    return [vz.TrialSuggestion(self._parameters(unique[i])) for i in order[:count]]

  def _parameters(self, actions: np.ndarray) -> vz.ParameterDict:
    parameters = vz.ParameterDict()
    for config, index in zip(self._params_config, actions):
      parameters[config.name] = config.feasible_values[int(index)]
    return parameters


_OPTIMIZER = optax.adam(LEARNING_RATE)
# Jitted controller programs by controller (Flax modules hash by their fields): a search's
# suggestions reuse them instead of tracing again on every call.
_LOGITS: dict[Controller, object] = {}
_STEPS: dict[Controller, object] = {}


def _batched_logits(model: Controller, params, actions: jax.Array) -> jax.Array:
  """The policy's logits [N, F, C] for N (partial) architectures."""
  if model not in _LOGITS:
    _LOGITS[model] = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))
  return _LOGITS[model](params, actions)


def _reinforce_step(model: Controller, params, opt_state, actions, advantage):
  """One REINFORCE step with the entropy bonus (module docstring, item 3)."""
  if model not in _STEPS:
    def loss(p, a, adv):
      log_prob, entropy = _log_prob_and_entropy(model.apply(p, a), a)
      return -adv * log_prob - ENTROPY_BONUS * entropy

    def step(p, state, a, adv):
      updates, state = _OPTIMIZER.update(jax.grad(loss)(p, a, adv), state, p)
      return optax.apply_updates(p, updates), state
    _STEPS[model] = jax.jit(step)
  return _STEPS[model](params, opt_state, actions, advantage)
