"""measure_latency / measure_many: the record, the device, failures, interleaving, noise."""

import dataclasses
import math

import flax
import jax
import jax.numpy as jnp
import pytest

from autodistill.hardware import (FAILED, OK, LatencyResult, MeasurementKey, analytic_flops,
                                  measure_latency, measure_many, measurement_key, within_noise)
from autodistill.hardware import latency
from autodistill.models import BertConfig, StudentConfig, StudentEncoder
from autodistill.models.params import analytic_param_count, count_params


@pytest.mark.sharding  # measures on cpu:3 of the 8 simulated devices
def test_result_has_every_field(tiny, fast):
  config = tiny()
  result = measure_latency(config, device="cpu:3", **fast)
  assert result.status == OK and result.ok and result.error == ""
  missing = [f.name for f in dataclasses.fields(result) if getattr(result, f.name) is None]
  assert missing == []
  # Where and how it was measured.
  assert result.key == measurement_key(config, device="cpu:3", seq_len=16)
  assert (result.arch, result.device, result.device_kind, result.platform) == (
      config.name, "cpu:3", "cpu", "cpu")
  assert (result.jax_version, result.dtype, result.batch_size, result.seq_len, result.heads) == (
      jax.__version__, "float32", 1, 16, False)
  assert result.architecture() == config
  # Timing statistics are consistent with the raw times.
  assert result.runs == len(result.times_ms) >= 3
  assert 0 < result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms <= result.max_ms
  assert math.isclose(result.cv, result.std_ms / result.mean_ms)
  assert math.isclose(result.throughput, 1e3 / result.median_ms)
  assert result.latency_ms == result.median_ms
  # Cost: XLA's FLOPs, the independent analytic count, parameters counted from the model tree.
  assert result.flops_source == "xla"
  assert result.analytic_flops == analytic_flops(config, seq_len=16)
  assert result.analytic_flops <= result.flops <= 1.35 * result.analytic_flops
  abstract = jax.eval_shape(lambda: StudentEncoder(config).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32)))["params"]
  assert result.params == count_params(flax.linen.unbox(abstract))
  assert result.argument_bytes >= 4 * result.params  # parameters are arguments
  assert result.bytes_accessed > 0 and result.compile_s > 0 and result.build_s > 0
  assert result.flops_per_s == pytest.approx(result.flops / (result.median_ms / 1e3))
  # Round trip through plain values (what the cache and the exports store).
  assert LatencyResult.from_dict(result.to_dict()) == result


@pytest.mark.sharding  # cpu:5 of the 8 simulated devices
def test_forward_pass_runs_on_the_requested_device(tiny, monkeypatch):
  seen = []
  original = latency._compile_candidate

  def capture(config, key, settings, seed=0):
    candidate = original(config, key, settings, seed)
    seen.append(candidate.run())
    return candidate

  monkeypatch.setattr(latency, "_compile_candidate", capture)
  measure_latency(tiny(), device="cpu:5", seq_len=16, min_runs=1, min_time_s=0.001)
  hidden, pooled = seen[0]
  assert hidden.devices() == pooled.devices() == {jax.devices("cpu")[5]}
  assert hidden.shape == (1, 16, 64) and pooled.shape == (1, 64)


def test_heads_batch_dtype_and_teacher(tiny, fast):
  config = tiny()
  base = measure_latency(config, **fast)
  heads = measure_latency(config, heads=True, **fast)
  bf16 = measure_latency(config, dtype=jnp.bfloat16, **fast)
  assert heads.ok and heads.heads
  assert heads.params == analytic_param_count(config, heads=True) > base.params
  assert heads.analytic_flops > base.analytic_flops
  assert bf16.ok and bf16.dtype == "bfloat16"
  assert bf16.argument_bytes < 0.6 * base.argument_bytes  # weights stored in bfloat16
  batch = measure_latency(config, batch_size=3, **fast)
  assert batch.ok and batch.analytic_flops == analytic_flops(config, batch_size=3, seq_len=16)
  assert math.isclose(batch.throughput, 3e3 / batch.median_ms)
  teacher = measure_latency(BertConfig(vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                                       intermediate_size=64, max_position_embeddings=64), **fast)
  assert teacher.ok and teacher.arch == "BERT_L2_H32_A2_I64"


def test_names_are_parsed_and_bad_names_raise(compile_spy, fast):
  with pytest.raises(ValueError, match="cannot parse architecture name"):
    measure_many(["Model_512_128_4_512"], **fast)
  with pytest.raises(ValueError, match="architecture is a StudentConfig"):
    measure_many([42], **fast)
  with pytest.raises(ValueError, match="min_runs"):
    measure_latency("Model_128_64_1_384_2", min_runs=0)
  with pytest.raises(ValueError, match="max_runs=5 is smaller than min_runs=20"):
    measure_latency("Model_128_64_1_384_2", max_runs=5)
  with pytest.raises(ValueError, match="unknown dtype"):
    measure_latency("Model_128_64_1_384_2", dtype="float7")
  assert compile_spy.archs == []


