"""Batch-1 inference latency and cost of a student on the target device (paper section 3.4).

"Each model is measured with multiple runs for forward propagation. In each run, the hardware
traces are collected, which include inference latency, throughput, accelerator FLOPS
utilization, as well as memory capacity and bandwidth utilization." This module does that for
one JAX device:

* **What is timed.** The serving forward pass: the student encoder (embeddings, blocks, pooler;
  no MLM/NSP heads unless ``heads=True``) on ``input_ids``/``token_type_ids``/``attention_mask``
  of shape [batch_size, seq_len], ``deterministic=True``, returning the last hidden state and the
  pooled output (what a fine-tuned model reads; the per-block hidden states and attention maps
  are not outputs, so XLA does not materialise them). Parameters and inputs live on the device
  before timing; a call is the compiled executable's dispatch plus execution, ended by
  ``block_until_ready``. Weights are random (latency does not depend on their values): abstract
  shapes from ``jax.eval_shape``, filled on the host, then ``jax.device_put``.
* **How it is timed.** Ahead-of-time compilation (``jax.jit(f).lower(...).compile()``, its time
  reported separately), ``warmup`` untimed calls, then timed calls until both ``min_runs`` and
  ``min_time_s`` are reached (at most ``max_runs``), with Python's garbage collector paused.
  Several candidates are timed round-robin (:func:`measure_many`), so slow drifts of the host
  (other jobs, clocks) spread over all of them instead of favouring whichever ran first.
* **What is recorded.** Median/mean/p10/p90/min/max/std of the per-call latency in ms, the
  coefficient of variation, throughput, FLOPs and bytes accessed from XLA's cost analysis (with
  the analytic FLOP count of :mod:`autodistill.hardware.flops` as fallback), XLA's memory
  analysis, the parameter count, and where it ran (device kind, platform, host CPU, JAX version,
  dtype, shape). The paper optimises the *average* latency; :attr:`LatencyResult.latency_ms` is
  the median, which equals it on a quiet accelerator and ignores the preemption outliers of a
  shared host. Both are recorded.
* **Faults.** An architecture that cannot be built, compiled or run (including running out of
  memory) gives a result with ``status="failed"`` and the reason in ``error``; it never raises.
  Bad arguments (an unknown device, a malformed architecture name) raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import os
import time
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import flax
import jax
import jax.numpy as jnp
import numpy as np

from autodistill.hardware import devices
from autodistill.hardware.flops import analytic_flops
from autodistill.models.configs import BertConfig, StudentConfig
from autodistill.models.params import analytic_param_count, count_params
from autodistill.models.student import StudentEncoder, StudentForPreTraining
from autodistill.models.teacher import BertEncoder, BertForPreTraining

Architecture = Union[str, StudentConfig, BertConfig]
DtypeLike = Any

OK, FAILED = "ok", "failed"

# Default timing policy: enough calls for a stable median on a 2-core CPU, while a 576-student
# sweep of sub-millisecond accelerator latencies stays bounded by max_runs.
WARMUP, MIN_RUNS, MIN_TIME_S, MAX_RUNS = 3, 20, 0.5, 2000

# within_noise calls two latencies a tie when their medians differ by at most this many standard
# deviations (the larger of the two).
NOISE_K = 2.0

_MAX_ERROR_CHARS = 2000


@dataclasses.dataclass(frozen=True)
class MeasurementKey:
  """What identifies a latency measurement: the architecture and where/how it was measured.

  Attributes:
    arch: the architecture's name (``StudentConfig.name``, e.g. ``Model_512_128_4_512_4``).
    config: the full architecture as canonical JSON (names omit vocabulary/table sizes).
    device_kind: ``jax.Device.device_kind`` (e.g. ``"TPU v4"``, ``"NVIDIA H100"``, ``"cpu"``).
    platform: the backend (``"cpu"``, ``"gpu"``, ``"tpu"``).
    host_cpu: host processor model and usable cores (see :func:`devices.host_cpu`).
    jax_version: ``jax.__version__``.
    dtype: compute and parameter dtype name (``"float32"``, ``"bfloat16"``).
    batch_size, seq_len: the input shape.
    heads: whether the MLM/NSP heads were part of the forward pass.
  """

  arch: str
  config: str
  device_kind: str
  platform: str
  host_cpu: str
  jax_version: str
  dtype: str
  batch_size: int
  seq_len: int
  heads: bool


KEY_FIELDS = tuple(f.name for f in dataclasses.fields(MeasurementKey))


@dataclasses.dataclass(frozen=True)
class LatencyResult:
  """One architecture's measured latency and cost on one device (paper section 3.4).

  The first fields are the :class:`MeasurementKey`. Timing fields are None, and ``runs`` is 0,
  when ``status`` is ``"failed"``; ``error`` then says why.

  Attributes:
    status: ``"ok"`` or ``"failed"``.
    error: why the measurement failed (stage and exception), else ``""``.
    median_ms, mean_ms, p10_ms, p90_ms, min_ms, max_ms, std_ms: per-call latency statistics.
    cv: coefficient of variation of the per-call latency, ``std_ms / mean_ms``.
    runs: number of timed calls; ``times_ms`` holds each one, in order.
    throughput: sequences per second at ``batch_size``, from the median latency.
    flops: FLOPs of one call, from XLA's cost analysis (``flops_source="xla"``) or, when that is
      unavailable, the analytic count (``flops_source="analytic"``).
    analytic_flops: the analytic count (:func:`autodistill.hardware.flops.analytic_flops`).
    bytes_accessed, transcendentals: XLA's cost analysis, when available.
    argument_bytes, output_bytes, temp_bytes, generated_code_bytes: XLA's memory analysis of the
      compiled forward pass, when available (parameters are arguments).
    params: parameters of the measured model (without heads unless ``heads``), counted from its
      parameter tree.
    build_s: seconds to create the abstract model and put random weights on the device.
    compile_s: seconds to trace, lower and compile the forward pass (small on a hit in JAX's
      persistent compilation cache, when that is enabled).
    device: which device of this process (``"cpu:3"``); ``platform_version``: the backend's
      runtime version string.
    warmup, min_runs, min_time_s, max_runs: the timing policy used.
    xla_flags: the ``XLA_FLAGS`` environment variable at measurement time.
    load_avg: the host's 1-minute load average before timing (context for noisy hosts).
    other_load: CPU cores' worth of time that *other* processes used while the calls were timed
      (``/proc/stat`` minus this process, over the timing's wall time; Linux only, else None).
      Unlike the load average it covers exactly the timed interval, so it says whether another
      job (a second search worker, a distillation) shared the host while this row was measured.
    measured_at: UTC time of the measurement, ISO 8601.
  """

  arch: str
  config: str
  device_kind: str
  platform: str
  host_cpu: str
  jax_version: str
  dtype: str
  batch_size: int
  seq_len: int
  heads: bool
  status: str
  error: str = ""
  median_ms: Optional[float] = None
  mean_ms: Optional[float] = None
  p10_ms: Optional[float] = None
  p90_ms: Optional[float] = None
  min_ms: Optional[float] = None
  max_ms: Optional[float] = None
  std_ms: Optional[float] = None
  cv: Optional[float] = None
  runs: int = 0
  times_ms: tuple[float, ...] = ()
  throughput: Optional[float] = None
  flops: Optional[float] = None
  flops_source: str = ""
  analytic_flops: Optional[float] = None
  bytes_accessed: Optional[float] = None
  transcendentals: Optional[float] = None
  argument_bytes: Optional[int] = None
  output_bytes: Optional[int] = None
  temp_bytes: Optional[int] = None
  generated_code_bytes: Optional[int] = None
  params: Optional[int] = None
  build_s: Optional[float] = None
  compile_s: Optional[float] = None
  device: str = ""
  platform_version: str = ""
  warmup: int = WARMUP
  min_runs: int = MIN_RUNS
  min_time_s: float = MIN_TIME_S
  max_runs: int = MAX_RUNS
  xla_flags: str = ""
  load_avg: Optional[float] = None
  other_load: Optional[float] = None
  measured_at: str = ""

  @property
  def ok(self) -> bool:
    return self.status == OK

  @property
  def latency_ms(self) -> Optional[float]:
    """The latency objective: the median per-call latency in milliseconds."""
    return self.median_ms

  @property
  def flops_per_s(self) -> Optional[float]:
    """Achieved FLOP rate at the median latency (divide by the device's peak for utilisation)."""
    if not self.ok or not self.flops or not self.median_ms:
      return None
    return self.flops / (self.median_ms / 1e3)

  @property
  def key(self) -> MeasurementKey:
    return MeasurementKey(**{f: getattr(self, f) for f in KEY_FIELDS})

  def architecture(self) -> StudentConfig | BertConfig:
    """The measured architecture, rebuilt from :attr:`config`."""
    return config_from_json(self.config)

  def to_dict(self) -> dict[str, Any]:
    """Plain JSON-able values (``times_ms`` as a list)."""
    out = dataclasses.asdict(self)
    out["times_ms"] = list(self.times_ms)
    return out

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "LatencyResult":
    """Inverse of :meth:`to_dict`; unknown keys (from a newer version) are ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k in known}
    values["times_ms"] = tuple(values.get("times_ms") or ())
    values["heads"] = bool(values.get("heads", False))
    return cls(**values)


# ---------------------------------------------------------------------------------------------
# Architectures and keys


def resolve_architecture(arch: Architecture) -> StudentConfig | BertConfig:
  """A ``StudentConfig``/``BertConfig`` as is; a string is parsed with ``StudentConfig.from_name``.

  Raises:
    ValueError: a malformed architecture name, or an unsupported type.
  """
  if isinstance(arch, (StudentConfig, BertConfig)):
    return arch
  if isinstance(arch, str):
    return StudentConfig.from_name(arch)
  raise ValueError(f"an architecture is a StudentConfig, a BertConfig or a name like "
                   f"'Model_512_128_4_512_4'; got {arch!r}.")


def architecture_name(config: StudentConfig | BertConfig) -> str:
  """The paper's name for a student; ``BERT_L<layers>_H<hidden>_A<heads>_I<inner>`` for BERT."""
  if isinstance(config, StudentConfig):
    return config.name
  return (f"BERT_L{config.num_layers}_H{config.hidden_size}_A{config.num_heads}"
          f"_I{config.intermediate_size}")


def config_to_json(config: StudentConfig | BertConfig) -> str:
  return json.dumps({"type": type(config).__name__, **config.to_dict()}, sort_keys=True)


def config_from_json(text: str) -> StudentConfig | BertConfig:
  values = json.loads(text)
  kind = values.pop("type")
  types = {"StudentConfig": StudentConfig, "BertConfig": BertConfig}
  if kind not in types:
    raise ValueError(f"unknown architecture type {kind!r} in {text!r}.")
  return types[kind].from_dict(values)


def dtype_name(dtype: DtypeLike) -> str:
  try:
    return jnp.dtype(dtype).name
  except TypeError as e:
    raise ValueError(f"unknown dtype {dtype!r}: {e}") from None


def measurement_key(arch: Architecture, *, device: devices.DeviceLike = None, batch_size: int = 1,
                    seq_len: int = 128, dtype: DtypeLike = jnp.float32,
                    heads: bool = False) -> MeasurementKey:
  """The key a measurement of ``arch`` with these settings gets on ``device`` (and in a cache)."""
  config = resolve_architecture(arch)
  device = devices.resolve_device(device)
  return MeasurementKey(
      arch=architecture_name(config), config=config_to_json(config),
      device_kind=str(device.device_kind), platform=device.platform,
      host_cpu=devices.host_cpu(), jax_version=jax.__version__, dtype=dtype_name(dtype),
      batch_size=int(batch_size), seq_len=int(seq_len), heads=bool(heads))


# ---------------------------------------------------------------------------------------------
# Building and compiling one candidate


@dataclasses.dataclass(frozen=True)
class _Settings:
  device: jax.Device
  batch_size: int
  seq_len: int
  dtype: Any
  heads: bool
  warmup: int
  min_runs: int
  min_time_s: float
  max_runs: int


@dataclasses.dataclass(frozen=True)
class _Candidate:
  """A compiled forward pass ready to time; ``run`` launches one call."""

  key: MeasurementKey
  config: StudentConfig | BertConfig
  run: Callable[[], Any]
  build_s: float
  compile_s: float
  cost: dict[str, Optional[float]]
  memory: dict[str, Optional[int]]
  params: int


class _StageError(Exception):
  """An exception tagged with the measurement stage it came from."""

  def __init__(self, stage: str, error: BaseException):
    super().__init__(stage, error)
    self.stage, self.error = stage, error

  def __str__(self) -> str:
    return _describe(self.stage, self.error)


def _describe(stage: str, error: BaseException) -> str:
  text = f"{stage}: {type(error).__name__}: {error}".strip()
  return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + " ..."


def _serving_module(config: StudentConfig | BertConfig, dtype: Any, heads: bool):
  # Serving weights are stored in the serving precision, so param_dtype follows dtype.
  kwargs = dict(dtype=dtype, param_dtype=dtype)
  if isinstance(config, StudentConfig):
    return (StudentForPreTraining if heads else StudentEncoder)(config, **kwargs)
  return (BertForPreTraining if heads else BertEncoder)(config, **kwargs)


def _forward(module, heads: bool):
  def forward(params, input_ids, token_type_ids, attention_mask):
    out = module.apply({"params": params}, input_ids, token_type_ids, attention_mask,
                       deterministic=True)
    if heads:
      return out.mlm_logits, out.nsp_logits
    return out.last_hidden_state, out.pooled_output
  return forward


def _memory_limit(device: jax.Device) -> Optional[int]:
  """Bytes the device can hold: its allocator limit, or the host's RAM for a CPU device."""
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    stats = {}
  if stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  if device.platform == "cpu" and hasattr(os, "sysconf"):
    try:
      return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
      return None
  return None


def _random_params(abstract: Any, seed: int) -> Any:
  """Host arrays shaped like ``abstract``: N(0, 0.02) weights, zero biases, unit scales.

  Realistic magnitudes (rather than all zeros) keep activations in the normal floating-point
  range, so no denormal slow paths distort the timing.
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    dtype = np.dtype(leaf.dtype)
    if name == "scale":
      return np.ones(leaf.shape, dtype)
    if name == "bias":
      return np.zeros(leaf.shape, dtype)
    return (rng.standard_normal(leaf.shape, dtype=np.float32) * 0.02).astype(dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _cost_analysis(compiled) -> dict[str, Optional[float]]:
  """FLOPs, bytes accessed and transcendentals from XLA; {} where the backend gives nothing.

  ``cost_analysis()`` returns a dict in current JAX and a list with one dict per executable in
  older versions (we read the first); some backends return None or raise.
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # unimplemented on some backends
    return {}
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not isinstance(analysis, dict):
    return {}

  def number(name: str) -> Optional[float]:
    value = analysis.get(name)
    return float(value) if value is not None and value >= 0 else None

  return {"flops": number("flops"), "bytes_accessed": number("bytes accessed"),
          "transcendentals": number("transcendentals")}


def _memory_analysis(compiled) -> dict[str, Optional[int]]:
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # unimplemented on some backends
    stats = None
  fields = {"argument_bytes": "argument_size_in_bytes", "output_bytes": "output_size_in_bytes",
            "temp_bytes": "temp_size_in_bytes",
            "generated_code_bytes": "generated_code_size_in_bytes"}
  out = {}
  for ours, theirs in fields.items():
    value = getattr(stats, theirs, None) if stats is not None else None
    out[ours] = int(value) if value is not None else None
  return out


def _compile_candidate(config: StudentConfig | BertConfig, key: MeasurementKey,
                       settings: _Settings, seed: int = 0) -> _Candidate:
  """Builds random weights on the device and compiles the serving forward pass.

  Raises:
    _StageError: tagged "build", "compile" or "memory".
  """
  s = settings
  module = _serving_module(config, s.dtype, s.heads)
  shape = (s.batch_size, s.seq_len)
  stage = "build"
  try:
    start = time.perf_counter()
    max_positions = config.max_sequence_length
    if s.seq_len > max_positions:
      raise ValueError(f"seq_len={s.seq_len} exceeds the model's {max_positions} positions.")
    # Refuse what cannot fit before allocating anything (an absurd size fails fast and cleanly).
    need = analytic_param_count(config, heads=s.heads) * jnp.dtype(s.dtype).itemsize
    limit = _memory_limit(s.device)
    if limit is not None and need > limit:
      stage = "memory"
      raise MemoryError(f"out of memory: the parameters alone need {need / 2**30:.1f} GiB and "
                        f"{devices.device_label(s.device)} holds {limit / 2**30:.1f} GiB.")
    ids_spec = jax.ShapeDtypeStruct(shape, jnp.int32)
    abstract = jax.eval_shape(  # shapes only: nothing is allocated or initialised
        lambda ids: module.init(jax.random.PRNGKey(0), ids, ids, ids), ids_spec)["params"]
    abstract = flax.linen.unbox(abstract)
    num_params = count_params(abstract)
    params = jax.device_put(_random_params(abstract, seed), s.device)
    rng = np.random.default_rng(seed)
    inputs = jax.device_put(
        (rng.integers(0, config.vocab_size, shape, dtype=np.int32),
         np.zeros(shape, np.int32), np.ones(shape, np.int32)), s.device)
    jax.block_until_ready((params, inputs))
    build_s = time.perf_counter() - start

    stage = "compile"
    start = time.perf_counter()
    compiled = jax.jit(_forward(module, s.heads)).lower(params, *inputs).compile()
    compile_s = time.perf_counter() - start
  except Exception as e:  # pylint: disable=broad-except  # any failure is a failed measurement
    raise _StageError(stage, e) from e

  return _Candidate(
      key=key, config=config, run=lambda: compiled(params, *inputs), build_s=build_s,
      compile_s=compile_s, cost=_cost_analysis(compiled), memory=_memory_analysis(compiled),
      params=num_params)


# ---------------------------------------------------------------------------------------------
# Timing


def _summary(times_s: Sequence[float]) -> dict[str, Any]:
  ms = np.asarray(times_s, dtype=np.float64) * 1e3
  mean = float(ms.mean())
  std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
  p10, median, p90 = (float(v) for v in np.percentile(ms, [10, 50, 90]))
  return dict(median_ms=median, mean_ms=mean, p10_ms=p10, p90_ms=p90, min_ms=float(ms.min()),
              max_ms=float(ms.max()), std_ms=std, cv=std / mean if mean > 0 else None,
              runs=int(ms.size), times_ms=tuple(round(float(t), 6) for t in ms))


def _time_round_robin(candidates: Sequence[_Candidate], settings: _Settings,
                      seed: int) -> tuple[list[list[float]], list[Optional[str]]]:
  """Times the candidates in rounds, one call of each per round, in a shuffled order.

  A candidate leaves the rotation once it has ``min_runs`` calls totalling ``min_time_s``
  (or ``max_runs`` calls), or when a call fails. Returns per-candidate times (seconds) and
  per-candidate error strings (None when fine).
  """
  s = settings
  times: list[list[float]] = [[] for _ in candidates]
  errors: list[Optional[str]] = [None] * len(candidates)
  for i, candidate in enumerate(candidates):
    try:
      for _ in range(s.warmup):
        jax.block_until_ready(candidate.run())
    except Exception as e:  # pylint: disable=broad-except
      errors[i] = _describe("warmup", e)
  active = [i for i, error in enumerate(errors) if error is None]
  spent = [0.0] * len(candidates)
  order_rng = np.random.default_rng(seed)
  gc.collect()
  gc_was_enabled = gc.isenabled()
  gc.disable()  # a collection inside a timed call is host noise, not model latency
  try:
    while active:
      for i in (int(j) for j in order_rng.permutation(active)):
        run = candidates[i].run
        try:
          start = time.perf_counter()
          jax.block_until_ready(run())
          elapsed = time.perf_counter() - start
        except Exception as e:  # pylint: disable=broad-except
          errors[i] = _describe("run", e)
          active.remove(i)
          continue
        times[i].append(elapsed)
        spent[i] += elapsed
        done = len(times[i]) >= s.min_runs and spent[i] >= s.min_time_s
        if done or len(times[i]) >= s.max_runs:
          active.remove(i)
  finally:
    if gc_was_enabled:
      gc.enable()
  return times, errors


def _context(settings: _Settings) -> dict[str, Any]:
  s = settings
  try:
    platform_version = str(s.device.client.platform_version)
  except Exception:  # pylint: disable=broad-except
    platform_version = ""
  return dict(
      device=devices.device_label(s.device), platform_version=platform_version,
      warmup=s.warmup, min_runs=s.min_runs, min_time_s=s.min_time_s, max_runs=s.max_runs,
      xla_flags=os.environ.get("XLA_FLAGS", ""),
      load_avg=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
      measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _cpu_ticks() -> Optional[tuple[float, float, float]]:
  """(wall seconds, busy clock ticks of the whole host, clock ticks of this process), or None
  where ``/proc`` is not readable."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
    with open("/proc/self/stat", encoding="ascii") as f:
      own = f.read().rsplit(")", 1)[1].split()
  except (OSError, ValueError, IndexError):
    return None
  # user nice system idle iowait irq softirq steal ...: busy is everything but idle and iowait.
  busy = sum(fields[:3]) + sum(fields[5:8])
  return time.perf_counter(), float(busy), float(int(own[11]) + int(own[12]))  # utime + stime


def _other_load(before: Optional[tuple[float, float, float]],
                after: Optional[tuple[float, float, float]]) -> Optional[float]:
  """Cores' worth of CPU other processes used between two :func:`_cpu_ticks` readings."""
  if before is None or after is None or after[0] <= before[0]:
    return None
  ticks_per_s = os.sysconf("SC_CLK_TCK")
  other = (after[1] - before[1]) - (after[2] - before[2])
  return round(max(other, 0.0) / ticks_per_s / (after[0] - before[0]), 3)


def _failed(key: MeasurementKey, error: str, context: dict[str, Any],
            candidate: Optional[_Candidate] = None) -> LatencyResult:
  extra = {}
  if candidate is not None:
    extra = dict(params=candidate.params, build_s=candidate.build_s,
                 compile_s=candidate.compile_s, **candidate.memory)
  return LatencyResult(**dataclasses.asdict(key), status=FAILED, error=error, **extra, **context)


def _succeeded(candidate: _Candidate, times_s: Sequence[float], settings: _Settings,
               context: dict[str, Any]) -> LatencyResult:
  stats = _summary(times_s)
  analytic = float(analytic_flops(candidate.config, batch_size=settings.batch_size,
                                  seq_len=settings.seq_len, heads=settings.heads))
  xla_flops = candidate.cost.get("flops")
  return LatencyResult(
      **dataclasses.asdict(candidate.key), status=OK, **stats,
      throughput=settings.batch_size / (stats["median_ms"] / 1e3),
      flops=xla_flops if xla_flops else analytic,
      flops_source="xla" if xla_flops else "analytic", analytic_flops=analytic,
      bytes_accessed=candidate.cost.get("bytes_accessed"),
      transcendentals=candidate.cost.get("transcendentals"), **candidate.memory,
      params=candidate.params, build_s=candidate.build_s, compile_s=candidate.compile_s,
      **context)


def _check_positive(**values: Any) -> None:
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
      raise ValueError(f"{name} must be a positive number, got {value!r}.")


def measure_many(archs: Iterable[Architecture], *, batch_size: int = 1, seq_len: int = 128,
                 device: devices.DeviceLike = None, dtype: DtypeLike = jnp.float32,
                 heads: bool = False, warmup: int = WARMUP, min_runs: int = MIN_RUNS,
                 min_time_s: float = MIN_TIME_S, max_runs: int = MAX_RUNS,
                 seed: int = 0) -> list[LatencyResult]:
  """Measures several architectures together, interleaving their timed calls (section 3.4).

  All candidates are built and compiled first; then every candidate is warmed up and timed
  round-robin (one call each per round, in a freshly shuffled order), so load changes on the
  host affect all of them alike. All compiled candidates are held in device memory at once:
  pass a handful at a time (:func:`autodistill.hardware.measure_space` does).

  Args:
    archs: architectures (``StudentConfig``, ``BertConfig`` or names such as
      ``"Model_512_128_4_512_4"``).
    batch_size, seq_len: the input shape (paper: batch 1; we default to length 128).
    device: see :func:`autodistill.hardware.devices.resolve_device`.
    dtype: compute and parameter dtype.
    heads: time the pre-training model with MLM/NSP heads instead of the serving encoder.
    warmup: untimed calls per candidate after compilation.
    min_runs, min_time_s, max_runs: each candidate is called until it has at least ``min_runs``
      calls and ``min_time_s`` seconds of timed calls, or ``max_runs`` calls.
    seed: seeds the random weights, inputs and the round order.

  Returns:
    One :class:`LatencyResult` per architecture, in order. Failures are results with
    ``status="failed"``.

  Raises:
    ValueError: an unknown device, a malformed architecture name or invalid settings.
  """
  _check_positive(batch_size=batch_size, seq_len=seq_len, min_runs=min_runs,
                  min_time_s=min_time_s, max_runs=max_runs)
  if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
    raise ValueError(f"warmup must be a non-negative int, got {warmup!r}.")
  if max_runs < min_runs:
    raise ValueError(f"max_runs={max_runs} is smaller than min_runs={min_runs}.")
  device = devices.resolve_device(device)
  configs = [resolve_architecture(a) for a in archs]
  settings = _Settings(device=device, batch_size=int(batch_size), seq_len=int(seq_len),
                       dtype=jnp.dtype(dtype_name(dtype)), heads=bool(heads), warmup=warmup,
                       min_runs=int(min_runs), min_time_s=float(min_time_s),
                       max_runs=int(max_runs))
  keys = [measurement_key(c, device=device, batch_size=batch_size, seq_len=seq_len, dtype=dtype,
                          heads=heads) for c in configs]
  results: list[Optional[LatencyResult]] = [None] * len(configs)
  candidates: list[_Candidate] = []
  slots: list[int] = []
  for i, (config, key) in enumerate(zip(configs, keys)):
    try:
      candidates.append(_compile_candidate(config, key, settings, seed))
      slots.append(i)
    except _StageError as e:
      results[i] = _failed(key, str(e), _context(settings))
  before = _cpu_ticks()
  times, errors = _time_round_robin(candidates, settings, seed)
  context = dict(_context(settings), other_load=_other_load(before, _cpu_ticks()))
  for slot, candidate, candidate_times, error in zip(slots, candidates, times, errors):
    if error is not None:
      results[slot] = _failed(candidate.key, error, context, candidate)
    else:
      results[slot] = _succeeded(candidate, candidate_times, settings, context)
  return results


def measure_latency(arch: Architecture, *, batch_size: int = 1, seq_len: int = 128,
                    device: devices.DeviceLike = None, dtype: DtypeLike = jnp.float32,
                    heads: bool = False, warmup: int = WARMUP, min_runs: int = MIN_RUNS,
                    min_time_s: float = MIN_TIME_S, max_runs: int = MAX_RUNS,
                    seed: int = 0) -> LatencyResult:
  """Batch-``batch_size`` inference latency and cost of one architecture (paper section 3.4).

  See :func:`measure_many` for the arguments and the module docstring for what is timed.
  A build, compile or run failure (e.g. out of memory) is returned as ``status="failed"``.

  Example::

    result = measure_latency("Model_512_128_1_384_4", device="cpu")
    result.median_ms, result.cv, result.flops
  """
  return measure_many([arch], batch_size=batch_size, seq_len=seq_len, device=device,
                      dtype=dtype, heads=heads, warmup=warmup, min_runs=min_runs,
                      min_time_s=min_time_s, max_runs=max_runs, seed=seed)[0]


def contended(result: LatencyResult, max_other_load: Optional[float]) -> bool:
  """True when ``result`` was timed while other processes used more than ``max_other_load``
  cores (see ``LatencyResult.other_load``); never when either is unknown or the limit is
  negative (off)."""
  return (max_other_load is not None and max_other_load >= 0 and result.ok
          and result.other_load is not None and result.other_load > max_other_load)


def less_contended(a: Optional[LatencyResult], b: LatencyResult) -> LatencyResult:
  """Of two measurements of one key, the one to keep: a successful one over a failure, then the
  one timed with less other load (``b``, the newer, on a tie or when a load is unknown)."""
  if a is None or not a.ok:
    return b
  if not b.ok:
    return a
  if a.other_load is not None and b.other_load is not None and a.other_load < b.other_load:
    return a
  return b


def within_noise(a: LatencyResult, b: LatencyResult, *, k: float = NOISE_K) -> bool:
  """True when two latencies are indistinguishable given their measured noise.

  Rule: ``|median_a - median_b| <= k * max(std_a, std_b)`` (default k = 2), i.e. the medians
  differ by no more than k run-to-run standard deviations of the noisier measurement. It is a
  practical tie rule for ranking candidates, not a significance test; results from different
  devices or shapes are not comparable at all.

  Raises:
    ValueError: either result failed, or they were measured under different keys' settings
      (device kind, platform, host, dtype, batch size, sequence length, heads).
  """
  for result in (a, b):
    if not result.ok:
      raise ValueError(f"{result.arch}: cannot compare a failed measurement ({result.error}).")
  context = ("device_kind", "platform", "host_cpu", "dtype", "batch_size", "seq_len", "heads")
  differ = [f for f in context if getattr(a, f) != getattr(b, f)]
  if differ:
    raise ValueError(f"{a.arch} and {b.arch} were measured under different {differ}; their "
                     "latencies are not comparable.")
  return abs(a.median_ms - b.median_ms) <= k * max(a.std_ms, b.std_ms)
