"""The workdir: opened (created, checked writable) and locked, so one run at a time writes it.

Two local runs in one workdir would train into the same checkpoints and race for the same study
(a second ``search`` takes over the first one's running trial). :func:`lock_workdir` holds an
OS-level lock (``flock``) on ``<workdir>/.autodistill.lock`` while a command runs. The kernel
drops it when the process ends in any way, ``kill -9`` included, so a stale lock cannot block
the next run; the file only records who holds it, for the message a second run prints.

Several workers of one search each use their own workdir (``autodistill serve`` and
``--config.search.endpoint``), so they never contend for a lock; a worker may also run in the
workdir of the ``serve`` that serves its study (they write different files), but not beside any
other command.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import socket
from typing import Iterator

from autodistill.errors import UserError, WorkdirBusyError

try:
  import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
  fcntl = None

LOCK_FILE = ".autodistill.lock"

# Workdirs this process holds: resolved path -> [file descriptor, nesting depth]. A stage that
# runs inside a command (demo runs all of them) re-enters its command's lock.
_HELD: dict[str, list[int]] = {}


class WorkdirError(UserError, PermissionError):
  """The workdir cannot be created or written."""


def open_workdir(workdir: str | os.PathLike) -> pathlib.Path:
  """Creates ``workdir`` if needed and checks that it can be written.

  Raises:
    WorkdirError: it cannot be created or written (the message says what to pass instead).
  """
  path = pathlib.Path(workdir).expanduser()
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write-test-{os.getpid()}"
    probe.write_text("ok", encoding="utf-8")
    probe.unlink()
  except OSError as error:
    reason = error.strerror or type(error).__name__
    raise WorkdirError(f"cannot write to workdir {path} ({reason}); pass --workdir=<a directory "
                       "you can write to>.") from None
  return path


def _holder(fd: int) -> dict[str, str]:
  """Who holds the lock, from what it wrote into the lock file ({} if unreadable)."""
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    info = json.loads(os.read(fd, 4096).decode("utf-8"))
    return info if isinstance(info, dict) else {}
  except (OSError, ValueError):
    return {}


def _describe(holder: dict[str, str]) -> str:
  try:
    return (f"PID {holder['pid']} (`autodistill {holder['command']}` on {holder['host']}, since "
            f"{holder['started']})")
  except KeyError:
    return "another process"


@contextlib.contextmanager
def lock_workdir(workdir: str | os.PathLike, command: str,
                 beside: tuple[str, ...] = ()) -> Iterator[pathlib.Path]:
  """Opens ``workdir`` and holds its lock for the duration of the ``with`` block.

  Re-entrant within one process. The lock is advisory: it keeps out other autodistill runs,
  not other programs.

  Args:
    workdir: the run's workdir (created if needed).
    command: what holds it (shown to a second run), e.g. ``"search"``.
    beside: commands this run may share the workdir with: if one of them holds the lock, the
      block runs without it (a search worker beside the ``serve`` of its study).

  Yields:
    The workdir's path.

  Raises:
    WorkdirError: the workdir cannot be created or written.
    WorkdirBusyError: another process holds the lock (the message names its PID and command).
  """
  path = open_workdir(workdir)
  key = str(path.resolve())
  if fcntl is None or key in _HELD:
    if key in _HELD:
      _HELD[key][1] += 1
    try:
      yield path
    finally:
      if key in _HELD:
        _HELD[key][1] -= 1
    return
  fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    holder = _holder(fd)
    os.close(fd)
    if holder.get("command") in beside:
      yield path
      return
    raise WorkdirBusyError(
        f"workdir {path} is in use by {_describe(holder)}; wait for it to finish (or stop it), "
        "or pass another --workdir. To run several search workers at once, start `autodistill "
        "serve` and give each worker its own --workdir and --config.search.endpoint.") from None
  try:
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps({"pid": os.getpid(), "command": command, "host": socket.gethostname(),
                             "started": started}).encode("utf-8"))
    _HELD[key] = [fd, 1]
    yield path
  finally:
    _HELD.pop(key, None)
    os.close(fd)  # releases the flock


COMPILATION_CACHE = ".jax_cache"


def use_compilation_cache(workdir: str | os.PathLike) -> pathlib.Path | None:
  """Points JAX's persistent compilation cache at ``<workdir>/.jax_cache``, unless the user chose
  a cache already (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``); returns the directory used,
  or None.

  A rerun of a command, a resumed search, and every later trial or worker that builds a program
  already built in this workdir (same student shape, same teacher) then loads the executable
  instead of compiling it. Every program is kept, however quick its compile; delete the
  directory to reclaim its space. Call it before the process compiles anything: JAX reads the
  setting when it first uses the cache.
  """
  import jax  # pylint: disable=import-outside-toplevel
  if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
    return None
  path = pathlib.Path(workdir).expanduser() / COMPILATION_CACHE
  jax.config.update("jax_compilation_cache_dir", str(path))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return path
