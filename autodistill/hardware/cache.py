"""A persistent latency cache: one SQLite row per architecture, device and measurement setting.

"Since the hardware performance evaluation is independent of Flash Distillation or pre-training
accuracy, it can be completed in parallel to or offline of the distillation process" (paper
section 3.4). The cache is what makes that work: a sweep measures a design space once per target
(:func:`autodistill.hardware.measure_space`) and the search reads latencies from it.

Rows are keyed by :class:`~autodistill.hardware.latency.MeasurementKey` (architecture name and
full configuration, device kind, platform, host CPU, JAX version, dtype, batch size, sequence
length, heads). The timing policy (runs, minimum time) is stored but is not part of the key: a
quick and a careful measurement estimate the same latency. Every :meth:`LatencyCache.put` commits
its row at once, in write-ahead-log mode, so a killed sweep keeps every finished measurement and
several processes can share one file. Failed measurements are stored too, so they are not retried
unless asked (``retry_failed``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import sqlite3
from typing import Any, Iterable, Optional

from autodistill import files
from autodistill.errors import CorruptFileError
from autodistill.hardware import latency as latency_lib
from autodistill.hardware.latency import KEY_FIELDS, LatencyResult, MeasurementKey

PathLike = str | os.PathLike

CACHE_FILENAME = "latency.sqlite"

_SCHEMA_VERSION = 1
_KEY_TYPES = {"batch_size": "INTEGER", "seq_len": "INTEGER", "heads": "INTEGER"}
_CREATE = (
    "CREATE TABLE IF NOT EXISTS latency ("
    + ", ".join(f"{f} {_KEY_TYPES.get(f, 'TEXT')} NOT NULL" for f in KEY_FIELDS)
    + ", status TEXT NOT NULL, median_ms REAL, measured_at TEXT, result TEXT NOT NULL, "
    + f"PRIMARY KEY ({', '.join(KEY_FIELDS)}))")
_WHERE_KEY = " AND ".join(f"{f} = ?" for f in KEY_FIELDS)


@dataclasses.dataclass(frozen=True)
class LatencySettings:
  """How a student's latency is measured on the target device (paper section 3.4: batch 1).

  Attributes:
    device: a device string ("cpu", "gpu:0"); None = JAX's default device.
    batch_size, seq_len, dtype: the timed forward pass (part of the cache key).
    min_runs, min_time_s: the timing policy (not part of the key).
    max_other_load: a cached latency timed while other processes used more than this many CPU
      cores (``LatencyResult.other_load``: another worker or job sharing the host) is measured
      again when asked for, and the less contended of the two is kept; < 0 turns this off.
  """

  device: Optional[str] = None
  batch_size: int = 1
  seq_len: int = 128
  dtype: str = "float32"
  min_runs: int = 30
  min_time_s: float = 1.0
  max_other_load: float = 0.5

  @property
  def key_settings(self) -> dict[str, Any]:
    """The settings that identify a measurement in the latency cache."""
    return {"device": self.device, "batch_size": self.batch_size, "seq_len": self.seq_len,
            "dtype": self.dtype}

  @property
  def timing(self) -> dict[str, Any]:
    """The timing policy, as keyword arguments of :func:`measure_latency`."""
    return {"min_runs": self.min_runs, "min_time_s": self.min_time_s}


def _key_values(key: MeasurementKey) -> tuple:
  return tuple(int(v) if isinstance(v, bool) else v for v in (getattr(key, f) for f in KEY_FIELDS))


class LatencyCache:
  """Latency measurements stored in SQLite (stdlib ``sqlite3``).

  Example::

    with LatencyCache.in_workdir("workdir/search") as cache:
      cache.get("Model_512_128_4_512_4", device="cpu")  # None until measured
  """

  def __init__(self, path: PathLike):
    """Opens (creating if needed) the cache file at ``path``; its folder is created too.

    Raises:
      CorruptFileError: ``path`` exists and is not a readable latency cache.
    """
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if self.path.exists() and self.path.stat().st_size:
      files.check_sqlite(self.path, ("latency",), fix="delete it (and latency.sqlite-wal, "
                         "-shm beside it): the latencies are measured again", new_ok=True)
    # A generous busy timeout lets several sweeping processes share one file.
    self._db = sqlite3.connect(str(self.path), timeout=60.0)
    self._db.execute("PRAGMA journal_mode=WAL")
    self._db.execute("PRAGMA synchronous=NORMAL")  # durable at every commit in WAL mode
    version = self._db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:  # a new file (readers of an existing cache never write here)
      self._db.execute(_CREATE)
      self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
      self._db.commit()
    elif version != _SCHEMA_VERSION:
      raise CorruptFileError(self.path, f"has latency-cache schema version {version}, and this "
                             f"version of autodistill reads version {_SCHEMA_VERSION}",
                             "move it away: the latencies are measured again")

  @classmethod
  def in_workdir(cls, workdir: PathLike) -> "LatencyCache":
    """The cache at ``<workdir>/latency.sqlite``."""
    return cls(pathlib.Path(workdir) / CACHE_FILENAME)

  def get(self, arch: latency_lib.Architecture | MeasurementKey,
          **settings) -> Optional[LatencyResult]:
    """The stored result for a key, or None.

    Args:
      arch: a :class:`MeasurementKey`, or an architecture, in which case ``settings`` (device,
        batch_size, seq_len, dtype, heads) build the key as in :func:`measurement_key`.
    """
    if isinstance(arch, MeasurementKey):
      if settings:
        raise ValueError(f"pass either a MeasurementKey or settings, not both: {settings}.")
      key = arch
    else:
      key = latency_lib.measurement_key(arch, **settings)
    row = self._db.execute(f"SELECT result FROM latency WHERE {_WHERE_KEY}",
                           _key_values(key)).fetchone()
    return LatencyResult.from_dict(json.loads(row[0])) if row else None

  def put(self, result: LatencyResult) -> None:
    """Stores (or replaces) a result under its key and commits immediately."""
    columns = KEY_FIELDS + ("status", "median_ms", "measured_at", "result")
    values = _key_values(result.key) + (result.status, result.median_ms, result.measured_at,
                                        json.dumps(result.to_dict(), sort_keys=True))
    self._db.execute(
        f"INSERT OR REPLACE INTO latency ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})", values)
    self._db.commit()

  def get_or_measure(self, arch: latency_lib.Architecture,
                     settings: LatencySettings) -> LatencyResult:
    """The cached latency of ``arch`` under ``settings``, measured and stored if the cache has
    none, only a failed measurement, or one timed under more other load than
    ``settings.max_other_load`` (then the less contended of the two is kept). A failed
    measurement is returned, not raised."""
    cached = self.get(arch, **settings.key_settings)
    if cached is not None and cached.ok and not latency_lib.contended(
        cached, settings.max_other_load):
      return cached
    result = latency_lib.less_contended(
        cached, latency_lib.measure_latency(arch, **settings.key_settings, **settings.timing))
    if result is not cached:
      self.put(result)
    return result

  def delete(self, key: MeasurementKey) -> bool:
    """Forgets one result; True when there was one."""
    cursor = self._db.execute(f"DELETE FROM latency WHERE {_WHERE_KEY}", _key_values(key))
    self._db.commit()
    return cursor.rowcount > 0

  def results(self, status: Optional[str] = None) -> list[LatencyResult]:
    """Every stored result (optionally only ``"ok"`` or ``"failed"``), oldest write first."""
    query, args = "SELECT result FROM latency", ()
    if status is not None:
      query, args = query + " WHERE status = ?", (status,)
    rows = self._db.execute(query + " ORDER BY rowid", args).fetchall()
    return [LatencyResult.from_dict(json.loads(r[0])) for r in rows]

  def __len__(self) -> int:
    return self._db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]

  def __contains__(self, key: MeasurementKey) -> bool:
    return self.get(key) is not None

  def export(self, path: PathLike) -> pathlib.Path:
    """Writes every stored result to ``path`` (``.csv`` or ``.json``); see :func:`write_results`."""
    return write_results(self.results(), path)

  def close(self) -> None:
    self._db.close()

  def __enter__(self) -> "LatencyCache":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def check_results_path(path: PathLike) -> pathlib.Path:
  """``path`` as a Path, or a ValueError when its suffix is neither ``.csv`` nor ``.json``."""
  path = pathlib.Path(path)
  if path.suffix.lower() not in (".csv", ".json"):
    raise ValueError(f"cannot write results to {str(path)!r}: use a .csv or .json file name.")
  return path


def write_results(results: Iterable[LatencyResult], path: PathLike) -> pathlib.Path:
  """Writes results as CSV (one row each, ``times_ms`` as a JSON list) or JSON (a list of
  objects), chosen by the suffix of ``path``; the file is replaced atomically."""
  path = check_results_path(path)
  rows = [r.to_dict() for r in results]

  def write(tmp: pathlib.Path) -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as f:
      if path.suffix.lower() == ".json":
        json.dump(rows, f, indent=1)
        f.write("\n")
      else:
        writer = csv.DictWriter(f, fieldnames=list(LatencyResult.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
          row["times_ms"] = json.dumps(row["times_ms"])
          writer.writerow({k: "" if v is None else v for k, v in row.items()})

  return files.atomic_write(path, write)
