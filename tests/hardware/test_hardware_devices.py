"""Device selection: every accepted spelling, and clear errors that list what exists.

The @pytest.mark.sharding tests see 8 simulated CPU devices (tests/conftest.py), the rest one.
"""

import jax
import pytest

from autodistill.hardware import available_devices, host_cpu, measure_latency, resolve_device
from autodistill.hardware.devices import device_label

CPUS = jax.devices("cpu")


@pytest.mark.sharding
def test_eight_fake_cpu_devices_are_listed():
  assert len(CPUS) == 8, "sharding tests run with AUTODISTILL_TEST_DEVICES=8"
  assert available_devices() == [f"cpu:{i}" for i in range(8)]


@pytest.mark.parametrize("spec, index", [
    (None, 0), ("cpu", 0), (0, 0), pytest.param("cpu:3", 3, marks=pytest.mark.sharding),
    pytest.param(" CPU:7 ", 7, marks=pytest.mark.sharding),
    pytest.param(5, 5, marks=pytest.mark.sharding)])
def test_accepted_spellings(spec, index):
  device = resolve_device(spec)
  assert device == CPUS[index]
  assert device_label(device) == f"cpu:{index}"


@pytest.mark.parametrize("index", [0, pytest.param(2, marks=pytest.mark.sharding)])
def test_a_device_object_is_accepted(index):
  assert resolve_device(CPUS[index]) == CPUS[index]


@pytest.mark.sharding
@pytest.mark.parametrize("spec, reason", [
    ("tpu", "no 'tpu' backend"), ("gpu:0", "no 'gpu' backend"), ("cuda", "no 'cuda' backend"),
    ("cpu:8", "'cpu' has 8 device(s)"), (99, "has 8 device(s)"), ("cpu:x", "cannot parse"),
    ("bogus", "no 'bogus' backend")])
def test_unknown_device_is_a_value_error_listing_devices(spec, reason):
  with pytest.raises(ValueError) as error:
    resolve_device(spec)
  assert reason in str(error.value)
  assert "available devices: cpu:0, cpu:1, cpu:2, cpu:3, cpu:4, cpu:5, cpu:6, cpu:7" in str(
      error.value)


@pytest.mark.parametrize("spec", [1.5, True, ["cpu"]])
def test_wrong_type_is_a_value_error(spec):
  with pytest.raises(ValueError, match="device must be"):
    resolve_device(spec)


def test_measuring_on_a_missing_device_raises_instead_of_recording_a_failure(tiny, compile_spy):
  with pytest.raises(ValueError, match="available devices: cpu:0"):
    measure_latency(tiny(), device="gpu", seq_len=16)
  assert compile_spy.archs == []


def test_host_cpu_names_model_and_core_count():
  name = host_cpu()
  model, _, cores = name.rpartition(" x")
  assert model and int(cores) >= 1
