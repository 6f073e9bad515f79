"""LatencyCache: keys that separate devices/shapes/dtypes, persistence, WAL, exports."""

import csv
import dataclasses
import os
import json
import sqlite3

import pytest

from autodistill.errors import CorruptFileError
from autodistill.hardware import CACHE_FILENAME, LatencyCache, LatencyResult, write_results
from autodistill.hardware import measurement_key
from autodistill.hardware.cache import _SCHEMA_VERSION
from autodistill.models import StudentConfig


def _result(arch="Model_128_64_1_384_2", median=1.5, **settings) -> LatencyResult:
  key = measurement_key(arch, **settings)
  return LatencyResult(**dataclasses.asdict(key), status="ok", median_ms=median, mean_ms=median,
                       std_ms=0.1, cv=0.1 / median, runs=3, times_ms=(1.4, 1.5, 1.6),
                       flops=1e9, params=12345, measured_at="2026-01-01T00:00:00+00:00")


def test_put_get_round_trip_and_persistence(tmp_path):
  result = _result()
  with LatencyCache.in_workdir(tmp_path) as cache:
    assert cache.get(result.key) is None
    cache.put(result)
    assert cache.get(result.key) == result
    assert cache.get("Model_128_64_1_384_2") == result  # settings default as in measure_latency
    assert result.key in cache and len(cache) == 1
  with LatencyCache(tmp_path / CACHE_FILENAME) as reopened:
    assert reopened.results() == [result]


@pytest.mark.sharding  # looks up cpu:3 of the 8 simulated devices
def test_keys_separate_devices_shapes_dtypes_and_architectures(tmp_path):
  base = _result()
  others = [
      dataclasses.replace(base, device_kind="TPU v4", platform="tpu", median_ms=0.5),
      dataclasses.replace(base, host_cpu="Other CPU x64", median_ms=1.0),
      dataclasses.replace(base, jax_version="0.0.1", median_ms=1.1),
      _result(median=2.0, seq_len=64), _result(median=3.0, batch_size=8),
      _result(median=4.0, dtype="bfloat16"), _result(median=5.0, heads=True),
      _result("Model_512_128_4_512_4", median=6.0),
  ]
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    for result in [base] + others:
      cache.put(result)
    assert len(cache) == 1 + len(others)
    for result in [base] + others:
      assert cache.get(result.key).median_ms == result.median_ms
    assert cache.get("Model_128_64_1_384_2", seq_len=64).median_ms == 2.0
    assert cache.get("Model_128_64_1_384_2", seq_len=32) is None
    # Devices of the same kind share measurements: cpu:0 and cpu:3 are the same hardware.
    assert cache.get("Model_128_64_1_384_2", device="cpu:3") == base


def test_same_name_different_vocabulary_is_a_different_architecture(tmp_path):
  small_vocab = StudentConfig.from_name("Model_128_64_1_384_2", vocab_size=1000)
  assert small_vocab.name == "Model_128_64_1_384_2"
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    cache.put(_result())
    assert cache.get(small_vocab) is None


def test_put_replaces_and_delete_forgets(tmp_path):
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    cache.put(_result(median=1.0))
    cache.put(_result(median=2.0))
    assert len(cache) == 1 and cache.get("Model_128_64_1_384_2").median_ms == 2.0
    failed = dataclasses.replace(_result("Model_512_128_4_512_4"), status="failed",
                                 error="compile: boom", median_ms=None)
    cache.put(failed)
    assert [r.arch for r in cache.results(status="failed")] == ["Model_512_128_4_512_4"]
    assert cache.delete(failed.key) and not cache.delete(failed.key)
    assert len(cache) == 1


def test_wal_mode_and_rows_visible_to_other_connections_at_once(tmp_path):
  path = tmp_path / "lat.sqlite"
  with LatencyCache(path) as cache:
    cache.put(_result())
    other = sqlite3.connect(str(path))
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT arch, status, median_ms FROM latency").fetchall() == [
        ("Model_128_64_1_384_2", "ok", 1.5)]
    other.close()


def test_unknown_schema_version_is_refused(tmp_path):
  path = tmp_path / "lat.sqlite"
  LatencyCache(path).close()
  db = sqlite3.connect(str(path))
  db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION + 1}")
  db.commit()
  db.close()
  with pytest.raises(CorruptFileError, match="schema version"):
    LatencyCache(path)


def test_a_damaged_cache_is_named_and_never_overwritten(tmp_path):
  path = tmp_path / "lat.sqlite"
  garbage = b"not a database " * 300
  path.write_bytes(garbage)
  with pytest.raises(CorruptFileError, match=r"lat.sqlite cannot be read as an SQLite database "
                     r".*delete it .*measured again"):
    LatencyCache(path)
  assert path.read_bytes() == garbage
  path.write_bytes(b"")  # an emptied cache is just an empty one: measured again
  LatencyCache(path).close()


