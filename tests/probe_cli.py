"""Replays bad inputs and faults against the real command line and prints what each did.

Usage (from the repository root; about 10 minutes on 2 cores)::

  .venv/bin/python tests/probe_cli.py                  # this checkout
  .venv/bin/python tests/probe_cli.py --repo=../old    # another checkout of autodistill
  .venv/bin/python tests/probe_cli.py --json=probe.json --keep=/tmp/probe

Every case runs ``python -m autodistill ...`` in a subprocess on the tiny set-up of
tests/search/tiny_search.py (a 2-layer teacher, a synthetic corpus, 4 students), most of them on
a copy of one finished tiny ``demo`` workdir. The table has, per case: the exit code, how many
lines went to stderr, whether one was a traceback, whether the workdir's existing files are
unchanged byte for byte, and whether that is what the hardening issue asks for (``ok``): exit 1
(130 for Ctrl-C) with one stderr line naming the cause and the fix, no traceback, nothing lost.
tests/test_hardening.py asserts the same cases in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "search")]
TINY_ARCH = "Model_24_16_2_32_1"
EXPERIMENT = '''import pathlib, sys
sys.path.insert(0, {search!r})
from tiny_search import make_config


def get_config(root):
  return make_config(pathlib.Path(root))
'''


@dataclasses.dataclass
class Case:
  """One probe: ``prepare(workdir)`` returns the command's arguments (after ``autodistill``)."""

  name: str
  prepare: Callable[[pathlib.Path], list[str]]
  expect_exit: int = 1
  expect: str = ""  # a fragment the stderr line (or stdout, for exit 0) must hold
  demo_copy: bool = False  # run on a copy of the finished demo workdir
  special: Optional[str] = None  # "two_searches" or "ctrl_c"


@dataclasses.dataclass
class Outcome:
  case: str
  command: str
  exit: Optional[int]
  stderr_lines: int
  traceback: bool
  unchanged: Optional[bool]
  ok: bool
  first_line: str
  seconds: float


def snapshot(directory: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".autodistill.lock"}


