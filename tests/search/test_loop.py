"""The search loop end to end on a tiny real set-up: real flash distillation and latency.

No stub evaluators here: every trial runs the real distillation of a tiny student from a tiny
teacher (tests/search/tiny_search.py).
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from autodistill import pipeline
from autodistill.config import parse_config
from autodistill.train import NonFiniteLossError
from autodistill.models import hf
from autodistill.search import IncompatibleStudyError, loop
from autodistill.search.records import COMPLETED, INFEASIBLE, TIME_PARTS

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from tiny_search import make_config, write_experiment  # noqa: E402

SCRIPT = pathlib.Path(__file__).parent / "tiny_search.py"
ROOT_DIR = pathlib.Path(__file__).resolve().parent.parent.parent


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = str(ROOT_DIR) + os.pathsep + env.get("PYTHONPATH", "")
  return env


@pytest.fixture(scope="module")
def setup_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiny_search")
  make_config(root)  # writes the teacher and corpus once
  return root


def test_search_writes_every_output_and_constraints_prune_before_distillation(
    setup_root, tmp_path, monkeypatch):
  distilled = []
  real_distill = loop.evaluate_student.__globals__["distill"]

  def counting_distill(student, *args, **kwargs):
    distilled.append(student.name)
    return real_distill(student, *args, **kwargs)

  monkeypatch.setitem(loop.evaluate_student.__globals__, "distill", counting_distill)
  # The student with two FFNs of intermediate size 48 (the baseline) has more parameters than
  # this limit: pruned, never distilled. Each student its own programs here (search.elastic off): the path of a space
  # whose students cannot share an envelope.
  from autodistill.models import params as counting
  config = make_config(setup_root, **{"search.num_trials": 2, "search.max_suggestions": 12,
                                      "search.elastic": False})
  small = parse_config(config).space.config({"hidden_size": 32, "bottleneck_size": 16,
                                          "num_heads": 2, "intermediate_size": 32, "num_ffn": 2},
                                         vocab_size=612, max_position_embeddings=64)
  config.search.max_params = counting.analytic_param_count(small, heads=False)
  messages = []
  result = pipeline.search_stage(config, tmp_path, log=messages.append)

  by_id = {r.trial_id: r for r in result.records}
  assert by_id[1].is_baseline and by_id[1].status == INFEASIBLE  # the baseline is too big
  assert "max_params" in by_id[1].reason and by_id[1].distill_s is None
  pruned = [r for r in result.records if r.status == INFEASIBLE]
  assert all((r.factors["intermediate_size"], r.factors["num_ffn"]) == (48, 2) for r in pruned)
  assert all(not (tmp_path / r.workdir / "checkpoints").exists() for r in pruned)
  assert not any(name.startswith("Model_32_16_2_48_2-") for name in distilled)
  completed = [r for r in result.records if r.status == COMPLETED and not r.repeat_of]
  assert len(completed) == 2 and len(distilled) == 2
  for r in completed:  # where each trial's time went, adding up to its distillation + latency
    assert set(r.seconds) == set(TIME_PARTS) and r.seconds["train"] > 0, r.seconds
    assert r.seconds["compile"] > 0
    assert abs(sum(r.seconds.values()) - r.distill_s - r.latency_s) < 0.05
  assert any(m.startswith(f"trial {completed[0].trial_id}: ") and "compile" in m
             for m in messages)
  for r in result.records:  # a student suggested again reuses its result, not distilled twice
    if r.repeat_of:
      assert by_id[r.repeat_of].name == r.name and by_id[r.repeat_of].status == r.status
  for r in completed:
    assert 0.0 <= r.mlm_accuracy <= 1.0 and r.latency_ms > 0 and r.params <= config.search.max_params
  for name in ("trials.csv", "trials.json", "pareto_front.json", "pareto_front.png",
               "summary.txt", "study.sqlite", "latency.sqlite"):
    assert (tmp_path / name).exists(), name
  table = json.loads((tmp_path / "trials.json").read_text())
  assert [row["trial_id"] for row in table] == sorted(by_id)
  assert result.front and all(r.status == COMPLETED for r in result.front)
  assert "trial" in result.summary

  # Paired noise: each trial's student re-scored per held-out prediction (the extracted student,
  # cached in its directory) averages to the trial's own held-out loss and accuracy.
  from autodistill.experiment import Experiment
  from autodistill.search.evaluate import paired_errors
  with Experiment.create(config, tmp_path, log=lambda _: None) as experiment:
    paired = paired_errors(experiment.search_context(), tmp_path)
    a, b = completed
    assert paired(a, b, "mlm_loss") > 0 and paired(a, a, "mlm_accuracy") == 0.0
    assert paired(a, b, "latency_ms") is None
    for r in completed:
      with np.load(tmp_path / r.workdir / "held_out_predictions.npz") as each:
        assert each["mlm_loss"].mean() == pytest.approx(r.mlm_loss, rel=1e-5)
        assert each["mlm_correct"].mean() == pytest.approx(r.mlm_accuracy, abs=1e-9)
        assert len(each["mlm_loss"]) == r.mlm_predictions
  # `autodistill report` evaluates nothing: it reads the scores the search cached, if any.
  cached = paired_errors(None, tmp_path)
  assert cached(a, b, "mlm_loss") == paired(a, b, "mlm_loss")
  (tmp_path / b.workdir / "held_out_predictions.npz").unlink()
  assert paired_errors(None, tmp_path)(a, b, "mlm_loss") is None

  # Re-running the finished search trains nothing and reports the same trials.
  distilled.clear()
  again = pipeline.search_stage(config, tmp_path, log=messages.append)
  assert distilled == [] and [r.to_dict() for r in again.records] == [
      r.to_dict() for r in result.records]

  # The workdir refuses a search with other settings instead of mixing two studies.
  other = make_config(setup_root, **{"search.num_trials": 2, "search.max_suggestions": 12,
                                     "search.designer": "quasi_random", "search.elastic": False})
  other.search.max_params = config.search.max_params
  with pytest.raises(IncompatibleStudyError, match="designer='random'.*fresh --workdir"):
    pipeline.search_stage(other, tmp_path, log=messages.append)
  assert distilled == []

  # Finalize: regular distillation of the front, exported as Orbax and Hugging Face checkpoints.
  config.finalize.max_students = 1
  summaries = pipeline.finalize_stage(config, tmp_path, log=messages.append)
  assert len(summaries) == 1
  winner = summaries[0]
  assert winner["trial_id"] in {r.trial_id for r in result.front}
  assert 0.0 <= winner["regular"]["mlm_accuracy"] <= 1.0
  assert winner["regular"]["steps"] == 2 * 2 + 3  # finalize's own recipe, not the search's
  student = hf.load_student(winner["hf"])
  assert student.config.name == winner["name"]
  assert (pathlib.Path(winner["orbax"])).exists()
  assert json.loads((tmp_path / "final" / "summary.json").read_text()) == summaries
  with pytest.raises(ValueError, match="no trial 99"):
    pipeline.finalize_stage(_with_trials(config, (99,)), tmp_path, log=messages.append)


def _with_trials(config, trials):
  config = config.copy_and_resolve_references()
  config.finalize.trials = trials
  return config


def test_a_failing_trial_is_infeasible_and_the_search_goes_on(setup_root, tmp_path, monkeypatch):
  real_distill = loop.evaluate_student.__globals__["distill"]

  def distill_failing_for_one_ffn(student, *args, **kwargs):
    if student.num_ffn == 1:
      raise NonFiniteLossError("pretraining_distillation", 3, {"mlm": float("nan")})
    return real_distill(student, *args, **kwargs)

  monkeypatch.setitem(loop.evaluate_student.__globals__, "distill", distill_failing_for_one_ffn)
  config = make_config(setup_root, **{"search.num_trials": 4, "search.designer": "quasi_random"})
  result = pipeline.search_stage(config, tmp_path, log=lambda m: None)
  failed = [r for r in result.records if r.factors.get("num_ffn") == 1]
  ok = [r for r in result.records if r.factors.get("num_ffn") == 2]
  assert failed and ok
  for r in failed:
    assert r.status == INFEASIBLE and "NonFiniteLossError" in r.reason
    assert (tmp_path / r.workdir / "error.txt").exists()
  assert all(r.status == COMPLETED for r in ok)
  assert len(result.records) >= 4


def _distilling_trial(workdir):
  """The id of a trial (after the first) that has a checkpoint and no result yet, or None."""
  if not (workdir / "trials" / "0001" / "record.json").exists():
    return None
  for trial_dir in sorted((workdir / "trials").iterdir()):
    checkpoints = trial_dir / "checkpoints"
    if (trial_dir.name != "0001" and not (trial_dir / "record.json").exists()
        and checkpoints.exists() and any(p.name.isdigit() for p in checkpoints.iterdir())):
      return int(trial_dir.name)
  return None


def test_kill_and_resume_loses_and_repeats_nothing(setup_root, tmp_path):
  """SIGKILL a real search subprocess in the middle of a trial, re-run the same command."""
  workdir = tmp_path / "work"
  command = [sys.executable, str(SCRIPT), "search", str(setup_root), str(workdir),
             "search.num_trials=3", "search.designer=\"quasi_random\"",
             "distill.steps_per_block=3", "distill.pretrain_steps=8",
             "distill.checkpoint_every=2"]
  process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
  killed = None
  deadline = time.time() + 600
  while time.time() < deadline and process.poll() is None and killed is None:
    killed = _distilling_trial(workdir) if (workdir / "trials").exists() else None
    time.sleep(0.1)
  assert process.poll() is None, process.stdout.read().decode()[-3000:]
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  before = {int(p.parent.name): json.loads(p.read_text())
            for p in (workdir / "trials").glob("*/record.json")}
  assert killed not in before and 1 in before

  rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert f"trial {killed}" in rerun.stdout and "resuming" in rerun.stdout
  table = json.loads((workdir / "trials.json").read_text())
  ids = [row["trial_id"] for row in table]
  assert ids == list(range(1, len(ids) + 1))  # nothing lost, nothing repeated
  for trial_id, record in before.items():  # trials completed before the kill are kept as they were
    assert table[trial_id - 1] == record
  assert table[killed - 1]["status"] == COMPLETED
  assert sum(1 for row in table if row["status"] == COMPLETED and not row["repeat_of"]) == 3
  metrics = [json.loads(line) for line in
             (workdir / "trials" / f"{killed:04d}" / "metrics.jsonl").read_text().splitlines()]
  steps = [m["step"] for m in metrics if "loss" in m]
  assert steps == sorted(set(steps))  # resumed from the checkpoint: no step twice


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


def test_two_workers_complete_distinct_trials_of_one_study(setup_root, tmp_path):
  """`python -m autodistill serve` (the real entry point, flags and experiment file) serves a
  study on loopback; two worker processes, each with its own client id, complete it."""
  server_dir, port = tmp_path / "server", _free_port()
  experiment = write_experiment(tmp_path / "tiny.py")
  options = ["search.num_trials=4"]
  server = subprocess.Popen(
      [sys.executable, "-m", "autodistill", "serve", f"--config={experiment}:{setup_root}",
       f"--workdir={server_dir}", "--config.search.num_trials=4", "--host=localhost",
       f"--port={port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
  try:
    deadline = time.time() + 120
    while time.time() < deadline and server.poll() is None:
      with socket.socket() as sock:
        if sock.connect_ex(("localhost", port)) == 0:
          break
      time.sleep(0.2)
    assert server.poll() is None, server.stdout.read()[-3000:]
    endpoint = f"localhost:{port}"
    workers = [subprocess.Popen(
        [sys.executable, str(SCRIPT), "search", str(setup_root), str(tmp_path / f"worker{i}"),
         f'search.endpoint="{endpoint}"', f'search.client_id="worker-{i}"'] + options,
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for w, out in zip(workers, outputs):
      assert w.returncode == 0, out[-3000:]
    server_out = server.communicate(timeout=120)[0]
    assert server.returncode == 0, server_out[-3000:]
  finally:
    for p in [server] + locals().get("workers", []):
      if p.poll() is None:
        p.kill()
  assert "serving study" in server_out
  # The server's last progress line: every trial evaluated, none running. Two workers may
  # overshoot by one trial each, and both may finish between two polls of the server, so the
  # count can go from 3/4 straight to 5/4.
  last = re.findall(r"study: (\d+)/4 evaluated \(\d+ completed, (\d+) running\)", server_out)[-1]
  assert int(last[0]) >= 4 and last[1] == "0", server_out[-3000:]
  assert (server_dir / "pareto_front.png").exists()  # the server writes the outputs at the end
  table = json.loads((server_dir / "trials.json").read_text())
  ids = [row["trial_id"] for row in table]
  assert len(ids) == len(set(ids)) >= 4
  clients = {row["client_id"] for row in table if row["status"] == COMPLETED}
  assert clients == {"worker-0", "worker-1"}
  for i in range(2):  # each worker distilled only its own trials, in its own workdir
    mine = {row["trial_id"] for row in table if row["client_id"] == f"worker-{i}"}
    dirs = {int(p.name) for p in (tmp_path / f"worker{i}" / "trials").iterdir()}
    assert dirs == mine
