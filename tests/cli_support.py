"""Running a command of the command line in this process, and checking its one-line errors.

:func:`run_command` calls :func:`autodistill.main.execute`, what ``python -m autodistill`` runs
after parsing its flags: a user error there is a ``SystemExit`` whose code is the message (Python
prints it to stderr and exits with 1), Ctrl-C a ``SystemExit(130)`` after one line on stderr.
"""

import re

from autodistill import main as cli

# gRPC's C core may log a line to stderr when an in-process Vizier server stops.
GRPC_LOG = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\] ")


class Run:
  """What a command did: exit code, printed output, and what went to stderr."""

  def __init__(self, code, stdout, stderr):
    self.returncode, self.stdout, self.stderr = code, stdout, stderr


def run_command(capsys, name, config, workdir, check=None, **options):
  """``autodistill NAME`` in this process; ``capsys`` is pytest's fixture."""
  capsys.readouterr()
  try:
    cli.execute(name, config, workdir, **options)
    code, message = 0, ""
  except SystemExit as exit_:
    code, message = (1, str(exit_.code) + "\n") if isinstance(exit_.code, str) else (
        exit_.code, "")
  captured = capsys.readouterr()
  result = Run(code, captured.out, captured.err + message)
  if check is not None:
    assert result.returncode == check, result.stdout[-3000:] + result.stderr[-3000:]
  return result


def one_line_error(result, *fragments, code=1):
  """Asserts: exit ``code``, no traceback, exactly one line on stderr holding ``fragments``."""
  assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = [line for line in result.stderr.strip().splitlines() if not GRPC_LOG.match(line)]
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]
