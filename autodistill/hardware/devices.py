"""Which device a latency is measured on, and how that device is named in results and caches.

The paper measures every student "in the target hardware and software environment" (section
3.4); here the target is one JAX device. It can be given as a ``jax.Device``, a platform
(``"cpu"``, ``"gpu"``, ``"tpu"``, or ``"cuda"``/``"rocm"``), a platform with an index into that
platform's devices (``"cpu:3"``), or an index into the default backend's devices. Anything else
is a ``ValueError`` that lists the devices this process can see.
"""

from __future__ import annotations

import functools
import os
import platform as _platform
from typing import Union

import jax

DeviceLike = Union[None, int, str, jax.Device]

# Platforms probed when listing what is available; jax.devices(name) raises for absent ones.
_PLATFORMS = ("cpu", "gpu", "tpu")


def _devices_of(platform: str) -> list[jax.Device]:
  try:
    return list(jax.devices(platform))
  except (RuntimeError, ValueError):  # unknown or uninitialisable backend
    return []


def available_devices() -> list[str]:
  """Labels (``"cpu:0"``, ``"gpu:1"``, ...) of every device this process can measure on."""
  labels = []
  for name in dict.fromkeys((jax.default_backend(),) + _PLATFORMS):
    labels += [f"{name}:{i}" for i in range(len(_devices_of(name)))]
  return labels


def device_label(device: jax.Device) -> str:
  """``"<platform>:<index>"``, the index counting that platform's devices in this process."""
  for i, d in enumerate(_devices_of(device.platform)):
    if d == device:
      return f"{device.platform}:{i}"
  return f"{device.platform}:{device.id}"


def _unavailable(what: str) -> ValueError:
  return ValueError(f"{what}; available devices: {', '.join(available_devices()) or 'none'}.")


def resolve_device(device: DeviceLike = None) -> jax.Device:
  """The ``jax.Device`` a latency measurement runs on.

  Args:
    device: None (the default backend's first device), a ``jax.Device``, an int (index into the
      default backend's devices), a platform name (``"cpu"``, ``"gpu"``, ``"tpu"``, ``"cuda"``,
      ``"rocm"``) or ``"<platform>:<index>"`` (e.g. ``"cpu:3"``).

  Raises:
    ValueError: no such platform or index here; the message lists the available devices.
  """
  if device is None:
    return jax.devices()[0]
  if isinstance(device, jax.Device):
    if device not in _devices_of(device.platform):
      raise _unavailable(f"device {device} does not belong to this process")
    return device
  if isinstance(device, bool) or not isinstance(device, (int, str)):
    raise ValueError(f"device must be None, an int, a string like 'cpu' or 'cpu:3', or a "
                     f"jax.Device; got {device!r}.")
  if isinstance(device, int):
    platform, index = jax.default_backend(), device
  else:
    platform, _, index_text = device.strip().lower().partition(":")
    if index_text and not index_text.isdigit():
      raise _unavailable(f"cannot parse device {device!r}: expected '<platform>' or "
                         "'<platform>:<index>'")
    index = int(index_text) if index_text else 0
  devices = _devices_of(platform)
  if not devices:
    raise _unavailable(f"no {platform!r} backend in this process (device {device!r})")
  if not 0 <= index < len(devices):
    raise _unavailable(f"device {device!r} does not exist: {platform!r} has {len(devices)} "
                       "device(s)")
  return devices[index]


@functools.cache
def host_cpu() -> str:
  """The host processor model and the number of cores this process may run on.

  Part of every cache key: JAX reports every CPU as device kind ``"cpu"``, and batch-1 latency
  also depends on the host that dispatches to an accelerator.
  """
  model = ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  model = model or _platform.processor() or _platform.machine() or "unknown cpu"
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{model} x{cores}"