def test_latency_grows_with_num_blocks():
  """2 vs 8 otherwise equal blocks: ~4x the block work, asserted with a wide 1.5x margin."""
  config = StudentConfig(hidden_size=128, bottleneck_size=64, num_heads=2, intermediate_size=256,
                         num_ffn=2, num_blocks=2, embedding_size=32, vocab_size=300,
                         max_position_embeddings=64)
  two, eight = measure_many([config, config.replace(num_blocks=8)], seq_len=64, min_runs=15,
                            min_time_s=0.2)
  assert two.ok and eight.ok
  assert eight.median_ms > 1.5 * two.median_ms, (two.median_ms, eight.median_ms)
  assert eight.flops > 3 * two.flops


def test_failures_are_recorded_not_raised(tiny, fast, monkeypatch):
  too_long = tiny(max_position_embeddings=8)  # seq_len 16 has no position embeddings
  too_big = tiny(vocab_size=10**12)  # 64 TB of embeddings: refused before allocating
  crashing = tiny(num_ffn=3)
  original = latency._compile_candidate

  def run_fails(config, key, settings, seed=0):
    candidate = original(config, key, settings, seed)
    if config == crashing:
      def boom():
        raise RuntimeError("RESOURCE_EXHAUSTED: simulated device OOM")
      return dataclasses.replace(candidate, run=boom)
    return candidate

  monkeypatch.setattr(latency, "_compile_candidate", run_fails)
  results = measure_many([too_long, tiny(), too_big, crashing], **fast)
  assert [r.status for r in results] == [FAILED, OK, FAILED, FAILED]
  assert results[0].error.startswith("build: ValueError: seq_len=16 exceeds")
  assert results[2].error.startswith("memory: MemoryError: out of memory")
  assert results[3].error == "warmup: RuntimeError: RESOURCE_EXHAUSTED: simulated device OOM"
  for failed in (results[0], results[2], results[3]):
    assert failed.median_ms is None and failed.runs == 0 and failed.times_ms == ()
    assert failed.key.arch == failed.arch and failed.measured_at
  assert results[3].compile_s > 0  # what was learnt before the failure is kept


def test_compile_failure_is_recorded(tiny, fast, monkeypatch):
  original = latency._forward

  def forward(module, heads):
    if module.config.num_ffn == 3:
      def broken(*args):
        raise TypeError("cannot trace this")
      return broken
    return original(module, heads)

  monkeypatch.setattr(latency, "_forward", forward)
  bad, good = measure_many([tiny(num_ffn=3), tiny()], **fast)
  assert bad.status == FAILED and bad.error == "compile: TypeError: cannot trace this"
  assert good.ok


def test_timed_calls_are_interleaved_round_robin(tiny, monkeypatch):
  calls = []
  original = latency._compile_candidate

  def logging(config, key, settings, seed=0):
    candidate = original(config, key, settings, seed)
    inner = candidate.run

    def run():
      calls.append(key.arch)
      return inner()
    return dataclasses.replace(candidate, run=run)

  monkeypatch.setattr(latency, "_compile_candidate", logging)
  configs = [tiny(num_ffn=n) for n in (1, 2, 3)]
  measure_many(configs, seq_len=16, warmup=0, min_runs=4, min_time_s=1e-9)
  names = {c.name for c in configs}
  assert len(calls) == 12
  rounds = [calls[i:i + 3] for i in range(0, 12, 3)]
  assert all(set(r) == names for r in rounds), rounds
  assert len({tuple(r) for r in rounds}) > 1  # the order is reshuffled between rounds


def _result(median, std, **changes):
  key = MeasurementKey(arch="Model_512_128_4_512_4", config="{}", device_kind="cpu",
                       platform="cpu", host_cpu="x x2", jax_version="0", dtype="float32",
                       batch_size=1, seq_len=128, heads=False)
  values = dict(dataclasses.asdict(key), status=OK, median_ms=median, mean_ms=median,
                std_ms=std, cv=std / median if median else None)
  return LatencyResult(**{**values, **changes})


def test_within_noise_rule():
  a = _result(10.0, 0.5)
  assert within_noise(a, _result(10.9, 0.2))  # 0.9 <= 2 * 0.5
  assert not within_noise(a, _result(11.2, 0.2))  # 1.2 > 2 * 0.5
  assert within_noise(a, _result(11.2, 0.2), k=3.0)
  assert within_noise(a, _result(12.0, 1.1))  # the noisier one sets the scale
  with pytest.raises(ValueError, match="failed"):
    within_noise(a, _result(None, None, status=FAILED, error="boom"))
  with pytest.raises(ValueError, match="not comparable"):
    within_noise(a, _result(10.0, 0.5, seq_len=64))


def test_measured_twins_are_within_noise(tiny, fast):
  # Same model twice: only noise separates them, so the library's own tie rule (default
  # k = NOISE_K = 2 standard deviations of the noisier twin) must call them equal. With 30
  # interleaved calls each, a median's standard error is about 0.23 std, so 2 std is about 6
  # standard errors of the difference of the medians. Load inflates the std at least as much as
  # it moves the medians: on 2 cores at load average 5-7, 40 repetitions of this measurement
  # needed at most k = 1.15 (at 10 calls each and load 8-9: 1.5). A fixed relative bound would
  # not hold there: the twins' medians differed several-fold.
  first, second = measure_many([tiny(), tiny()], **{**fast, "min_runs": 30})
  assert first.runs >= 30 and second.runs >= 30
  assert within_noise(first, second)
