"""LAMB, its schedule, weight-decay mask, clipping and freezing against hand-written NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autodistill.train import optimizers as optim

# ---------------------------------------------------------------------------------------------
# A small parameter tree with kernels, an embedding, biases and a norm scale.


def _params(seed=0):
  rng = np.random.RandomState(seed)
  shapes = {
      "encoder": {"dense": {"kernel": (3, 4), "bias": (4,)},
                  "norm": {"scale": (4,), "bias": (4,)},
                  "embed": {"embedding": (5, 3)}},
      "head": {"kernel": (4, 2), "bias": (2,)},
  }
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


def _grads(params, seed, scale=1.0):
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * scale, jnp.float32),
                      params)


def _flat(tree):
  """{"a/b/c": leaf} for a nested-dict tree."""
  return {"/".join(k.key for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


DECAYED = {"encoder/dense/kernel", "encoder/embed/embedding", "head/kernel"}


def _np_lamb(params, grads_seq, lrs, *, b1=0.9, b2=0.999, eps=1e-6, wd=0.0, clip=None,
             only=None, adapt_all=False):
  """LAMB (You et al. 2020, Alg. 2) in float64 over flat dicts, with optional global-norm clip.

  ``only`` restricts the update (and the clipping norm) to those leaves. The trust ratio applies
  to the decayed leaves only (BERT's LAMB), or to every leaf with ``adapt_all`` (optax.lamb).
  """
  p = {k: v.astype(np.float64) for k, v in _flat(params).items() if only is None or k in only}
  mu = {k: np.zeros_like(v) for k, v in p.items()}
  nu = {k: np.zeros_like(v) for k, v in p.items()}
  out = []
  for t, grads in enumerate(grads_seq, start=1):
    g = {k: v.astype(np.float64) for k, v in _flat(grads).items() if k in p}
    if clip is not None:
      norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
      if norm >= clip:
        g = {k: v * clip / norm for k, v in g.items()}
    updates = {}
    for k in p:
      mu[k] = b1 * mu[k] + (1 - b1) * g[k]
      nu[k] = b2 * nu[k] + (1 - b2) * g[k] ** 2
      u = (mu[k] / (1 - b1 ** t)) / (np.sqrt(nu[k] / (1 - b2 ** t)) + eps)
      if k in DECAYED:
        u = u + wd * p[k]
      pn, un = np.linalg.norm(p[k]), np.linalg.norm(u)
      ratio = pn / un if pn > 0 and un > 0 and (adapt_all or k in DECAYED) else 1.0
      updates[k] = -lrs[t - 1] * ratio * u
      p[k] = p[k] + updates[k]
    out.append(updates)
  return out


def _run(tx, params, grads_seq):
  """Applies ``tx`` to a gradient sequence; returns the flat updates per step and the state."""
  state = jax.jit(tx.init)(params)
  update = jax.jit(tx.update)
  apply = jax.jit(optax.apply_updates)
  out = []
  for g in grads_seq:
    u, state = update(g, state, params)
    params = apply(params, u)
    out.append(_flat(u))
  return out, state


def _assert_updates_close(got, expected, rtol=1e-5, atol=1e-7):
  assert len(got) == len(expected)
  for step_got, step_expected in zip(got, expected):
    for k, v in step_expected.items():
      np.testing.assert_allclose(step_got[k], v, rtol=rtol, atol=atol, err_msg=k)


def _adam_states(state):
  found = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
  return [s for s in found if isinstance(s, optax.ScaleByAdamState)]


# ---------------------------------------------------------------------------------------------
# Config and schedule


@pytest.mark.parametrize("changes", [
    {"decay": "exponential"}, {"learning_rate": 0.0}, {"learning_rate": -1e-3},
    {"warmup_steps": -1}, {"grad_accum_steps": 0}])
def test_optimizer_config_rejects_invalid_values(changes):
  with pytest.raises(ValueError):
    optim.OptimizerConfig(**changes)
  with pytest.raises(ValueError):
    optim.OptimizerConfig().replace(**changes)


def test_optimizer_config_replace_keeps_other_fields():
  config = optim.OptimizerConfig(learning_rate=2e-3, warmup_steps=5).replace(decay="cosine")
  assert (config.learning_rate, config.warmup_steps, config.decay) == (2e-3, 5, "cosine")


PEAK, END, WARMUP, TOTAL = 2e-3, 0.25, 4, 20


def _np_schedule(decay, steps, warmup=WARMUP):
  end = PEAK * END
  out = []
  for t in steps:
    if t < warmup:
      out.append(PEAK * t / warmup)
      continue
    frac = min(t - warmup, TOTAL - warmup) / (TOTAL - warmup)
    if decay == "linear":
      out.append(PEAK + (end - PEAK) * frac)
    elif decay == "cosine":
      out.append(end + (PEAK - end) * 0.5 * (1 + np.cos(np.pi * frac)))
    else:
      out.append(PEAK)
  return np.array(out)


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("warmup", [0, WARMUP])
def test_learning_rate_schedule(decay, warmup):
  config = optim.OptimizerConfig(learning_rate=PEAK, warmup_steps=warmup, decay=decay,
                                 end_lr_fraction=END)
  schedule = optim.learning_rate_schedule(config, TOTAL)
  steps = np.arange(TOTAL + 6)
  got = jax.jit(jax.vmap(schedule))(jnp.asarray(steps))
  np.testing.assert_allclose(got, _np_schedule(decay, steps, warmup), rtol=1e-5, atol=1e-10)
  # Landmarks stated in the docstring: 0 at step 0 with warm-up, the peak after it, the end.
  assert float(got[warmup]) == pytest.approx(PEAK, rel=1e-6)
  if warmup:
    assert float(got[0]) == 0.0
  if decay != "constant":
    assert float(got[TOTAL]) == pytest.approx(PEAK * END, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Weight-decay mask and LAMB


def test_decay_mask_spares_biases_and_scales():
  mask = _flat(optim.decay_mask(_params()))
  assert mask == {
      "encoder/dense/kernel": True, "encoder/dense/bias": False,
      "encoder/norm/scale": False, "encoder/norm/bias": False,
      "encoder/embed/embedding": True, "head/kernel": True, "head/bias": False}


def test_lamb_equals_optax_lamb_and_numpy():
  config = optim.OptimizerConfig(learning_rate=1e-2, weight_decay=0.1, clip_norm=None,
                                 exclude_from_layer_adaptation=False)
  schedule = optim.learning_rate_schedule(config, 10)
  params = _params()
  grads_seq = [_grads(params, seed, scale) for seed, scale in [(1, 1.0), (2, 0.1), (3, 3.0)]]
  ours, _ = _run(optim.lamb(config, schedule), params, grads_seq)
  reference = optax.lamb(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                         weight_decay=config.weight_decay, mask=optim.decay_mask)
  theirs, their_state = _run(reference, params, grads_seq)
  _assert_updates_close(ours, theirs, rtol=1e-6, atol=1e-9)
  lrs = [1e-2 * (1 - t / 10) for t in range(3)]  # linear decay to 0 over 10 steps, no warm-up
  _assert_updates_close(ours, _np_lamb(params, grads_seq, lrs, wd=0.1, adapt_all=True))
  # optax's state, leaf for leaf, so checkpoints written with optax's chain still restore.
  _, our_state = _run(optim.lamb(config, schedule), params, grads_seq)
  _assert_same_state(our_state, their_state)


def _assert_same_state(ours, theirs):
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5,
                               atol=1e-9)


@pytest.mark.parametrize("mu_dtype", [None, "bfloat16"])
def test_adamw_equals_optax_adamw_with_its_state(mu_dtype):
  config = optim.OptimizerConfig(name="adamw", learning_rate=1e-2, weight_decay=0.1,
                                 clip_norm=None, mu_dtype=mu_dtype)
  schedule = optim.learning_rate_schedule(config, 10)
  params = _params()
  grads_seq = [_grads(params, seed, scale) for seed, scale in [(1, 1.0), (2, 0.1), (3, 3.0)]]
  ours, our_state = _run(optim.adamw(config, schedule), params, grads_seq)
  reference = optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                          weight_decay=config.weight_decay, mask=optim.decay_mask,
                          mu_dtype=None if mu_dtype is None else jnp.dtype(mu_dtype))
  theirs, their_state = _run(reference, params, grads_seq)
  _assert_updates_close(ours, theirs, rtol=1e-6, atol=1e-9)
  _assert_same_state(our_state, their_state)
  # AdamW is LAMB without the trust ratio: against the NumPy LAMB, a decayed kernel differs.
  lrs = [1e-2 * (1 - t / 10) for t in range(3)]
  lamb = _np_lamb(params, grads_seq, lrs, wd=0.1)
  assert not np.allclose(ours[0]["head/kernel"], lamb[0]["head/kernel"], rtol=1e-2)
  np.testing.assert_allclose(ours[0]["head/bias"], lamb[0]["head/bias"], rtol=1e-5, atol=1e-7)


def test_lamb_default_skips_trust_ratio_on_biases_and_norms():
  config = optim.OptimizerConfig(learning_rate=1e-2, weight_decay=0.1, clip_norm=None)
  schedule = optim.learning_rate_schedule(config, 10)
  params = _params()
  grads_seq = [_grads(params, seed, scale) for seed, scale in [(1, 1.0), (2, 0.1), (3, 3.0)]]
  ours, _ = _run(optim.lamb(config, schedule), params, grads_seq)
  lrs = [1e-2 * (1 - t / 10) for t in range(3)]
  _assert_updates_close(ours, _np_lamb(params, grads_seq, lrs, wd=0.1))
  # It matters: with the trust ratio everywhere a bias moves differently.
  everywhere = _np_lamb(params, grads_seq, lrs, wd=0.1, adapt_all=True)
  assert not np.allclose(ours[0]["head/bias"], everywhere[0]["head/bias"], rtol=1e-2)


def test_lamb_weight_decay_only_on_masked_leaves():
  # With zero gradients the Adam direction is 0, so a decayed leaf moves by wd * p scaled by the
  # trust ratio ||p|| / ||wd p|| = 1 / wd: exactly -lr * p. Undecayed leaves do not move.
  config = optim.OptimizerConfig(learning_rate=1e-2, weight_decay=0.3, decay="constant")
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  (updates,), _ = _run(optim.lamb(config, optim.learning_rate_schedule(config, 10)), params,
                       [zeros])
  for k, p in _flat(params).items():
    expected = -1e-2 * p if k in DECAYED else np.zeros_like(p)
    np.testing.assert_allclose(updates[k], expected, rtol=1e-6, atol=1e-9, err_msg=k)


def test_lamb_bfloat16_first_moment():
  params = _params()
  grads_seq = [_grads(params, 1), _grads(params, 2)]
  base = optim.OptimizerConfig(learning_rate=1e-2, clip_norm=None)
  schedule = optim.learning_rate_schedule(base, 10)
  full, full_state = _run(optim.lamb(base, schedule), params, grads_seq)
  half, half_state = _run(optim.lamb(base.replace(mu_dtype="bfloat16"), schedule), params,
                          grads_seq)
  (full_adam,), (half_adam,) = _adam_states(full_state), _adam_states(half_state)
  assert {x.dtype for x in jax.tree.leaves(full_adam.mu)} == {jnp.dtype(jnp.float32)}
  assert {x.dtype for x in jax.tree.leaves(half_adam.mu)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(half_adam.nu)} == {jnp.dtype(jnp.float32)}
  # Same updates up to bfloat16 rounding of the first moment (~3 significant digits).
  _assert_updates_close(half, full, rtol=2e-2, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The phase optimizer: clipping, freezing


def _trainable(path):
  return "embed" not in path and "norm" not in path


FROZEN = {"encoder/embed/embedding", "encoder/norm/scale", "encoder/norm/bias"}


def test_freeze_labels_and_count_by_label():
  params = _params()
  seen = []
  labels = optim.freeze_labels(params, lambda path: seen.append(path) or _trainable(path))
  assert ("encoder", "dense", "kernel") in seen and ("head", "bias") in seen
  flat = _flat(labels)
  assert flat == {k: ("frozen" if k in FROZEN else "train") for k in flat}
  # Hand count: dense 3*4 + 4, head 4*2 + 2 train; embedding 5*3, norm 4 + 4 frozen.
  assert optim.count_by_label(params, labels) == {"train": 26, "frozen": 23}


def test_make_optimizer_clips_then_lamb_without_labels():
  config = optim.OptimizerConfig(learning_rate=1e-2, warmup_steps=2, weight_decay=0.05,
                                 clip_norm=1.0)
  params = _params()
  # A huge gradient, then small ones: clipping the first changes the Adam moments the later
  # steps see, which LAMB's per-step normalisation alone would not undo.
  grads_seq = [_grads(params, 1, 1000.0), _grads(params, 2, 0.01), _grads(params, 3, 0.5)]
  lrs = [0.0, 5e-3, 1e-2]  # linear warm-up over 2 steps
  ours, _ = _run(optim.make_optimizer(config, 10), params, grads_seq)
  clipped = _np_lamb(params, grads_seq, lrs, wd=0.05, clip=1.0)
  _assert_updates_close(ours, clipped)
  assert all(np.all(u == 0) for u in ours[0].values())  # lr(0) = 0 during warm-up
  # The comparison can tell clipping apart: without it the later updates are different.
  unclipped, _ = _run(optim.make_optimizer(config.replace(clip_norm=None), 10), params,
                      grads_seq)
  assert not np.allclose(unclipped[1]["head/kernel"], clipped[1]["head/kernel"], rtol=1e-2)


def test_make_optimizer_with_frozen_leaves():
  config = optim.OptimizerConfig(learning_rate=1e-2, weight_decay=0.05, clip_norm=1.0)
  params = _params()
  labels = optim.freeze_labels(params, _trainable)
  tx = optim.make_optimizer(config, 10, labels)
  grads_seq = [_grads(params, 1, 1000.0), _grads(params, 2, 0.01), _grads(params, 3, 0.5)]
  got, state = _run(tx, params, grads_seq)
  # Frozen leaves never move, whatever their gradient.
  for step in got:
    for k in FROZEN:
      np.testing.assert_array_equal(step[k], 0.0, err_msg=k)
  # Trainable leaves follow clip + LAMB on the trainable sub-tree alone (the clip norm ignores
  # the frozen gradients).
  trainable = set(_flat(params)) - FROZEN
  lrs = [1e-2 * (1 - t / 10) for t in range(3)]
  _assert_updates_close(got, _np_lamb(params, grads_seq, lrs, wd=0.05, clip=1.0,
                                      only=trainable))
  # No optimizer state at all for frozen leaves: their Adam moments are MaskedNodes.
  (adam,) = _adam_states(state)
  for moments in (adam.mu, adam.nu):
    assert isinstance(moments["encoder"]["embed"]["embedding"], optax.MaskedNode)
    assert isinstance(moments["encoder"]["norm"]["scale"], optax.MaskedNode)
    assert moments["encoder"]["dense"]["kernel"].shape == (3, 4)
    assert moments["head"]["bias"].shape == (2,)
  state_floats = sum(x.size for x in jax.tree.leaves(state)
                     if jnp.issubdtype(x.dtype, jnp.floating))
  assert state_floats == 2 * optim.count_by_label(params, labels)["train"]


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_learning_rate_scales_give_a_parameter_group_its_own_learning_rate(name):
  """A group at 0.05x the learning rate moves exactly as the same optimizer at that rate (Adam,
  AdamW and LAMB act leaf by leaf, and their updates are proportional to the rate); other
  leaves as without the scales; frozen leaves not at all."""
  config = optim.OptimizerConfig(name=name, learning_rate=1e-2, warmup_steps=1,
                                 weight_decay=0.05, clip_norm=None)
  params = _params()
  grads_seq = [_grads(params, 1), _grads(params, 2, 0.1), _grads(params, 3, 3.0)]
  scaled = config.replace(learning_rate_scales=(("encoder/dense", 0.05), ("head", 2.0)))
  got, _ = _run(optim.make_optimizer(scaled, 10), params, grads_seq)
  base, _ = _run(optim.make_optimizer(config, 10), params, grads_seq)
  slow, _ = _run(optim.make_optimizer(config.replace(learning_rate=5e-4), 10), params, grads_seq)
  fast, _ = _run(optim.make_optimizer(config.replace(learning_rate=2e-2), 10), params, grads_seq)
  for step, step_base, step_slow, step_fast in zip(got, base, slow, fast):
    for key, value in step.items():
      expected = (step_slow if key.startswith("encoder/dense/") else
                  step_fast if key.startswith("head/") else step_base)[key]
      np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-9, err_msg=key)
  assert not np.allclose(got[1]["encoder/dense/kernel"], base[1]["encoder/dense/kernel"])
  # With frozen leaves (the labels of optax.multi_transform) the scales still find their group.
  labels = optim.freeze_labels(params, _trainable)
  frozen_got, _ = _run(optim.make_optimizer(scaled, 10, labels), params, grads_seq)
  for step, step_got in zip(frozen_got, got):
    for key, value in step.items():
      np.testing.assert_allclose(value, 0.0 if key in FROZEN else step_got[key], rtol=1e-5,
                                 atol=1e-9, err_msg=key)


@pytest.mark.parametrize("scales", [(("", 0.5),), (("encoder", 0.0),), (("encoder", -1.0),)])
def test_learning_rate_scales_reject_empty_prefixes_and_non_positive_factors(scales):
  with pytest.raises(ValueError, match="learning_rate_scales"):
    optim.OptimizerConfig(learning_rate_scales=scales)


def test_lamb_trust_ratio_is_per_layer_on_stacked_layers():
  """Layers stacked on a leading axis under a ``blocks`` key (a student's ``scan_blocks``) get
  the updates the same layers get stored one leaf per layer: one trust ratio per layer."""
  config = optim.OptimizerConfig(learning_rate=1e-2, weight_decay=0.1, clip_norm=None,
                                 exclude_from_layer_adaptation=False)
  # Three layers with different norms, so one ratio over the stack would differ.
  layers = [jax.tree.map(lambda x, i=i: x * (i + 1), _params(i)["encoder"]) for i in range(3)]
  one_per_leaf = {"encoder": {f"block_{i}": layer for i, layer in enumerate(layers)}}
  stacked = {"encoder": {"blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}}
  assert _flat(optim.stacked_mask(stacked)) == {k: True for k in _flat(stacked)}
  assert not any(_flat(optim.stacked_mask(one_per_leaf)).values())
  grads = [_grads(one_per_leaf, seed) for seed in (1, 2)]
  stack = lambda tree: {"encoder": {"blocks": jax.tree.map(  # noqa: E731
      lambda *xs: jnp.stack(xs), *[tree["encoder"][f"block_{i}"] for i in range(3)])}}
  tx = optim.make_optimizer(config, 10)
  want, _ = _run(tx, one_per_leaf, grads)
  got, _ = _run(tx, stacked, [stack(g) for g in grads])
  for step_got, step_want in zip(got, want, strict=True):
    for key, value in step_got.items():
      for i in range(3):
        np.testing.assert_allclose(value[i], step_want[key.replace("blocks", f"block_{i}")],
                                   rtol=1e-5, atol=1e-8, err_msg=key)
  # optax's LAMB has one ratio per leaf: on the stack it gives other updates.
  per_leaf, _ = _run(optax.lamb(optim.learning_rate_schedule(config, 10), weight_decay=0.1,
                                mask=optim.decay_mask), stacked, [stack(g) for g in grads])
  assert not np.allclose(per_leaf[0]["encoder/blocks/dense/kernel"],
                         got[0]["encoder/blocks/dense/kernel"], rtol=1e-2)
