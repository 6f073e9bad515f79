"""Bad input and faults through the command line: each is one line on stderr with the fix, exit 1
(130 for Ctrl-C), no traceback, and the workdir's existing files unchanged byte for byte.

The commands run in this process through :func:`autodistill.main.execute` (what the entry point
calls after parsing) on the tiny set-up of tests/search/tiny_search.py; the lock and Ctrl-C go
through real processes. ``python tests/probe_cli.py`` replays the same cases against the real
entry point and prints a table.
"""

import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "search"))
from tiny_search import make_config, make_setup  # noqa: E402

from cli_support import one_line_error, run_command  # noqa: E402
from synthetic import vocab  # noqa: E402

TINY_ARCH = "Model_24_16_2_32_1"


@pytest.fixture()
def run(capsys):
  return lambda *args, **kwargs: run_command(capsys, *args, **kwargs)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("hardening")
  make_setup(root)
  return root


def snapshot(directory):
  """{relative path: sha256} of every file under ``directory`` but the lock file."""
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(pathlib.Path(directory).rglob("*"))
          if p.is_file() and p.name != ".autodistill.lock"}


def unchanged(before, directory):
  """The files of ``before`` are still there, byte for byte (new files may have appeared)."""
  after = snapshot(directory)
  return {k: v for k, v in before.items() if after.get(k) != v} == {}


def _teacher_copy(root, tmp_path, edit):
  """A copy of the tiny teacher whose safetensors weights ``edit`` changed in place."""
  from safetensors.numpy import load_file, save_file
  teacher = tmp_path / "teacher"
  shutil.copytree(root / "teacher", teacher)
  weights = load_file(str(teacher / "model.safetensors"))
  save_file(edit(weights), str(teacher / "model.safetensors"))
  return teacher


# ---------------------------------------------------------------------------------------------
# 1. Teacher and tokenizer must fit; a non-finite teacher is an error


def test_a_tokenizer_larger_than_the_teacher_vocabulary_is_refused_before_any_work(
    run, root, tmp_path):
  big = tmp_path / "vocab.txt"
  big.write_text("\n".join(vocab() + [f"extra{i}" for i in range(50)]) + "\n")
  workdir = tmp_path / "work"
  result = run("teacher", make_config(root, **{"data.vocab": str(big)}), workdir)
  one_line_error(result, f"has {len(vocab()) + 50} tokens", f"has {len(vocab())} rows",
                 "--config.data.vocab")
  assert not (workdir / "data_cache").exists() and not (workdir / "teacher").exists()


def test_a_teacher_with_non_finite_outputs_is_an_error_at_the_teacher_stage(run, root, tmp_path):
  def poison(weights):
    key = next(k for k in weights if "word_embeddings" in k)
    weights[key] = np.full_like(weights[key], np.nan)
    return weights

  teacher = _teacher_copy(root, tmp_path, poison)
  result = run("teacher", make_config(root, **{"teacher.path": str(teacher)}), tmp_path / "w")
  one_line_error(result, "held-out mlm_loss=nan", "not finite", "--config.teacher.path")


# ---------------------------------------------------------------------------------------------
# 2. One run per workdir


def _hold_lock(workdir, command):
  """A process holding ``workdir``'s lock as ``command`` would (until killed)."""
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom autodistill.workdir import lock_workdir\n"
       "with lock_workdir(sys.argv[1], sys.argv[2]):\n  print('locked', flush=True)\n"
       "  time.sleep(600)\n", str(workdir), command],
      stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert holder.stdout.readline().strip() == "locked"
  return holder


def test_a_locked_workdir_is_refused_with_the_holder_and_a_killed_holder_does_not_block(
    run, root, tmp_path):
  from autodistill.workdir import lock_workdir
  workdir = tmp_path / "work"
  (workdir / "trials.csv").parent.mkdir(parents=True)
  (workdir / "trials.csv").write_text("trial_id\n1\n")
  before = snapshot(workdir)
  holder = _hold_lock(workdir, "search")
  try:
    result = run("search", make_config(root), workdir)
    one_line_error(result, f"is in use by PID {holder.pid}", "`autodistill search`",
                   "another --workdir", "autodistill serve")
    assert unchanged(before, workdir)
  finally:
    holder.kill()  # SIGKILL: no chance to clean up
    holder.wait()
  with lock_workdir(workdir, "test") as path:  # the kernel released the dead holder's lock
    assert (path / ".autodistill.lock").read_text().startswith('{"pid": %d' % os.getpid())


