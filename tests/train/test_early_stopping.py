"""Evaluation every N steps and early stopping in the one trainer, including resume after a kill."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autodistill import sharding
from autodistill.finetune.features import ArrayStream
from autodistill.train import (EarlyStopping, OptimizerConfig, Phase, RunOptions, decay_mask,
                               make_optimizer, run_phases)

# w starts at 0 and is pulled towards 10 by the training loss; the dev score -(w - 3)^2 peaks
# when w passes 3 and falls after, so early stopping must keep the parameters of that moment.
TRAIN_TARGET, DEV_TARGET = 10.0, 3.0


def _loss(params, batch, rng, context):
  del rng, context
  return jnp.mean((params["w"] - TRAIN_TARGET) ** 2) + 0.0 * batch["x"].sum(), {}


def _dev_score(params):
  return {"score": -float((np.asarray(params["w"])[0] - DEV_TARGET) ** 2)}


def _run(workdir, eval_fn=_dev_score, patience=2, num_steps=40, checkpoint_every=500):
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  rep = sharding.replicated(mesh)
  optimizer = OptimizerConfig(name="adamw", learning_rate=0.5, decay="constant", weight_decay=0.0,
                              clip_norm=None)
  phase = Phase("finetune/toy", num_steps, _loss, optimizer)
  stream = ArrayStream({"x": np.zeros((16, 1), np.float32)}, global_batch_size=4)
  return run_phases([phase], {"w": jnp.zeros((1,))}, param_shardings={"w": rep}, mesh=mesh,
                    train_data=stream, workdir=workdir, eval_fn=eval_fn,
                    early_stopping=EarlyStopping("score", "max", patience),
                    options=RunOptions(eval_every=2, checkpoint_every=checkpoint_every,
                                       progress=False), log=lambda _: None)


def test_early_stopping_keeps_the_best_parameters_and_stops(tmp_path):
  result = _run(tmp_path / "a")
  scores = [h["score"] for h in result.history]
  best = int(np.argmax(scores))
  # The score rose, peaked and then fell for `patience` evaluations in a row.
  assert 0 < best < len(scores) - 1 and len(scores) == best + 1 + 2
  assert result.best_step == result.history[best]["step"] == 2 * (best + 1)
  assert result.stopped_early_at == result.history[-1]["step"] == result.global_step < 40
  assert result.best == {"score": scores[best]}
  # The kept parameters are those of the best evaluation, not the last ones.
  w_best = float(np.asarray(result.best_params["w"])[0])
  assert _dev_score(result.best_params)["score"] == pytest.approx(scores[best], abs=1e-6)
  assert abs(w_best - DEV_TARGET) < abs(float(np.asarray(result.params["w"])[0]) - DEV_TARGET)


def test_patience_zero_runs_every_step_and_still_keeps_the_best(tmp_path):
  result = _run(tmp_path, patience=0, num_steps=20)
  assert result.stopped_early_at is None and result.global_step == 20
  assert [h["step"] for h in result.history] == list(range(2, 21, 2))
  scores = [h["score"] for h in result.history]
  assert result.best["score"] == max(scores) and result.best_step == 2 * (np.argmax(scores) + 1)


class _Killed(Exception):
  pass


def test_a_run_killed_after_the_best_resumes_to_the_same_result(tmp_path):
  uninterrupted = _run(tmp_path / "whole")
  calls = []

  def dies_on_the_fourth_evaluation(params):
    calls.append(1)
    if len(calls) == 4:
      raise _Killed()
    return _dev_score(params)

  with pytest.raises(_Killed):
    _run(tmp_path / "killed", eval_fn=dies_on_the_fourth_evaluation, checkpoint_every=4)
  resumed = _run(tmp_path / "killed", checkpoint_every=4)
  # Evaluations do not checkpoint: the run resumes from step 4 (with the first two evaluations
  # and the best so far) and evaluates steps 6 and 8 again.
  assert resumed.resumed_from == 4
  assert resumed.history == uninterrupted.history
  assert (resumed.best_step, resumed.stopped_early_at) == (uninterrupted.best_step,
                                                           uninterrupted.stopped_early_at)
  np.testing.assert_array_equal(resumed.best_params["w"], uninterrupted.best_params["w"])
  # A finished (stopped) run started again returns its result without training.
  again = _run(tmp_path / "killed")
  assert again.stopped_early_at == uninterrupted.stopped_early_at
  np.testing.assert_array_equal(again.best_params["w"], uninterrupted.best_params["w"])


def test_early_stopping_needs_the_metric_and_an_eval_fn(tmp_path):
  with pytest.raises(KeyError, match="does not report"):
    _run(tmp_path / "a", eval_fn=lambda p: {"other": 1.0})
  with pytest.raises(ValueError, match="eval_fn"):
    _run(tmp_path / "b", eval_fn=None)
  with pytest.raises(ValueError, match="mode"):
    EarlyStopping("score", mode="up")


def test_adamw_is_optax_adamw_with_the_decay_mask():
  params = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3) / 7, "bias": jnp.ones(3)}}
  grads = jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)
  config = OptimizerConfig(name="adamw", learning_rate=1e-2, weight_decay=0.1, clip_norm=None,
                           decay="constant")
  ours = make_optimizer(config, 10)
  reference = optax.adamw(1e-2, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.1, mask=decay_mask)
  s1, s2 = ours.init(params), reference.init(params)
  p1 = p2 = params
  for _ in range(3):
    u1, s1 = ours.update(grads, s1, p1)
    u2, s2 = reference.update(grads, s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p1, p2)
  with pytest.raises(ValueError, match="unknown optimizer"):
    OptimizerConfig(name="sgd")
