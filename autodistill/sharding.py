"""Device meshes and logical-axis rules (pjit-style sharding with ``jax.jit`` + NamedSharding).

Every model parameter carries logical axis names (see :mod:`autodistill.models.layers`). Rules map
them to mesh axes: by default the ``model`` mesh axis splits the vocabulary, FFN and attention
heads (Megatron-style tensor parallelism) and everything else is replicated; the ``data`` axis
splits the batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# (logical axis, mesh axis or None). Axes not listed are replicated.
DEFAULT_LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("embed", None),
    ("embed_out", None),
    ("token_embed", None),
    ("bottleneck", None),
    ("position", None),
    ("token_type", None),
    ("classes", None),
)


def make_mesh(shape: Sequence[int] = (-1, 1), axis_names: Sequence[str] = ("data", "model"),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over ``devices`` (default: all); one ``-1`` in ``shape`` takes the remaining devices.

  Raises:
    ValueError: the shape does not fit the number of devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != len(axis_names):
    raise ValueError(f"mesh shape {tuple(shape)} and axis names {tuple(axis_names)} differ in "
                     "length.")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {tuple(shape)} has more than one -1.")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if len(devices) % known:
      raise ValueError(f"mesh shape {tuple(shape)} does not divide {len(devices)} devices.")
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) != len(devices):
    raise ValueError(f"mesh shape {tuple(shape)} needs {int(np.prod(shape))} devices, "
                     f"{len(devices)} are available ({devices[0].platform}).")
  return Mesh(np.asarray(devices).reshape(shape), tuple(axis_names))


def logical_specs(module: nn.Module, *example_args: Any, **example_kwargs: Any) -> Any:
  """The logical PartitionSpec of every parameter of ``module``, without allocating it."""
  abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *example_args, **example_kwargs)
  return nn.get_partition_spec(abstract)["params"]


def param_shardings(specs: Any, mesh: Mesh,
                    rules: Sequence[tuple[str, str | None]] = DEFAULT_LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings on ``mesh`` for a tree of logical PartitionSpecs under ``rules``."""
  return nn.logical_to_mesh_sharding(specs, mesh, tuple(rules))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Shards the leading (batch) dimension over the ``data`` axis."""
  return NamedSharding(mesh, PartitionSpec("data", *([None] * (ndim - 1))))
