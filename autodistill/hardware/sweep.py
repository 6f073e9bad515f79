"""Pre-measuring a whole design space into the latency cache, resumably (paper section 3.4).

The paper's example space (Table 1) has 576 students; with 24 blocks each, measuring them all on
the target device once, offline, lets the search read every latency from the cache.
:func:`measure_space` takes any iterable of architectures (design spaces come from
``autodistill.space``), skips what the cache already holds and writes every result as soon as it
is measured, so a killed sweep resumes with only the missing ones. :func:`latency_command` is
the same with printed progress and a summary, for the command line.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import sys
from typing import Callable, Iterable, Optional

import jax.numpy as jnp

from autodistill.hardware import devices
from autodistill.hardware import latency as latency_lib
from autodistill.hardware.cache import (CACHE_FILENAME, LatencyCache, check_results_path,
                                        write_results)
from autodistill.hardware.latency import (MAX_RUNS, MIN_RUNS, MIN_TIME_S, WARMUP, Architecture,
                                          DtypeLike, LatencyResult)
from autodistill.progress import progress_bar

PathLike = str | os.PathLike

# Candidates timed together (interleaved) by default; each group's compiled models share memory.
INTERLEAVE = 4


def measure_space(archs: Iterable[Architecture], cache: LatencyCache, *,
                  device: devices.DeviceLike = None, batch_size: int = 1, seq_len: int = 128,
                  dtype: DtypeLike = jnp.float32, heads: bool = False,
                  retry_failed: bool = False, interleave: int = INTERLEAVE,
                  warmup: int = WARMUP, min_runs: int = MIN_RUNS,
                  min_time_s: float = MIN_TIME_S, max_runs: int = MAX_RUNS, seed: int = 0,
                  progress: bool = True,
                  max_other_load: Optional[float] = None) -> list[LatencyResult]:
  """Latency of every architecture, from ``cache`` where present, measuring only the rest.

  Missing architectures are measured ``interleave`` at a time with
  :func:`~autodistill.hardware.measure_many` and each result is written to the cache (one
  committed row) as soon as its group finishes. Failed measurements are cached as failed and not
  retried unless ``retry_failed``. Duplicates in ``archs`` are measured once.

  Args:
    archs: ``StudentConfig``/``BertConfig`` objects or architecture names.
    cache: where results are read from and written to.
    retry_failed: measure again the architectures whose cached result is a failure.
    max_other_load: measure again the architectures whose cached result was timed while other
      processes used more than this many cores, keeping the less contended result (None or
      < 0: never).
    interleave: how many candidates are compiled and timed together (1: one at a time).
    progress: show progress (autodistill.progress: a bar on a terminal, lines in a log).
    Other arguments: as for :func:`~autodistill.hardware.measure_many`.

  Returns:
    One result per entry of ``archs``, in order.

  Raises:
    ValueError: an unknown device, a malformed name or invalid settings (before any work).
  """
  if isinstance(interleave, bool) or not isinstance(interleave, int) or interleave < 1:
    raise ValueError(f"interleave must be a positive int, got {interleave!r}.")
  device = devices.resolve_device(device)
  configs = [latency_lib.resolve_architecture(a) for a in archs]
  keys = [latency_lib.measurement_key(c, device=device, batch_size=batch_size, seq_len=seq_len,
                                      dtype=dtype, heads=heads) for c in configs]
  found: dict[latency_lib.MeasurementKey, LatencyResult] = {}
  todo = {}
  for config, key in zip(configs, keys):
    if key in found or key in todo:
      continue
    cached = cache.get(key)
    if cached is not None and (cached.ok or not retry_failed) and not latency_lib.contended(
        cached, max_other_load):
      found[key] = cached
    else:
      todo[key] = config
  bar = progress_bar(len(found) + len(todo), initial=len(found), unit="arch",
                     desc=f"latency on {devices.device_label(device)}", enabled=progress,
                     file=sys.stderr, dynamic_ncols=True)
  try:
    pending = iter(todo.items())
    while group := list(itertools.islice(pending, interleave)):
      measured = latency_lib.measure_many(
          [config for _, config in group], batch_size=batch_size, seq_len=seq_len,
          device=device, dtype=dtype, heads=heads, warmup=warmup, min_runs=min_runs,
          min_time_s=min_time_s, max_runs=max_runs, seed=seed)
      for (key, _), result in zip(group, measured):
        result = latency_lib.less_contended(cache.get(key), result)
        cache.put(result)
        found[key] = result
        bar.update(1)
        bar.set_postfix_str(
            f"{result.arch}: {result.median_ms:.3f} ms" if result.ok
            else f"{result.arch}: failed", refresh=False)
  finally:
    bar.close()
  return [found[key] for key in keys]


def _format_row(r: LatencyResult) -> str:
  if not r.ok:
    return f"  {r.arch:<40} failed: {r.error.splitlines()[0] if r.error else ''}"
  return (f"  {r.arch:<40} {r.median_ms:>10.3f} {100 * r.cv:>6.1f} {r.throughput:>10.1f} "
          f"{r.flops / 1e9:>8.3f} {r.params / 1e6:>8.2f} {r.compile_s or 0:>9.1f}")


def summarize(results: Iterable[LatencyResult]) -> str:
  """A table of results (fastest first, failures last) and the candidates tied with the fastest
  (:func:`~autodistill.hardware.within_noise`)."""
  results = list(results)
  ok = sorted((r for r in results if r.ok), key=lambda r: r.median_ms)
  failed = [r for r in results if not r.ok]
  lines = [f"  {'architecture':<40} {'median ms':>10} {'cv %':>6} {'seq/s':>10} {'GFLOP':>8} "
           f"{'params M':>8} {'compile s':>9}"]
  lines += [_format_row(r) for r in ok + failed]
  if ok:
    ties = [r.arch for r in ok[1:] if latency_lib.within_noise(ok[0], r)]
    lines.append(f"fastest: {ok[0].arch} ({ok[0].median_ms:.3f} ms)"
                 + (f"; within noise of it: {', '.join(ties)}" if ties else ""))
  lines.append(f"{len(ok)} measured, {len(failed)} failed")
  return "\n".join(lines)


def latency_command(archs: Iterable[Architecture], workdir: PathLike, *,
                    device: devices.DeviceLike = None, batch_size: int = 1, seq_len: int = 128,
                    dtype: DtypeLike = "float32", heads: bool = False,
                    output: Optional[PathLike] = None, cache_path: Optional[PathLike] = None,
                    retry_failed: bool = False, interleave: int = INTERLEAVE,
                    warmup: int = WARMUP, min_runs: int = MIN_RUNS,
                    min_time_s: float = MIN_TIME_S, max_runs: int = MAX_RUNS,
                    progress: bool = True, max_other_load: Optional[float] = None,
                    echo: Callable[[str], None] = print) -> list[LatencyResult]:
  """Measures architectures into ``<workdir>/latency.sqlite`` and prints a summary (section 3.4).

  The function behind ``autodistill latency``: resumable (cached results are reused, see
  :func:`measure_space`), with a progress bar and a summary table at the end.

  Args:
    archs: architectures or names.
    workdir: where the cache lives (created if needed).
    output: also write the results to this ``.csv`` or ``.json`` file.
    cache_path: use this cache file instead of ``<workdir>/latency.sqlite``.
    echo: where the text goes (``print`` by default).
    Other arguments: as for :func:`measure_space`.

  Returns:
    The results, in the order of ``archs``.
  """
  archs = list(archs)
  output = check_results_path(output) if output is not None else None  # fail before measuring
  device = devices.resolve_device(device)
  cache_path = pathlib.Path(cache_path) if cache_path else (
      pathlib.Path(workdir) / CACHE_FILENAME)
  with LatencyCache(cache_path) as cache:
    echo(f"latency of {len(archs)} architecture(s) on {devices.device_label(device)} "
         f"({device.device_kind}; host {devices.host_cpu()}), batch {batch_size}, "
         f"seq {seq_len}, {latency_lib.dtype_name(dtype)}{', with heads' if heads else ''}; "
         f"cache {cache_path} ({len(cache)} stored)")
    results = measure_space(
        archs, cache, device=device, batch_size=batch_size, seq_len=seq_len, dtype=dtype,
        heads=heads, retry_failed=retry_failed, interleave=interleave, warmup=warmup,
        min_runs=min_runs, min_time_s=min_time_s, max_runs=max_runs, progress=progress,
        max_other_load=max_other_load)
  echo(summarize(results))
  if output is not None:
    echo(f"wrote {write_results(results, output)}")
  return results
