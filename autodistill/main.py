"""Command-line entry point (thin: every command calls one library function).

Usage::

  python -m autodistill demo --workdir=workdir/demo
  python -m autodistill summary --arch=Model_512_128_1_640_2
"""

from __future__ import annotations

import sys

from absl import app, flags

from autodistill.models import StudentConfig
from autodistill.models import params as counting

_WORKDIR = flags.DEFINE_string("workdir", "workdir/demo", "Directory for everything a run writes.")
_ARCH = flags.DEFINE_string("arch", "Model_512_128_4_512_4",
                            "Student architecture name for `summary`, e.g. Model_512_128_1_384_4.")

COMMANDS = {
    "demo": "run the embedded demo (teacher import, embeddings, Table 2 students, HF export)",
    "summary": "print the parameter breakdown of --arch",
}


def _usage() -> str:
  lines = ["usage: autodistill COMMAND [--flags]", "", "commands:"]
  lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(_usage())
  command = argv[1]
  if command == "demo":
    from autodistill.demo import run_demo  # pylint: disable=import-outside-toplevel
    run_demo(_WORKDIR.value)
  elif command == "summary":
    try:
      config = StudentConfig.from_name(_ARCH.value)
    except ValueError as error:
      sys.exit(f"autodistill summary: {error}")
    print(counting.summary(config))


def run() -> None:
  """Console-script entry point."""
  app.run(main)