class Probe:
  """The set-up (tiny teacher, corpus, experiment file, finished demo) and the runner."""

  def __init__(self, repo: pathlib.Path, scratch: pathlib.Path):
    from tiny_search import make_setup  # pylint: disable=import-outside-toplevel
    self.repo, self.scratch = repo, scratch
    self.root = scratch / "root"
    make_setup(self.root)
    self.experiment = scratch / "tiny.py"
    self.experiment.write_text(EXPERIMENT.format(search=str(HERE / "search")))
    self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(HERE),
                                                            str(HERE / "search")]))
    self.demo = scratch / "demo"

  def argv(self, args: list[str], workdir: pathlib.Path) -> list[str]:
    command, rest = args[0], args[1:]
    config = [] if any(a.startswith("--config=") for a in rest) else [
        f"--config={self.experiment}:{self.root}"]
    workdir_flag = [] if any(a.startswith("--workdir=") for a in rest) else [
        f"--workdir={workdir}"]
    return [sys.executable, "-m", "autodistill", command, *config, *workdir_flag, *rest]

  # Every process runs in the scratch directory: `python -m` puts the current directory first on
  # sys.path, which would shadow --repo when the probe is started from another checkout.
  def run(self, args: list[str], workdir: pathlib.Path,
          timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(self.argv(args, workdir), env=self.env, capture_output=True,
                          text=True, timeout=timeout, cwd=self.scratch)

  def make_demo(self) -> None:
    start = time.time()
    result = self.run(["demo", "--config.search.num_trials=2"], self.demo)
    if result.returncode != 0:
      raise SystemExit(f"the tiny demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(f"# set-up: a finished tiny demo in {time.time() - start:.0f} s", file=sys.stderr)


def judge(case: Case, code: Optional[int], stdout: str, stderr: str,
          unchanged: Optional[bool]) -> tuple[int, bool, bool, str]:
  lines = [line for line in stderr.strip().splitlines() if line.strip()]
  traceback = "Traceback (most recent call last)" in stderr
  first = lines[0] if lines else ""
  if case.expect_exit == 0:
    ok = code == 0 and case.expect in stdout
  else:
    ok = (code == case.expect_exit and len(lines) == 1 and not traceback
          and case.expect in first)
  ok = ok and unchanged is not False
  return len(lines), traceback, ok, first


# ---------------------------------------------------------------------------------------------
# The cases


def cases(probe: Probe) -> list[Case]:
  root, scratch = probe.root, probe.scratch

  def vocab_big(_):
    from synthetic import vocab  # pylint: disable=import-outside-toplevel
    path = scratch / "vocab_big.txt"
    path.write_text("\n".join(vocab() + [f"extra{i}" for i in range(50)]) + "\n")
    return ["teacher", f"--config.data.vocab={path}"]

  def teacher_copy(name, edit=None, files=None):
    from safetensors.numpy import load_file, save_file  # pylint: disable=import-outside-toplevel
    target = scratch / name
    if not target.exists():
      shutil.copytree(root / "teacher", target)
      if edit is not None:
        weights = load_file(str(target / "model.safetensors"))
        save_file(edit(weights), str(target / "model.safetensors"))
      for file, content in (files or {}).items():
        if content is None:
          (target / file).unlink()
        else:
          (target / file).write_text(content)
    return target

  def nan_teacher(_):
    import numpy as np  # pylint: disable=import-outside-toplevel

    def poison(w):
      key = next(k for k in w if "word_embeddings" in k)
      w[key] = np.full_like(w[key], np.nan)
      return w
    return ["teacher", f"--config.teacher.path={teacher_copy('teacher_nan', poison)}"]

  def empty_study(workdir):
    (workdir / "study.sqlite").write_bytes(b"")
    return None

  def garbage_study(workdir):
    (workdir / "study.sqlite").write_bytes(b"not a database " * 300)

  def fitted_truncated(workdir):
    headless = teacher_copy("teacher_headless",
                            lambda w: {k: v for k, v in w.items() if not k.startswith("cls.")})
    args = ["teacher", f"--config.teacher.path={headless}", "--config.teacher.fit_steps=2"]
    result = probe.run(args, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    fitted = workdir / "teacher" / "fitted" / "model.safetensors"
    fitted.write_bytes(fitted.read_bytes()[:100])
    return args

  def student_truncated(workdir):
    metadata = workdir / "trials" / "0001" / "student" / "_METADATA"
    metadata.write_bytes(metadata.read_bytes()[:20])
    return ["export", "--source=trials/1"]

  def one_file_corpus(layout):
    def prepare(_):
      corpus = scratch / "one_file_corpus"
      if not corpus.exists():
        corpus.mkdir()
        docs = [p.read_text() for p in sorted((root / "corpus").glob("*.txt"))]
        (corpus / "all.txt").write_text("\n\n".join(" ".join(d.split()) for d in docs) + "\n")
        (corpus / "README.md").write_text("How this corpus was made.\n")
      if layout == "blank_lines":
        (corpus / "bad.txt").write_bytes(b"Caf\xe9 au lait is on the menu. It is short.\n")
      return ["teacher", f"--config.data.corpus={corpus}", f"--config.data.layout={layout}"]
    return prepare

  def tiny_corpus(_):
    corpus = scratch / "tiny_corpus"
    corpus.mkdir(exist_ok=True)
    for i in range(4):
      (corpus / f"{i}.txt").write_text(f"D{i}w1 d{i}w2 d{i}w3. D{i}w4 d{i}w5.\n")
    return ["teacher", f"--config.data.corpus={corpus}"]

  def bad_json_teacher(_):
    target = teacher_copy("teacher_bad_json", files={"config.json": '{"hidden_size": 32,'})
    return ["teacher", f"--config.teacher.path={target}"]

  def no_vocab_teacher(_):
    return ["teacher", f"--config.teacher.path={teacher_copy('teacher_no_vocab', files={'vocab.txt': None})}"]

  def a_file(_):
    blocker = scratch / "a_file"
    blocker.write_text("not a directory")
    return ["search", f"--workdir={blocker / 'w'}"]

  def fixed(*args):
    return lambda _: list(args)

  def then(first, second):
    def prepare(workdir):
      first(workdir)
      return second(workdir)
    return prepare

  return [
      # What already held before the hardening issue.
      Case("config field typo", fixed("search", "--config.search.num_trals=3"),
           expect="did you mean 'num_trials'"),
      Case("unknown preset", fixed("distill", f"--arch={TINY_ARCH}",
                                   "--config.distill.preset=fast"), expect="preset"),
      Case("unknown designer", fixed("search", "--config.search.designer=bayes"),
           expect="gp_bandit"),
      Case("unknown task", fixed("finetune", "--task=glue/colaa"), expect="unknown task"),
      Case("invalid architecture", fixed("distill", "--arch=Model_24_16_3_32_1"),
           expect="not divisible"),
      Case("missing teacher", fixed("teacher", "--config.teacher.path=/nonexistent/teacher"),
           expect="--config.teacher.path"),
      Case("workdir is a file", a_file, expect="--workdir="),
      Case("workdir in /proc", fixed("search", "--workdir=/proc/autodistill"),
           expect="--workdir="),
      # 1. Teacher and tokenizer.
      Case("1 vocab larger than teacher", vocab_big, expect="--config.data.vocab"),
      Case("1 teacher with NaN outputs", nan_teacher, expect="not finite"),
      # 2. One run per workdir.
      Case("2 second search on a busy workdir", fixed("search"), expect="in use by PID",
           special="two_searches"),
      # 3. Damaged studies.
      Case("3 emptied study: report", then(empty_study, fixed("report")),
           expect="study.sqlite is empty", demo_copy=True),
      Case("3 emptied study: search", then(empty_study, fixed("search")),
           expect="study.sqlite is empty", demo_copy=True),
      Case("3 garbage study: report", then(garbage_study, fixed("report")),
           expect="cannot be read as an SQLite database", demo_copy=True),
      # 4. Damaged caches.
      Case("4 truncated fitted teacher heads", fitted_truncated, expect="fitted anew"),
      Case("4 truncated student on export", student_truncated,
           expect="cannot be read as an Orbax checkpoint", demo_copy=True),
      # 5. Corpora.
      Case("5 one file of many documents", one_file_corpus("file"),
           expect="--config.data.layout=blank_lines"),
      Case("5 blank-line layout, .md skipped, bytes reported", one_file_corpus("blank_lines"),
           expect_exit=0, expect="replaced 1 undecodable bytes"),
      Case("5 corpus too small for a batch", tiny_corpus, expect="one batch needs"),
      # 6. Values and teacher files.
      Case("6 data.batch_size=0", fixed("search", "--config.data.batch_size=0"),
           expect="config.data.batch_size=0"),
      Case("6 data.seq_len=0", fixed("search", "--config.data.seq_len=0"),
           expect="config.data.seq_len=0"),
      Case("6 distill.pretrain_steps=-5", fixed("distill", f"--arch={TINY_ARCH}",
                                                "--config.distill.pretrain_steps=-5"),
           expect="config.distill.pretrain_steps=-5"),
      Case("6 search.num_trials=-1", fixed("search", "--config.search.num_trials=-1"),
           expect="config.search.num_trials=-1"),
      Case("6 teacher config.json not JSON", bad_json_teacher, expect="config.json"),
      Case("6 teacher without vocab.txt", no_vocab_teacher, expect="--config.data.vocab"),
      # 7. Ctrl-C.
      Case("7 Ctrl-C during distill", fixed("distill", f"--arch={TINY_ARCH}",
                                            "--config.distill.pretrain_steps=300",
                                            "--config.distill.checkpoint_every=100",
                                            "--config.distill.log_every=10"),
           expect_exit=130, expect="saved a checkpoint", special="ctrl_c"),
  ]


# ---------------------------------------------------------------------------------------------
# Running them


def _wait_for(predicate: Callable[[], bool], process: subprocess.Popen, timeout: float) -> bool:
  deadline = time.time() + timeout
  while time.time() < deadline and process.poll() is None:
    if predicate():
      return True
    time.sleep(0.2)
  return False


def run_special(probe: Probe, case: Case, args: list[str],
                workdir: pathlib.Path) -> tuple[Optional[int], str, str, str]:
  """The cases with a second process: (exit, stdout, stderr, note)."""
  if case.special == "two_searches":
    first = subprocess.Popen(probe.argv(args + ["--config.search.num_trials=3"], workdir),
                             env=probe.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True, cwd=probe.scratch)
    _wait_for(lambda: (workdir / "trials").exists(), first, 600)
    second = probe.run(args + ["--config.search.num_trials=3"], workdir, timeout=600)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    rerun = probe.run(args + ["--config.search.num_trials=3"], workdir)
    note = f"after kill -9 of the first, a rerun exits {rerun.returncode}"
    return second.returncode, second.stdout, second.stderr, note
  if case.special == "ctrl_c":
    process = subprocess.Popen(probe.argv(args, workdir), env=probe.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=probe.scratch)

    def training() -> bool:
      found = list(workdir.glob("distill/*/metrics.jsonl"))
      return bool(found) and len(found[0].read_text().splitlines()) >= 2
    _wait_for(training, process, 600)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=600)
    rerun = probe.run(args, workdir)
    resumed = "resumed from step" in rerun.stdout
    return (process.returncode, stdout, stderr,
            f"the rerun exits {rerun.returncode}" + (", resumed" if resumed else ""))
  raise ValueError(case.special)


def run_case(probe: Probe, case: Case, index: int) -> tuple[Outcome, str]:
  workdir = probe.scratch / "cases" / f"{index:02d}"
  if case.demo_copy:
    shutil.copytree(probe.demo, workdir, symlinks=True)
  else:
    workdir.mkdir(parents=True)
  args = case.prepare(workdir)
  before = snapshot(workdir) if any(workdir.iterdir()) else None
  start = time.time()
  note = ""
  if case.special:
    code, stdout, stderr, note = run_special(probe, case, args, workdir)
  else:
    result = probe.run(args, workdir)
    code, stdout, stderr = result.returncode, result.stdout, result.stderr
  unchanged = None
  if before is not None:
    after = snapshot(workdir)
    unchanged = all(after.get(k) == v for k, v in before.items())
  lines, traceback, ok, first = judge(case, code, stdout, stderr, unchanged)
  command = " ".join(args[:1] + [a for a in args[1:] if not a.startswith("--config=")])
  return Outcome(case.name, command, code, lines, traceback, unchanged, ok, first,
                 round(time.time() - start, 1)), note


def table(outcomes: list[tuple[Outcome, str]]) -> str:
  rows = ["| case | exit | stderr lines | traceback | existing files unchanged | as asked | "
          "first stderr line (cut) |", "|---|---|---|---|---|---|---|"]
  for o, note in outcomes:
    unchanged = "-" if o.unchanged is None else ("yes" if o.unchanged else "**no**")
    line = o.first_line[:150].replace("|", "\\|")
    if note:
      line += f" ({note})"
    rows.append(f"| {o.case} | {o.exit} | {o.stderr_lines} | {'yes' if o.traceback else 'no'} "
                f"| {unchanged} | {'ok' if o.ok else '**no**'} | {line} |")
  return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repo", default=str(HERE.parent),
                      help="the autodistill checkout to probe (default: this one)")
  parser.add_argument("--json", default="", help="also write the outcomes here")
  parser.add_argument("--keep", default="", help="work in this directory and keep it")
  parser.add_argument("-k", default="", help="only the cases whose name contains this")
  args = parser.parse_args(argv)
  scratch = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="autodistill-probe-"))
  scratch.mkdir(parents=True, exist_ok=True)
  probe = Probe(pathlib.Path(args.repo).resolve(), scratch)
  selected = [c for c in cases(probe) if args.k in c.name]
  if any(c.demo_copy for c in selected):
    probe.make_demo()
  outcomes = []
  for index, case in enumerate(selected):
    outcome, note = run_case(probe, case, index)
    print(f"# {case.name}: exit {outcome.exit}, {'ok' if outcome.ok else 'NOT as asked'} "
          f"({outcome.seconds} s)", file=sys.stderr, flush=True)
    outcomes.append((outcome, note))
  print(table(outcomes))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(
        [dict(dataclasses.asdict(o), note=n) for o, n in outcomes], indent=2) + "\n")
  if not args.keep:
    shutil.rmtree(scratch, ignore_errors=True)
  return 0 if all(o.ok for o, _ in outcomes) else 1


if __name__ == "__main__":
  sys.exit(main())
