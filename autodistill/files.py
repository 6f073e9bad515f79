"""Atomic file writes: a reader (or a resumed run after a kill) sees the old file or the new one,
never half of one.

Every JSON result, record, summary and table the library writes goes through :func:`write_json`
or :func:`atomic_write`: the content is written to a temporary sibling, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable

PathLike = str | os.PathLike


def atomic_write(path: PathLike, write: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Calls ``write(tmp)`` on a temporary sibling of ``path``, then renames it over ``path``.

  The temporary name carries the process id, so concurrent writers never share one; it is removed
  if ``write`` raises. Creates the parent directory.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  return path


def write_text(path: PathLike, text: str) -> pathlib.Path:
  """Replaces ``path`` with ``text`` (UTF-8) atomically."""
  return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_default(value: Any) -> Any:
  """NumPy scalars and arrays (``.item()`` / ``.tolist()``) and paths, for ``json.dumps``;
  anything else as its ``str``."""
  if hasattr(value, "tolist"):
    return value.tolist()
  if hasattr(value, "item"):
    return value.item()
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  return str(value)


def write_json(path: PathLike, value: Any, *, indent: int = 2,
               default: Callable[[Any], Any] = json_default) -> pathlib.Path:
  """Replaces ``path`` with ``value`` as JSON atomically (``default`` renders other objects)."""
  return write_text(path, json.dumps(value, indent=indent, default=default) + "\n")


def read_json(path: PathLike) -> Any:
  """The JSON value stored at ``path``."""
  return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
