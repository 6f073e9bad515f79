"""measure_space / latency_command: cached results are reused, killed sweeps resume, failures
are recorded (and retried only on request)."""

import dataclasses
import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from autodistill.hardware import (FAILED, OK, LatencyCache, LatencyResult, latency_command,
                                  measure_space, measurement_key)
from autodistill.hardware import latency
from autodistill.models import StudentConfig

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_cached_results_are_not_measured_again(tmp_path, tiny, fast, compile_spy):
  a, b = tiny(num_ffn=1), tiny(num_ffn=2)
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    first = measure_space([a, b, a], cache, progress=False, **fast)
    assert compile_spy.archs == [a.name, b.name]  # the duplicate is measured once
    assert first[0] == first[2] and all(r.ok for r in first)
    compile_spy.clear()
    again = measure_space([b, a], cache, progress=False, **fast)
    assert compile_spy.archs == [] and again == [first[1], first[0]]
    # Another shape, dtype or device kind is another measurement.
    longer = measure_space([a], cache, progress=False, **{**fast, "seq_len": 32})
    assert compile_spy.archs == [a.name] and longer[0].seq_len == 32
    compile_spy.clear()
    measure_space([a], cache, progress=False, dtype="bfloat16", **fast)
    assert compile_spy.archs == [a.name]
    assert len(cache) == 4


def test_failed_architectures_are_cached_and_retried_on_request(tmp_path, tiny, fast,
                                                                 compile_spy):
  good, bad, other = tiny(num_ffn=1), tiny(max_position_embeddings=8), tiny(num_ffn=3)
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    results = measure_space([good, bad, other], cache, progress=False, interleave=2, **fast)
    assert [r.status for r in results] == [OK, FAILED, OK]  # the sweep went on past it
    assert "exceeds the model's 8 positions" in results[1].error
    assert cache.get(results[1].key).status == FAILED
    compile_spy.clear()
    measure_space([good, bad, other], cache, progress=False, **fast)
    assert compile_spy.archs == []  # not retried endlessly
    retried = measure_space([good, bad, other], cache, progress=False, retry_failed=True, **fast)
    assert compile_spy.archs == [bad.name] and retried[1].status == FAILED


def test_interrupted_sweep_resumes_with_only_the_missing(tmp_path, tiny, fast, monkeypatch,
                                                         compile_spy):
  configs = [tiny(num_ffn=n) for n in range(1, 6)]
  calls = itertools.count()
  counting = latency._compile_candidate

  def interrupted(config, key, settings, seed=0):
    if next(calls) == 2:
      raise KeyboardInterrupt  # what Ctrl-C (or a kill) does halfway through
    return counting(config, key, settings, seed)

  monkeypatch.setattr(latency, "_compile_candidate", interrupted)
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    with pytest.raises(KeyboardInterrupt):
      measure_space(configs, cache, progress=False, interleave=1, **fast)
    assert len(cache) == 2
  monkeypatch.setattr(latency, "_compile_candidate", counting)
  compile_spy.clear()
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    results = measure_space(configs, cache, progress=False, interleave=1, **fast)
  assert compile_spy.archs == [c.name for c in configs[2:]]
  assert [r.arch for r in results] == [c.name for c in configs] and all(r.ok for r in results)


_SWEEP = textwrap.dedent("""
    import sys
    from autodistill.hardware import LatencyCache, measure_space
    from autodistill.models import StudentConfig
    configs = [StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2,
                             intermediate_size=48, num_ffn=n, num_blocks=2, embedding_size=16,
                             vocab_size=300, max_position_embeddings=64) for n in range(1, 7)]
    with LatencyCache(sys.argv[1]) as cache:
      measure_space(configs, cache, seq_len=16, warmup=1, min_runs=3, min_time_s=0.5,
                    interleave=1, progress=False)
    """)


