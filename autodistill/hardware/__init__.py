"""Hardware evaluation (paper section 3.4): batch-1 latency and cost of students on a device.

* :func:`measure_latency` / :func:`measure_many`: compile a student's serving forward pass for
  one JAX device and time it (median, mean, p10/p90, std, CV), with throughput, FLOPs, bytes
  accessed, memory and parameter counts; failures are results with ``status="failed"``.
* :func:`within_noise`: whether two candidates' latencies differ by more than their noise.
* :class:`LatencyCache` and :func:`measure_space`: a resumable SQLite cache of measurements and
  a sweep that fills it for a whole design space; :func:`latency_command` prints as it goes.
"""

from autodistill.hardware.cache import CACHE_FILENAME, LatencyCache, LatencySettings, write_results
from autodistill.hardware.devices import available_devices, host_cpu, resolve_device
from autodistill.hardware.flops import analytic_flops
from autodistill.hardware.latency import (
    FAILED,
    OK,
    LatencyResult,
    MeasurementKey,
    measure_latency,
    measure_many,
    measurement_key,
    resolve_architecture,
    within_noise,
)
from autodistill.hardware.sweep import latency_command, measure_space, summarize
