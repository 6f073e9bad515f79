"""One metric writer for every training phase: JSON lines plus TensorBoard event files.

``<workdir>/metrics.jsonl`` holds one object per logged step (``{"step", "phase", ...scalars}``);
``<workdir>/tensorboard/`` holds TensorBoard events (via ``tensorboardX``, no TensorFlow needed).
On resume, :meth:`MetricWriter.truncate_after` drops JSON lines written after the checkpoint the
run resumes from, so the file never holds two histories for one step.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Mapping, Optional


def _jsonable(value: Any) -> Any:
  value = float(value) if hasattr(value, "__float__") and not isinstance(value, (int, str)) else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf
  return value


class MetricWriter:
  """Writes scalars to ``metrics.jsonl`` and TensorBoard under ``workdir``."""

  def __init__(self, workdir: str | os.PathLike, tensorboard: bool = True):
    self.workdir = pathlib.Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.path = self.workdir / "metrics.jsonl"
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._tb = SummaryWriter(logdir=str(self.workdir / "tensorboard"), flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, Any], phase: Optional[str] = None):
    record = {"step": int(step)}
    if phase is not None:
      record["phase"] = phase
    record.update({k: _jsonable(v) for k, v in scalars.items()})
    with self.path.open("a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      prefix = f"{phase}/" if phase else ""
      for name, value in scalars.items():
        value = _jsonable(value)
        if isinstance(value, (int, float)):
          self._tb.add_scalar(prefix + name, value, int(step))

  def truncate_after(self, step: int) -> None:
    """Drops JSON lines logged after global ``step`` (work lost to a kill is redone)."""
    if not self.path.exists():
      return
    kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = self.path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, self.path)

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    """Flushes and closes the TensorBoard writer (and its thread); safe to call twice."""
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The JSON-lines history of a workdir (empty when none was written)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
