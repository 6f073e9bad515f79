"""Logical axis names on every parameter, and a sharded forward pass on 8 simulated devices
(the @pytest.mark.sharding tests; `make test` runs them with 8, tests/conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from autodistill import sharding
from autodistill.models import BertConfig, StudentConfig, hf

STUDENT = StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=4, intermediate_size=48,
                        num_ffn=2, num_blocks=2, embedding_size=16, vocab_size=128,
                        max_position_embeddings=32)
TEACHER = BertConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
                     intermediate_size=64, max_position_embeddings=32)
KNOWN_AXES = {rule[0] for rule in sharding.DEFAULT_LOGICAL_AXIS_RULES}


@pytest.mark.parametrize("config", [STUDENT, TEACHER], ids=["student", "teacher"])
def test_every_parameter_has_logical_axes(config):
  ids = jnp.zeros((1, 8), jnp.int32)
  specs = sharding.logical_specs(hf.make_model(config), ids)
  params = hf.init_params(config, jax.random.PRNGKey(0))
  spec_leaves = jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
  param_leaves = jax.tree_util.tree_leaves(params)
  assert len(spec_leaves) == len(param_leaves)
  for spec, param in zip(spec_leaves, param_leaves):
    assert len(spec) == param.ndim
    assert all(axis in KNOWN_AXES for axis in spec), spec
  flat = {"/".join(str(k.key) for k in path): spec for path, spec in
          jax.tree_util.tree_flatten_with_path(
              specs, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]}
  assert flat["encoder/word_embeddings/embedding"][0] == "vocab"
  prefix = "encoder/block_0" if isinstance(config, StudentConfig) else "encoder/layer_0"
  assert tuple(flat[f"{prefix}/attention/query/kernel"])[1:] == ("heads", "kv")


@pytest.mark.sharding
def test_sharded_forward_matches_single_device():
  assert jax.device_count() == 8, "sharding tests run with AUTODISTILL_TEST_DEVICES=8"
  mesh = sharding.make_mesh((4, 2), ("data", "model"))
  model = hf.make_model(STUDENT)
  params = hf.init_params(STUDENT, jax.random.PRNGKey(0))
  ids = jnp.asarray(np.random.RandomState(0).randint(1, 128, (8, 16)))
  expected = model.apply({"params": params}, ids)

  shardings = sharding.param_shardings(sharding.logical_specs(model, ids[:1]), mesh)
  sharded_params = jax.device_put(params, shardings)
  vocab_sharding = sharded_params["encoder"]["word_embeddings"]["embedding"].sharding
  assert vocab_sharding.spec == PartitionSpec("model", None)
  sharded_ids = jax.device_put(ids, sharding.batch_sharding(mesh))
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
  out = forward(sharded_params, sharded_ids)
  assert len(out.mlm_logits.sharding.device_set) == 8
  np.testing.assert_allclose(out.mlm_logits, expected.mlm_logits, atol=1e-5)
  np.testing.assert_allclose(out.last_hidden_state, expected.last_hidden_state, atol=1e-5)


@pytest.mark.sharding
def test_make_mesh_errors_name_the_problem():
  with pytest.raises(ValueError, match="needs 6 devices, 8 are available"):
    sharding.make_mesh((3, 2))
  with pytest.raises(ValueError, match="does not divide 8 devices"):
    sharding.make_mesh((-1, 3))
  assert sharding.make_mesh((-1, 2)).shape == {"data": 4, "model": 2}


def test_make_mesh_takes_jax_make_mesh_device_order_unless_given_devices(monkeypatch):
  calls = []
  make = jax.make_mesh
  monkeypatch.setattr(jax, "make_mesh", lambda *a, **k: calls.append((a, k)) or make(*a, **k))
  mesh = sharding.make_mesh((-1, 1))
  assert calls and calls[0][0][:2] == ((jax.device_count(), 1), ("data", "model"))
  # Auto axes: shardings come from NamedShardings on jit, as everywhere in the library.
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 2
  assert mesh.shape == {"data": jax.device_count(), "model": 1}
  calls.clear()
  one = sharding.make_mesh((1, -1), ("data", "model"), devices=jax.devices()[:1])
  assert not calls and one.shape == {"data": 1, "model": 1}
  assert list(one.devices.flat) == jax.devices()[:1]
  assert one.axis_types == (jax.sharding.AxisType.Auto,) * 2


def test_make_mesh_errors_with_explicit_devices():
  one = jax.devices()[:1]
  with pytest.raises(ValueError, match="needs 2 devices, 1 are available"):
    sharding.make_mesh((2, 1), devices=one)
  with pytest.raises(ValueError, match="does not divide 1 devices"):
    sharding.make_mesh((-1, 2), devices=one)
  with pytest.raises(ValueError, match="more than one -1"):
    sharding.make_mesh((-1, -1), devices=one)
  with pytest.raises(ValueError, match="differ in length"):
    sharding.make_mesh((1, 1), ("data",), devices=one)


@pytest.mark.sharding
def test_make_mesh_over_a_subset_keeps_the_given_order():
  devices = jax.devices()[::-1][:4]
  mesh = sharding.make_mesh((-1, 2), devices=devices)
  assert mesh.shape == {"data": 2, "model": 2}
  assert list(mesh.devices.flat) == devices
  reference = jax.make_mesh((4, 2), ("data", "model"),
                            axis_types=(jax.sharding.AxisType.Auto,) * 2)
  assert sharding.make_mesh((4, 2)) == reference


def test_replicated_and_batch_sharding_specs():
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  assert sharding.replicated(mesh).spec == PartitionSpec()
  # Without a rank the spec fits every rank, so one sharding can stand for a whole batch dict.
  assert sharding.batch_sharding(mesh).spec == PartitionSpec("data")
  assert sharding.batch_sharding(mesh, 3).spec == PartitionSpec("data", None, None)
  assert sharding.batch_sharding(mesh, 2, data_axis="model").spec == PartitionSpec("model", None)
  batch = {"ids": np.zeros((4, 8), np.int32), "label": np.zeros((4,), np.int32)}
  placed = jax.device_put(batch, sharding.batch_sharding(mesh))
  assert placed["ids"].sharding.is_equivalent_to(sharding.batch_sharding(mesh, 2), 2)


def test_model_shardings_follow_the_logical_axis_rules():
  mesh = sharding.make_mesh((1, 1), devices=jax.devices()[:1])
  model = hf.make_model(STUDENT)
  shardings = sharding.model_shardings(model, mesh)
  expected = sharding.param_shardings(
      sharding.logical_specs(model, jnp.zeros((1, 8), jnp.int32)), mesh)
  assert jax.tree.structure(shardings) == jax.tree.structure(expected)
  assert shardings["encoder"]["word_embeddings"]["embedding"].spec == PartitionSpec("model", None)
  no_model_axis = [rule for rule in sharding.DEFAULT_LOGICAL_AXIS_RULES if rule[0] != "vocab"]
  replicated_vocab = sharding.model_shardings(model, mesh, no_model_axis)
  assert replicated_vocab["encoder"]["word_embeddings"]["embedding"].spec == PartitionSpec(
      None, None)
