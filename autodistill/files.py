"""Atomic file writes, and reads that name a damaged file instead of failing deep inside a parser.

Writes: a reader (or a resumed run after a kill) sees the old file or the new one, never half of
one. Every JSON result, record, summary and table the library writes goes through
:func:`write_json` or :func:`atomic_write`: the content is written to a temporary sibling, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows within one file system).

Reads: :func:`read_json` and :func:`check_sqlite` raise
:class:`~autodistill.errors.CorruptFileError` naming the file and the fix when it is truncated,
emptied or not what it should be (a disk that filled up, a copy cut short, an editor's mistake).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sqlite3
from typing import Any, Callable, Sequence

from autodistill.errors import CorruptFileError, damaged

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


def read_json(path: PathLike, *, fix: str) -> Any:
  """The JSON value stored at ``path``; ``fix`` tells the user what to do if it is damaged.

  Raises:
    FileNotFoundError: there is no such file.
    CorruptFileError: it is not valid UTF-8 JSON (``fix`` says what to do about it).
  """
  path = pathlib.Path(path)
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise damaged(path, error, fix, what="JSON") from None


def check_sqlite(path: PathLike, tables: Sequence[str], *, fix: str,
                 new_ok: bool = False) -> None:
  """Checks that an existing file is a readable SQLite database holding ``tables``.

  Opens it read-only, so a damaged file is never "repaired" into an empty database (SQLAlchemy
  and ``sqlite3`` would otherwise create a fresh schema over an emptied file). With ``new_ok``
  a sound database with no tables at all passes: one whose creator is still creating its
  tables, or was killed between opening the file (which already writes its header) and
  creating them.

  Raises:
    CorruptFileError: it is empty, not SQLite, fails SQLite's quick check, or lacks a table.
  """
  path = pathlib.Path(path)
  if path.stat().st_size == 0:
    raise CorruptFileError(path, "is empty (0 bytes)", fix)
  try:
    with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                            timeout=30)) as db:
      check = db.execute("PRAGMA quick_check").fetchone()
      names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
  except sqlite3.DatabaseError as error:
    raise damaged(path, error, fix, what="an SQLite database") from None
  if check is None or check[0] != "ok":
    raise CorruptFileError(path, f"fails SQLite's integrity check ({check and check[0]})", fix)
  missing = sorted(set(tables) - names)
  if missing and not (new_ok and not names):
    raise CorruptFileError(path, f"lacks the tables {missing} (it holds {sorted(names)})", fix)
