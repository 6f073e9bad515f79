"""The errors a user can fix, and how the command line reports them.

Every exception a user can act on derives from :class:`UserError`: its message alone names the
cause and the fix, so ``autodistill`` prints its first line (no traceback; ``--traceback`` shows
one) and exits with 1 (130 for :class:`Interrupted`). Library callers catch ``UserError`` to tell a
bad input from a bug. The specific classes keep a second, familiar base (``ValueError``,
``PermissionError``, ...), so code that caught those before still does.

This module imports nothing from autodistill: every floor may raise these.
"""

from __future__ import annotations

import os
from typing import Optional


def first_line(error: BaseException) -> str:
  """The first line of an error's message (its type's name if it has none)."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


class UserError(Exception):
  """An error whose message names the cause and the fix (one line on the command line)."""



class CorruptFileError(UserError):
  """A file the run needs cannot be read: truncated, emptied, or not what it should be.

  Attributes:
    path: the damaged file (or directory).
  """

  def __init__(self, path: str | os.PathLike, problem: str, fix: str):
    self.path = os.fspath(path)
    super().__init__(f"{self.path} {problem}; {fix}")


def damaged(path: str | os.PathLike, error: BaseException, fix: str,
            what: Optional[str] = None) -> CorruptFileError:
  """A :class:`CorruptFileError` for ``path`` whose reading raised ``error``."""
  detail = first_line(error) if str(error).strip() else ""
  detail = f"{type(error).__name__}: {detail[:160]}" if detail else type(error).__name__
  return CorruptFileError(path, f"cannot be read as {what or 'what it should be'} ({detail})",
                          fix)


class WorkdirBusyError(UserError):
  """Another process holds the workdir's lock (see :func:`autodistill.files.workdir_lock`)."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C (SIGINT) stopped a run after it saved what it had; rerunning resumes it.

  A ``KeyboardInterrupt``, so code that catches ``Exception`` (a search marking a failed trial
  infeasible) lets it through. The command line prints its message and exits with 130.
  """

  exit_code = 130