def test_sigkilled_sweep_resumes_with_only_the_missing(tmp_path, compile_spy):
  path = tmp_path / "lat.sqlite"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  sweep = subprocess.Popen([sys.executable, "-c", _SWEEP, str(path)], env=env,
                           stderr=subprocess.PIPE)
  try:
    deadline = time.monotonic() + 120
    stored = 0
    while stored < 2:
      assert sweep.poll() is None, sweep.stderr.read().decode()
      assert time.monotonic() < deadline, "the sweep did not store two results in 120 s"
      time.sleep(0.05)
      if path.exists():
        with LatencyCache(path) as cache:
          stored = len(cache)
    os.kill(sweep.pid, signal.SIGKILL)
  finally:
    sweep.kill()
    sweep.wait()
    sweep.stderr.close()
  configs = [StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=48,
                           num_ffn=n, num_blocks=2, embedding_size=16, vocab_size=300,
                           max_position_embeddings=64) for n in range(1, 7)]
  with LatencyCache(path) as cache:
    survivors = {r.arch: r for r in cache.results()}
    assert 2 <= len(survivors) < len(configs)
    results = measure_space(configs, cache, seq_len=16, warmup=1, min_runs=3, min_time_s=0.005,
                            interleave=1, progress=False)
  assert sorted(compile_spy.archs) == sorted(c.name for c in configs if c.name not in survivors)
  assert all(r.ok for r in results)
  assert all(results[i] == survivors[c.name] for i, c in enumerate(configs)
             if c.name in survivors)


# The paper's Table 1 (hidden size 246 in the paper is a typo for 256).
TABLE1 = dict(hidden_size=[128, 256, 384, 512], bottleneck_size=[64, 96, 128, 160],
              num_heads=[1, 2, 4, 8], intermediate_size=[384, 512, 640], num_ffn=[2, 4, 6])


def test_whole_table1_space_is_swept_once(tmp_path, monkeypatch):
  """All 576 students through the cache, with the measurement itself stubbed out."""
  names = ["Model_" + "_".join(map(str, values))
           for values in itertools.product(*TABLE1.values())]
  assert len(names) == 576
  measured = []

  def fake_measure_many(archs, **settings):
    settings = {k: settings[k] for k in ("device", "batch_size", "seq_len", "dtype", "heads")}
    out = []
    for config in archs:
      measured.append(config.name)
      key = measurement_key(config, **settings)
      out.append(LatencyResult(**dataclasses.asdict(key), status=OK, median_ms=1.0, std_ms=0.1))
    return out

  monkeypatch.setattr(latency, "measure_many", fake_measure_many)
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    first = measure_space(names[:100], cache, progress=False)
    results = measure_space(names, cache, progress=False)
    assert len(cache) == 576 and measured == names
    assert results[:100] == first and [r.arch for r in results] == names


@pytest.mark.sharding  # measures on cpu:1 of the 8 simulated devices
def test_latency_command(tmp_path, tiny, fast, compile_spy, capsys):
  archs = [tiny(num_ffn=1), tiny(num_ffn=2), tiny(max_position_embeddings=8)]
  output = tmp_path / "out.json"
  results = latency_command(archs, tmp_path / "work", device="cpu:1", output=output,
                            progress=False, **fast)
  printed = capsys.readouterr().out
  assert "latency of 3 architecture(s) on cpu:1" in printed
  assert all(c.name in printed for c in archs)
  assert "2 measured, 1 failed" in printed and "fastest:" in printed
  assert (tmp_path / "work" / "latency.sqlite").exists()
  assert [LatencyResult.from_dict(d) for d in json.loads(output.read_text())] == results
  compile_spy.clear()
  again = latency_command(archs, tmp_path / "work", device="cpu:1", progress=False, **fast)
  assert again == results
  with pytest.raises(ValueError, match=".csv or .json"):
    latency_command([tiny(num_ffn=4)], tmp_path / "work", output=tmp_path / "out.txt",
                    progress=False)
  assert compile_spy.archs == []  # nothing re-measured, nothing measured before the error
