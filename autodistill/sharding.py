"""Device meshes, logical-axis rules and every sharding the library uses (``jax.jit`` +
``NamedSharding`` over a ``Mesh``).

Every model parameter carries logical axis names (see :mod:`autodistill.models.layers`). Rules map
them to mesh axes: by default the ``model`` mesh axis splits the vocabulary, FFN and attention
heads (Megatron-style tensor parallelism) and everything else is replicated; the ``data`` axis
splits the batch. The helpers here are the only place shardings are spelled out:

* :func:`make_mesh` -- a ``(data, model)`` mesh in the devices' physical order;
* :func:`model_shardings` (or :func:`logical_specs` + :func:`param_shardings`) -- parameters;
* :func:`batch_sharding` -- the leading (batch) dimension over the ``data`` axis;
* :func:`replicated` -- a full copy on every device (scalars, metrics, small tensors).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

Rules = Sequence[tuple[str, Optional[str]]]

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
    ("layers", None),
    ("classes", None),
)


def _resolve_shape(shape: Sequence[int], axis_names: Sequence[str],
                   num_devices: int, platform: str) -> tuple[int, ...]:
  """``shape`` with its ``-1`` (if any) replaced by the devices the other axes leave."""
  shape = list(shape)
  if len(shape) != len(axis_names):
    raise ValueError(f"mesh shape {tuple(shape)} and axis names {tuple(axis_names)} differ in "
                     "length.")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {tuple(shape)} has more than one -1.")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"mesh shape {tuple(shape)} does not divide {num_devices} devices.")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices, "
                     f"{num_devices} are available ({platform}).")
  return tuple(shape)


def make_mesh(shape: Sequence[int] = (-1, 1), axis_names: Sequence[str] = ("data", "model"),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over ``devices`` (default: all); one ``-1`` in ``shape`` takes the remaining devices.

  Without ``devices`` the mesh comes from ``jax.make_mesh``, which orders the devices by their
  physical topology (e.g. a ring on TPU) so collectives over an axis stay on neighbouring chips.
  Explicit ``devices`` are laid out in the order given. The axes are ``AxisType.Auto``: shardings
  are stated through ``NamedSharding``s on ``jax.jit``, not through sharding-in-types.

  Args:
    shape: size of each mesh axis; at most one ``-1``.
    axis_names: one name per axis.
    devices: the devices to use, e.g. ``jax.devices()[:1]``; default all of ``jax.devices()``.

  Returns:
    The :class:`jax.sharding.Mesh`.

  Raises:
    ValueError: the shape does not fit the number of devices (or the axis names).
  """
  available = list(jax.devices() if devices is None else devices)
  shape = _resolve_shape(shape, axis_names, len(available), available[0].platform)
  axis_types = (AxisType.Auto,) * len(shape)
  if devices is None:
    # jax.make_mesh defaults to Explicit axes in this JAX; Auto keeps jit's NamedSharding model.
    return jax.make_mesh(shape, tuple(axis_names), axis_types=axis_types)
  return Mesh(np.asarray(available).reshape(shape), tuple(axis_names), axis_types=axis_types)


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy of the array on every device of ``mesh``."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: Optional[int] = None,
                   data_axis: str = "data") -> NamedSharding:
  """Splits the leading (batch) dimension over ``data_axis``; other dimensions are replicated.

  Args:
    mesh: the device mesh.
    ndim: rank of the arrays it is for. None gives ``PartitionSpec(data_axis)``, which fits
      arrays of every rank, so one sharding can stand for a whole batch dict (e.g. as a pytree
      prefix in ``jax.jit(in_shardings=...)``).
    data_axis: the mesh axis the batch is split over.
  """
  trailing = () if ndim is None else (None,) * (ndim - 1)
  return NamedSharding(mesh, PartitionSpec(data_axis, *trailing))


def logical_specs(module: nn.Module, *example_args: Any, **example_kwargs: Any) -> Any:
  """The logical PartitionSpec of every parameter of ``module``, without allocating it."""
  abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *example_args, **example_kwargs)
  return nn.get_partition_spec(abstract)["params"]


def param_shardings(specs: Any, mesh: Mesh, rules: Rules = DEFAULT_LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings on ``mesh`` for a tree of logical PartitionSpecs under ``rules``."""
  return nn.logical_to_mesh_sharding(specs, mesh, tuple(rules))


def model_shardings(module: nn.Module, mesh: Mesh, rules: Rules = DEFAULT_LOGICAL_AXIS_RULES,
                    example_input: Any = None) -> Any:
  """A NamedSharding per parameter of ``module`` (a model taking token ids) under ``rules``.

  Args:
    module: a Flax module whose parameters carry logical axis names.
    mesh: the device mesh.
    rules: logical-axis rules (see :data:`DEFAULT_LOGICAL_AXIS_RULES`).
    example_input: what ``module.init`` is traced with; default a ``(1, 8)`` int32 batch of
      token ids (shapes only: nothing is allocated).
  """
  if example_input is None:
    return param_shardings(_token_model_specs(module), mesh, rules)
  return param_shardings(logical_specs(module, example_input), mesh, rules)


@functools.lru_cache(maxsize=64)
def _token_model_specs(module: nn.Module) -> Any:
  """:func:`logical_specs` of a model taking token ids, kept by module (Flax modules compare and
  hash by their fields): every run of a student or teacher would otherwise trace its ``init``."""
  return logical_specs(module, jax.ShapeDtypeStruct((1, 8), jnp.int32))