def test_a_cache_killed_or_racing_before_its_tables_exist_opens_as_a_new_one(tmp_path):
  """Opening the file writes its header (WAL mode) before the tables are created: a process
  killed in between, or a second process opening the file in that moment, sees a sound database
  with no tables, which is a new cache, not a damaged one. One with other tables is damaged."""
  path = tmp_path / "lat.sqlite"
  db = sqlite3.connect(str(path))
  db.execute("PRAGMA journal_mode=WAL")  # what LatencyCache does first
  db.close()
  assert path.stat().st_size > 0
  with LatencyCache(path) as cache:
    cache.put(_result())
  with LatencyCache(path) as cache:
    assert cache.get(measurement_key("Model_128_64_1_384_2")) is not None
  other = tmp_path / "other.sqlite"
  db = sqlite3.connect(str(other))
  db.execute("CREATE TABLE unrelated (x)")
  db.commit()
  db.close()
  with pytest.raises(CorruptFileError, match=r"lacks the tables \['latency'\]"):
    LatencyCache(other)


def test_get_with_key_and_settings_is_ambiguous(tmp_path):
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    with pytest.raises(ValueError, match="either"):
      cache.get(_result().key, seq_len=16)


def test_csv_and_json_exports(tmp_path):
  results = [_result(), dataclasses.replace(_result("Model_512_128_4_512_4"), status="failed",
                                            error="build: x, y", median_ms=None, times_ms=())]
  with LatencyCache(tmp_path / "lat.sqlite") as cache:
    for result in results:
      cache.put(result)
    json_path = cache.export(tmp_path / "out" / "latency.json")
    csv_path = cache.export(tmp_path / "out" / "latency.csv")
  loaded = [LatencyResult.from_dict(d) for d in json.loads(json_path.read_text())]
  assert loaded == results
  with open(csv_path, newline="") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == [f.name for f in dataclasses.fields(LatencyResult)]
  assert [r["arch"] for r in rows] == [r.arch for r in results]
  assert json.loads(rows[0]["times_ms"]) == [1.4, 1.5, 1.6]
  assert rows[1]["median_ms"] == "" and rows[1]["error"] == "build: x, y"
  with pytest.raises(ValueError, match=".csv or .json"):
    write_results(results, tmp_path / "latency.txt")


def test_a_contended_row_is_measured_again_and_the_quieter_one_kept(tmp_path, monkeypatch):
  from autodistill.hardware import LatencyCache, LatencySettings
  from autodistill.hardware import cache as cache_module
  from autodistill.hardware import latency as latency_lib
  settings = LatencySettings(seq_len=8, min_runs=2, min_time_s=0.001, max_other_load=0.5)
  arch = "Model_32_16_2_32_1-num_blocks=1-embedding_size=16"
  real = latency_lib.measure_latency
  loads = iter([1.5, 0.9, 0.1])  # busy, a bit less busy, quiet
  measured = []

  def with_load(*args, **kwargs):
    result = dataclasses.replace(real(*args, **kwargs), other_load=next(loads))
    measured.append(result.other_load)
    return result

  monkeypatch.setattr(cache_module.latency_lib, "measure_latency", with_load)
  with LatencyCache(tmp_path / "latency.sqlite") as cache:
    assert cache.get_or_measure(arch, settings).other_load == 1.5  # nothing better yet
    assert cache.get_or_measure(arch, settings).other_load == 0.9  # measured again, kept
    assert cache.get_or_measure(arch, settings).other_load == 0.1
    assert cache.get_or_measure(arch, settings).other_load == 0.1  # quiet: read from the cache
    assert measured == [1.5, 0.9, 0.1]
    # Off (< 0): a contended row is used as it is.
    assert not latency_lib.contended(cache.get(arch, **settings.key_settings), -1)


def test_other_load_is_measured_around_the_timed_calls():
  from autodistill.hardware import latency as latency_lib
  result = latency_lib.measure_latency("Model_32_16_2_32_1-num_blocks=1-embedding_size=16",
                                       seq_len=8, min_runs=2, min_time_s=0.001)
  assert result.other_load is None or result.other_load >= 0.0
  before = (0.0, 100.0, 10.0)
  # 2 s of wall, 300 busy ticks on the host of which 100 are ours: 200 ticks of others.
  assert latency_lib._other_load(before, (2.0, 400.0, 110.0)) == round(
      200 / os.sysconf("SC_CLK_TCK") / 2.0, 3)
  assert latency_lib._other_load(None, before) is None
