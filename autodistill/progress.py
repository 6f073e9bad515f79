"""Progress output that reads well on a terminal, in a notebook and in a log file.

On a terminal or in a notebook, :func:`progress_bar` is a tqdm bar, redrawn in place. Where
stderr is a file or a pipe (``make demo > log``, CI, a worker whose output a test captures)
every redraw would land in the log as one more carriage-return segment of a single endless line,
so there it is a :class:`LineProgress` instead: the same calls, printing one plain line at most
every ``every_s`` seconds and a last one when the work ends (if it took that long), e.g.

    teacher_adapt: 120/200 steps, 76 s, loss=4.8123
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, TextIO

from tqdm.auto import tqdm

# Seconds between two lines of a LineProgress.
LINE_EVERY_S = 20.0


def interactive(stream: Optional[TextIO] = None) -> bool:
  """True on a terminal, or in a Jupyter kernel (whose front end draws carriage returns)."""
  stream = sys.stderr if stream is None else stream
  if "ipykernel" in sys.modules:
    return True
  isatty = getattr(stream, "isatty", None)
  try:
    return bool(isatty and isatty())
  except ValueError:  # a closed stream
    return False


class LineProgress:
  """tqdm's ``update``/``set_postfix``/``set_postfix_str``/``close``, as occasional plain lines.

  Args:
    total: the amount of work.
    initial: work already done (a resumed run).
    desc: what is counted, printed first.
    unit: the unit after the counts.
    every_s: the least seconds between two lines.
    file: where lines go (default: stderr at the time of printing).
    clock: a monotonic clock in seconds (tests pass their own).
  """

  def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it",
               every_s: float = LINE_EVERY_S, file: Optional[TextIO] = None,
               clock: Callable[[], float] = time.monotonic):
    self.total, self.n, self.desc, self.unit = total, initial, desc, unit
    self._every_s, self._file, self._clock = every_s, file, clock
    self._start = self._last = clock()
    self._postfix = ""
    self._closed = False

  def update(self, n: int = 1) -> None:
    self.n += n
    if self._clock() - self._last >= self._every_s and self.n < self.total:
      self._print()

  def set_postfix(self, ordered_dict: Optional[dict[str, Any]] = None, refresh: bool = True,
                  **kwargs: Any) -> None:
    del refresh
    items = {**(ordered_dict or {}), **kwargs}
    self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

  def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
    del refresh
    self._postfix = s

  def close(self) -> None:
    """Prints the last line if the work took at least ``every_s`` seconds."""
    if not self._closed and self._clock() - self._start >= self._every_s:
      self._print()
    self._closed = True

  def _print(self) -> None:
    self._last = self._clock()
    line = f"{self.desc}: {self.n}/{self.total} {self.unit}, {self._last - self._start:.0f} s"
    if self._postfix:
      line += f", {self._postfix}"
    print(line, file=self._file or sys.stderr, flush=True)


def progress_bar(total: int, *, initial: int = 0, desc: str = "", unit: str = "it",
                 enabled: bool = True, **tqdm_options: Any) -> Any:
  """A tqdm bar on a terminal or in a notebook, a :class:`LineProgress` elsewhere, and a silent
  (disabled) tqdm when ``enabled`` is false. ``tqdm_options`` go to tqdm only."""
  if enabled and not interactive(tqdm_options.get("file")):
    return LineProgress(total, initial, desc, unit, file=tqdm_options.get("file"))
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
              **tqdm_options)