def test_a_search_worker_may_share_the_workdir_of_its_serve_and_nothing_else_may(tmp_path):
  from autodistill.errors import WorkdirBusyError
  from autodistill.workdir import lock_workdir
  server = _hold_lock(tmp_path, "serve")
  try:
    with lock_workdir(tmp_path, "search", beside=("serve",)) as path:  # a worker
      assert path == tmp_path
    with pytest.raises(WorkdirBusyError, match=r"in use by PID \d+ \(`autodistill serve`"):
      with lock_workdir(tmp_path, "search"):  # a search with its own in-process server
        pass
  finally:
    server.kill()
    server.wait()


# ---------------------------------------------------------------------------------------------
# 3. A study that cannot be read stops the run and is never re-created


@pytest.mark.parametrize("content, problem", [
    (b"", "study.sqlite is empty (0 bytes)"),
    (b"SQLite? no. " * 400, "study.sqlite cannot be read as an SQLite database"),
])
def test_an_emptied_or_damaged_study_stops_report_and_search(run, root, tmp_path, content,
                                                              problem):
  workdir = tmp_path / "work"
  workdir.mkdir()
  (workdir / "study.sqlite").write_bytes(content)
  (workdir / "trials.csv").write_text("trial_id,status\n1,COMPLETED\n2,COMPLETED\n")
  before = snapshot(workdir)
  for command in ("report", "search"):
    result = run(command, make_config(root), workdir)
    one_line_error(result, problem, "restore it from a backup", "move it away")
    assert unchanged(before, workdir), command
    assert (workdir / "study.sqlite").read_bytes() == content


# ---------------------------------------------------------------------------------------------
# 4. Damaged caches name the file and the fix


def test_a_truncated_cache_of_fitted_teacher_heads_is_named(run, root, tmp_path):
  teacher = _teacher_copy(root, tmp_path, lambda w: {k: v for k, v in w.items()
                                                     if not k.startswith("cls.")})
  config = make_config(root, **{"teacher.path": str(teacher), "teacher.fit_steps": 2})
  workdir = tmp_path / "work"
  run("teacher", config, workdir, check=0)
  fitted = workdir / "teacher" / "fitted" / "model.safetensors"
  fitted.write_bytes(fitted.read_bytes()[:100])
  before = snapshot(workdir)
  one_line_error(run("teacher", config, workdir), "fitted/model.safetensors",
                 "cannot be read", f"delete {workdir / 'teacher'}", "adapted anew")
  assert unchanged(before, workdir)


def test_a_truncated_student_checkpoint_is_named_on_export(run, root, tmp_path):
  workdir = tmp_path / "work"
  run("distill", make_config(root), workdir, check=0, arch=TINY_ARCH)
  source, = (workdir / "distill").iterdir()  # the name carries the space's fixed fields too
  metadata = source / "student" / "_METADATA"
  metadata.write_bytes(metadata.read_bytes()[:20])
  before = snapshot(workdir)
  result = run("export", make_config(root), workdir, source=f"distill/{source.name}")
  one_line_error(result, f"{source / 'student'} cannot be read as an Orbax checkpoint",
                 f"delete {source}", "distilled anew")
  (source / "result.json").write_text('{"student": ')
  result = run("export", make_config(root), workdir, source=f"distill/{source.name}")
  one_line_error(result, "result.json cannot be read as JSON", f"delete {source}")
  assert unchanged({k: v for k, v in before.items() if not k.endswith("result.json")}, workdir)


# ---------------------------------------------------------------------------------------------
# 5. Corpora: layouts, extensions, what was skipped or replaced


def _one_file_corpus(root, tmp_path):
  corpus = tmp_path / "one_file"
  corpus.mkdir()
  documents = [p.read_text() for p in sorted((root / "corpus").glob("*.txt"))]
  # Documents separated by blank lines, each document's sentences on one line.
  text = "\n\n".join(" ".join(doc.split()) for doc in documents) + "\n"
  (corpus / "all.txt").write_text(text)
  (corpus / "README.md").write_text("How this corpus was made: not part of it.\n")
  return corpus


def test_one_file_of_many_documents_needs_the_blank_line_layout_and_says_so(run, root, tmp_path):
  corpus = _one_file_corpus(root, tmp_path)
  config = make_config(root, **{"data.corpus": str(corpus)})
  for _ in range(2):  # the second time, the corpus is read from the tokenized cache
    one_line_error(run("teacher", config, tmp_path / "a"), "1 documents in 1 files",
                   "--config.data.layout=blank_lines")
  (corpus / "bad.txt").write_bytes(b"Caf\xe9 au lait is on the menu. The menu is short.\n")
  config = make_config(root, **{"data.corpus": str(corpus), "data.layout": "blank_lines"})
  result = run("teacher", config, tmp_path / "b", check=0)
  corpus_line = next(line for line in result.stdout.splitlines() if line.startswith("corpus:"))
  assert "31 documents from 2 files" in corpus_line  # README.md is not read
  assert "skipped 1 files of other types" in corpus_line
  assert "replaced 1 undecodable bytes in 1 files" in corpus_line


