"""Where the wall time of a run goes: set-up, compilation, training, evaluation, checkpoints.

A :class:`Stopwatch` times named parts of a run (``with watch("train"): ...``). Time spent in a
part nested inside another counts for the inner part only, and the time JAX spends compiling
inside any part (tracing to a jaxpr, lowering to StableHLO, XLA's compile or a persistent-cache
load) is moved out of that part into ``"compile"``. JAX reports those three stages through
:mod:`jax.monitoring` as time spans; overlapping spans (a jit traced inside another's trace) are
merged, so nothing is counted twice.

    watch = Stopwatch()
    with watch("train"):
      for batch in batches:
        state, metrics = step(state, batch)    # the first call compiles
    watch.seconds   # {"train": 8.1, "compile": 11.9}
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import Iterator, Mapping

import jax

# The stages of turning a jitted call into an executable (jax/_src/dispatch.py's event names).
COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
})
COMPILE = "compile"


class _CompileSpans:
  """Every compile-stage span JAX reports while at least one stopwatch part is open."""

  def __init__(self):
    self._lock = threading.Lock()
    self._spans: list[tuple[float, float]] = []  # (start, end), time.time() seconds
    self._open = 0
    jax.monitoring.register_event_time_span_listener(self._record)

  def _record(self, event: str, start: float, end: float, **kwargs) -> None:
    del kwargs
    if event in COMPILE_EVENTS and self._open:
      with self._lock:
        self._spans.append((start, end))

  def opened(self) -> None:
    with self._lock:
      self._open += 1

  def closed(self) -> None:
    with self._lock:
      self._open -= 1
      if not self._open:
        self._spans.clear()

  def seconds(self, start: float, end: float) -> float:
    """Wall seconds within [start, end] covered by at least one compile span."""
    with self._lock:
      spans = sorted((max(s, start), min(e, end)) for s, e in self._spans
                     if e > start and s < end)
    total, reach = 0.0, start
    for s, e in spans:
      if e > reach:
        total += e - max(s, reach)
        reach = e
    return total


_SPANS: _CompileSpans | None = None
_SPANS_LOCK = threading.Lock()


def _compile_spans() -> _CompileSpans:
  global _SPANS  # pylint: disable=global-statement
  with _SPANS_LOCK:
    if _SPANS is None:
      _SPANS = _CompileSpans()
    return _SPANS


class Stopwatch:
  """Wall seconds by part of a run, compilation separated out (see the module docstring).

  One stopwatch is used from one thread. ``seconds`` maps each part (and ``"compile"``) to its
  seconds so far; :meth:`add` merges another stopwatch's (e.g. a resumed run's) seconds.
  """

  def __init__(self):
    self.seconds: dict[str, float] = collections.defaultdict(float)
    self._open: list[list[float]] = []  # per open part: [nested wall seconds, nested compile]

  @contextlib.contextmanager
  def __call__(self, part: str) -> Iterator[None]:
    spans = _compile_spans()
    spans.opened()
    self._open.append([0.0, 0.0])
    start = time.time()
    try:
      yield
    finally:
      end = time.time()
      nested_wall, nested_compile = self._open.pop()
      compile_seconds = spans.seconds(start, end)
      spans.closed()
      own_compile = max(compile_seconds - nested_compile, 0.0)
      self.seconds[part] += max(end - start - nested_wall - own_compile, 0.0)
      self.seconds[COMPILE] += own_compile
      if self._open:
        self._open[-1][0] += end - start
        self._open[-1][1] += compile_seconds

  def add(self, seconds: Mapping[str, float]) -> None:
    for part, value in seconds.items():
      self.seconds[part] += float(value)

  def rounded(self, digits: int = 2) -> dict[str, float]:
    return {part: round(value, digits) for part, value in sorted(self.seconds.items())}


def describe(seconds: Mapping[str, float]) -> str:
  """``"compile 11.9 s (59%), train 8.1 s (41%)"``, largest first."""
  total = sum(seconds.values()) or 1.0
  parts = sorted(seconds.items(), key=lambda kv: -kv[1])
  return ", ".join(f"{part} {value:.1f} s ({100 * value / total:.0f}%)" for part, value in parts)


__all__ = ["COMPILE", "COMPILE_EVENTS", "Stopwatch", "describe"]