def test_a_corpus_too_small_for_one_batch_is_one_line(run, root, tmp_path):
  corpus = tmp_path / "tiny_corpus"
  corpus.mkdir()
  for i in range(4):
    (corpus / f"{i}.txt").write_text(f"D{i}w1 d{i}w2 d{i}w3. D{i}w4 d{i}w5.\n")
  one_line_error(run("teacher", make_config(root, **{"data.corpus": str(corpus)}), tmp_path / "w"),
                 "split has", "one batch needs 8")


# ---------------------------------------------------------------------------------------------
# 6. Values and teacher files


@pytest.mark.parametrize("field, value, allowed", [
    ("data.batch_size", 0, "a whole number > 0"),
    ("data.seq_len", 0, "a whole number > 0"),
    ("search.num_trials", -1, "a whole number > 0"),
    ("data.layout", "lines", "'blank_lines', 'file'"),
    ("data.extensions", "txt", "comma-separated file types"),
])
def test_bad_values_are_one_line_naming_field_value_and_what_is_allowed(run, root, tmp_path,
                                                                        field, value, allowed):
  result = run("search", make_config(root, **{field: value}), tmp_path)
  one_line_error(result, f"config.{field}={value!r}", allowed)
  assert not any(tmp_path.iterdir())  # refused before the workdir was touched


def test_broken_teacher_files_are_one_line_with_the_fix(run, root, tmp_path):
  teacher = tmp_path / "teacher"
  shutil.copytree(root / "teacher", teacher)
  (teacher / "vocab.txt").unlink()
  one_line_error(run("teacher", make_config(root, **{"teacher.path": str(teacher)}),
                     tmp_path / "w"), f"the teacher directory {teacher} holds neither vocab.txt",
                 "--config.data.vocab=")
  shutil.copy(root / "teacher" / "vocab.txt", teacher / "vocab.txt")
  (teacher / "config.json").write_text('{"hidden_size": 32,')
  one_line_error(run("teacher", make_config(root, **{"teacher.path": str(teacher)}),
                     tmp_path / "w"), "config.json cannot be read as JSON", "repair or replace")


# ---------------------------------------------------------------------------------------------
# 7. Ctrl-C


def test_ctrl_c_during_distill_saves_exits_130_and_the_rerun_resumes(run, root, tmp_path):
  workdir = tmp_path / "work"
  config = make_config(root, **{"distill.pretrain_steps": 300, "distill.checkpoint_every": 100,
                                "distill.log_every": 10})

  def press_ctrl_c_once_training():  # from another thread, as a terminal would
    deadline = time.time() + 300
    while time.time() < deadline:
      found = list(workdir.glob("distill/*/metrics.jsonl"))
      if found and len(found[0].read_text().splitlines()) >= 2:
        os.kill(os.getpid(), signal.SIGINT)
        return
      time.sleep(0.1)

  presser = threading.Thread(target=press_ctrl_c_once_training, daemon=True)
  presser.start()
  result = run("distill", config, workdir, arch=TINY_ARCH)
  presser.join()
  line = one_line_error(result, "autodistill distill: interrupted; saved a checkpoint at step",
                        "Run the same command again to resume", code=130)
  step = int(line.split("at step ")[1].split()[0])
  assert step % 100  # not a periodic checkpoint: the step in flight was saved
  assert next(workdir.glob(f"distill/*/checkpoints/{step}")).is_dir()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

  rerun = run("distill", config, workdir, check=0, arch=TINY_ARCH)
  assert f"resumed from step {step}" in rerun.stdout


def test_commands_use_a_compilation_cache_in_the_workdir_unless_one_is_chosen(tmp_path,
                                                                             monkeypatch):
  import jax
  from autodistill import workdir as workdir_lib
  # conftest chose one (JAX_COMPILATION_CACHE_DIR): a command leaves it alone.
  assert os.environ.get("JAX_COMPILATION_CACHE_DIR")
  assert workdir_lib.use_compilation_cache(tmp_path) is None
  chosen = jax.config.jax_compilation_cache_dir
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    assert workdir_lib.use_compilation_cache(tmp_path) == tmp_path / ".jax_cache"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / ".jax_cache")
  finally:
    jax.config.update("jax_compilation_cache_dir", chosen)
