"""The command line on a tiny config: its commands in-process, its parsing in a subprocess.

Every command runs through :func:`autodistill.main.execute` (what ``python -m autodistill`` calls
after parsing its flags) in this process, on the tiny but real set-up of
tests/search/tiny_search.py (a 2-layer teacher, a synthetic corpus, a 4-student space): one
interpreter, one set of compiled programs. A smoke test goes through the real entry point in a
subprocess: flag and config-override parsing with its one-line errors and help (the served study
with workers, through the entry point too, is tests/search/test_loop.py's two-worker test).
"""

import csv
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from autodistill import main as cli
from autodistill.models import hf

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "search"))
from tiny_search import make_config, make_setup, write_experiment  # noqa: E402

from cli_support import Run, one_line_error, run_command  # noqa: E402


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _cli(*args, timeout=600, cwd=None, check=None):
  """``python -m autodistill ARGS`` in a subprocess."""
  result = subprocess.run([sys.executable, "-m", "autodistill", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)
  if check is not None:
    assert result.returncode == check, result.stdout[-3000:] + result.stderr[-3000:]
  return result


@pytest.fixture()
def run(capsys):
  """``run(name, config, workdir, check=None, **flags)``: one command, in this process."""
  return lambda *args, **kwargs: run_command(capsys, *args, **kwargs)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  """The tiny set-up's root: the teacher and the corpus, written once."""
  root = tmp_path_factory.mktemp("cli_tiny")
  make_setup(root)
  return root


@pytest.fixture(scope="module")
def demo(root, tmp_path_factory):
  """A workdir where the `demo` command has run the whole pipeline on the tiny config."""
  workdir = tmp_path_factory.mktemp("cli_demo")
  out = io.StringIO()
  import contextlib  # pylint: disable=import-outside-toplevel
  with contextlib.redirect_stdout(out):
    cli.execute("demo", make_config(root, **{"search.num_trials": 2}), workdir)
  return workdir, Run(0, out.getvalue(), "")


def test_parsing_help_and_one_line_errors_through_the_entry_point(tmp_path):
  """Subprocess smoke test: what only the real entry point does (flags, overrides, help)."""
  result = _cli("summary", "--arch=Model_512_128_1_640_2", check=0)
  assert "Model_512_128_1_640_2: 32.10M parameters" in result.stdout
  result = _cli("summary", "--arch=Model_512_128_3_512_4", check=1)
  one_line_error(result, "bottleneck_size=128 is not divisible by num_heads=3")

  result = _cli("serch")
  assert result.returncode != 0 and "unknown command 'serch'" in result.stderr
  for name in cli.COMMANDS:
    assert f"  {name} " in result.stderr

  result = _cli("distill", "--help", check=0)
  assert result.stdout.startswith("usage: autodistill distill")
  assert "--arch:" in result.stdout and "config.distill.preset" in result.stdout

  result = _cli("search", f"--workdir={tmp_path}", "--config.serch.num_trials=3")
  one_line_error(result, "--config.serch.num_trials", "'serch'", "did you mean 'search'")
  result = _cli("search", f"--workdir={tmp_path}", "--config.search.num_trials=many")
  one_line_error(result, "--config.search.num_trials=many")
  result = _cli("search", f"--workdir={tmp_path}", f"--config={tmp_path / 'nope.py'}")
  one_line_error(result, "cannot load --config=", "No such file", "experiments/cpu_demo.py")
  # An experiment file with an argument, and an override whose value fails the config's checks.
  experiment = write_experiment(tmp_path / "tiny.py")
  result = _cli("search", f"--workdir={tmp_path}", f"--config={experiment}:{tmp_path}",
                "--config.search.num_trials=0")
  one_line_error(result, "config.search.num_trials=0", "a whole number > 0")


def test_every_command_has_help_that_explains_its_flags():
  for name, command in cli.COMMANDS.items():
    text = cli.command_help(name)
    assert text.startswith(f"usage: autodistill {name}")
    for flag in command.flags:
      assert f"--{flag}:" in text, (name, flag)
    if name != "summary":
      assert "--config:" in text and "--workdir:" in text and "--config.FIELD=VALUE" in text
      assert "search.designer='gp_bandit': gp_bandit | random" in text  # the config reference
  from autodistill.config import default_config, field_docs
  config, docs = default_config(), field_docs()
  assert sorted(docs) == sorted(f"{s}.{f}" for s in config.keys() for f in config[s].keys())
  assert all(docs.values()), [k for k, v in docs.items() if not v]  # every field is explained


def test_experiment_configs_load_and_pass_the_checks():
  from autodistill.config import default_config, parse_config
  from ml_collections import config_flags
  loaded = {}
  for path in sorted((REPO / "experiments").glob("*.py")):
    module = config_flags.config_flags._LoadConfigModule(path.stem, str(path))  # pylint: disable=protected-access
    assert module.__doc__ and "autodistill " in module.__doc__, path  # the command to run
    loaded[path.stem] = module
  assert set(loaded) >= {"paper_table1", "cpu_demo", "gpu", "pod", "autodistil_subspaces",
                         "kdnas"}
  assert loaded["cpu_demo"].get_config().to_dict() == default_config().to_dict()
  parse_config(loaded["cpu_demo"].get_config())
  paper = parse_config(loaded["paper_table1"].get_config("/ckpt/ib-bert-large"))
  plan = paper.distill.plan(paper.space.fixed["num_blocks"])
  assert (plan.progressive_steps, plan.pretrain_steps, plan.warmup_steps) == (12_000, 25_000, 500)
  final = paper.finalize.recipe.plan(24)
  assert (final.progressive_steps, final.pretrain_steps) == (240_000, 500_000)
  assert paper.data.batch_size == 2048 and paper.space.size == 576
  assert paper.teacher.path == "/ckpt/ib-bert-large"
  for subspace in ("tiny", "small", "base", "cpu"):
    settings = parse_config(loaded["autodistil_subspaces"].get_config(subspace))
    assert settings.space.num_valid == 256 and settings.supernet.recipe.sampling == "sandwich"
  small = parse_config(loaded["autodistil_subspaces"].get_config("small"))
  assert small.supernet.recipe.relation_heads == 12 and small.supernet.cost == "latency_ms"
  with pytest.raises(ValueError, match="unknown AutoDistil sub-space 'huge'"):
    loaded["autodistil_subspaces"].get_config("huge")
  pod = parse_config(loaded["pod"].get_config("finalize"))
  assert pod.runtime.mesh_shape == (16, 4) and pod.runtime.distributed
  # Regression: the winners' recipe was built from config.finalize, which has no mesh, so the
  # promised (data=16, model=4) mesh ran as pure data parallelism.
  assert pod.finalize.recipe.mesh_shape == (16, 4) and pod.finalize.recipe.dtype == "bfloat16"
  assert pod.distill.mesh_shape == (16, 4) and pod.finetune.recipe.mesh_shape == (16, 4)
  assert parse_config(loaded["gpu"].get_config()).runtime.mesh_shape == (-1, 1)
  kdnas = parse_config(loaded["kdnas"].get_config("3.5,6"))
  assert (kdnas.search.designer, kdnas.distill.objective) == ("kdnas", "multi_layer")
  assert json.loads(kdnas.search.designer_metadata()["kdnas"])["budget_ms"] == 3.5
  assert kdnas.search.latency_budgets_ms == (3.5, 6.0) and kdnas.search.proxy_documents == 128
  assert parse_config(loaded["kdnas"].get_config()).search.latency_budgets_ms == ()
  xlmr = parse_config(loaded["kdnas_xlmr"].get_config("/ckpt/xlm-roberta-base,8,16"))
  assert xlmr.teacher.path == "/ckpt/xlm-roberta-base" and xlmr.search.latency_budgets_ms == (8, 16)
  assert xlmr.space.num_valid == 48 and xlmr.distill.plan(6).total_steps == 2960
  with pytest.raises(ValueError, match="needs the XLM-R teacher's directory"):
    loaded["kdnas_xlmr"].get_config()


def test_teacher_latency_distill_and_export_commands(root, run, tmp_path, monkeypatch):
  # A fresh workdir, given relative to the current directory as users do (Orbax itself
  # refuses relative paths).
  workdir = tmp_path / "work"
  monkeypatch.chdir(tmp_path)
  config = make_config(root)
  result = run("teacher", config, "work", check=0)
  assert "teacher: 2 layers" in result.stdout
  summary = json.loads((workdir / "teacher" / "summary.json").read_text())
  assert summary["layers"] == 2 and 0.0 <= summary["evals"]["mlm_accuracy"] <= 1.0
  # The tiny random teacher predicts NSP at chance: L_N leaves eq. 3, so no NSP objective.
  assert "next-sentence prediction is dropped from the distillation objective" in result.stdout
  assert summary["nsp_weight"] == 0.0
  nsp_objective = make_config(root, **{"search.objectives": ("nsp_accuracy", "latency_ms")})
  result = run("teacher", nsp_objective, "work")
  one_line_error(result, "includes nsp_accuracy", "--config.distill.nsp_weight=1")

  result = run("latency", config, "work", check=0)
  rows = (workdir / "latency.csv").read_text().strip().splitlines()
  assert len(rows) == 1 + 4  # a header and the 4 students of the tiny space
  assert "4 measured, 0 failed" in result.stdout

  # The name leaves num_blocks and embedding_size to the space's fixed fields.
  result = run("distill", make_config(root, **{"distill.preset": "regular"}), "work",
               arch="Model_24_16_2_32_1", check=0)
  out = workdir / "distill" / "Model_24_16_2_32_1-num_blocks=2-embedding_size=16"
  recorded = json.loads((out / "result.json").read_text())
  assert recorded["preset"] == "regular" and recorded["global_step"] == 2 * 2 + 3
  assert "held-out MLM accuracy" in result.stdout
  assert hf.load_student(out / "hf").config.hidden_size == 24
  assert (out / "hf" / "vocab.txt").read_text() == (root / "teacher" / "vocab.txt").read_text()

  result = run("export", config, workdir, source="trials/7")
  one_line_error(result, "holds no finished distillation", "trials/0007")
  target = tmp_path / "exported"
  result = run("export", config, workdir, source=str(out.relative_to(workdir)),
               output=str(target), check=0)
  assert f"exported {out.name} to {target}" in result.stdout
  assert hf.load_student(target).config.name == out.name
  assert (target / "vocab.txt").exists()  # AutoTokenizer.from_pretrained(target) works


def test_search_report_and_finalize_commands(root, demo, run):
  workdir, _ = demo  # the demo's 2 trials; the search command adds a third
  config = make_config(root, **{"search.num_trials": 3})
  result = run("search", config, workdir, check=0)
  assert "trial 3:" in result.stdout and "trial 1:" not in result.stdout  # resumed, not redone
  records = json.loads((workdir / "trials.json").read_text())
  assert [r["trial_id"] for r in records] == [1, 2, 3]
  (workdir / "pareto_front.png").unlink()
  table = (workdir / "trials.csv").read_text()
  (workdir / "trials.csv").unlink()
  run("report", config, workdir, check=0)
  assert (workdir / "pareto_front.png").exists()
  assert (workdir / "trials.csv").read_text() == table  # rebuilt from the study alone

  result = run("finalize", make_config(root, **{"search.num_trials": 3, "finalize.trials": (3,)}),
               workdir, check=0)
  final = json.loads((workdir / "final" / "summary.json").read_text())
  assert [f["trial_id"] for f in final] == [3] and final[0]["regular"]["steps"] == 2 * 2 + 3
  assert hf.load_student(final[0]["hf"]).config.name == final[0]["name"] == records[2]["name"]
  assert f"finalized {final[0]['name']}" in result.stdout


def test_finetune_command_adds_models_and_tasks_to_the_report(root, demo, run):
  workdir, _ = demo
  config = make_config(root)
  result = run("finetune", config, workdir, model="random,teacher",
               task="bbc_topic,tweet_sentiment", check=0)
  rows = list(csv.DictReader(io.StringIO((workdir / "finetune" / "report.csv").read_text())))
  models = [row["model"] for row in rows]
  final = json.loads((workdir / "pipeline.json").read_text())["final"][0]["name"]
  assert models[-1] == "majority class"
  assert {f"random-{final}", "BERT_2L_32H"} <= set(models)
  by_model = {row["model"]: row for row in rows}
  for model in (f"random-{final}", "BERT_2L_32H"):
    assert 0 <= float(by_model[model]["BBC"]) <= 100 and 0 <= float(by_model[model]["Tweets"]) <= 100
    assert by_model[model]["avg"]  # both columns present
  assert by_model[final]["Tweets"] == "" and by_model[final]["avg"] == ""  # not run on tweets
  assert "random-" + final in result.stdout
  # The teacher is swept over its own (BERT-size) learning rates, the students over theirs.
  rates = lambda model: [r["learning_rate"] for r in json.loads(  # noqa: E731
      (workdir / "finetune" / model / "bbc_topic" / "result.json").read_text())["runs"]]
  assert rates("BERT_2L_32H") == list(config.finetune.teacher_learning_rates) == [5e-5, 1e-4]
  assert rates(f"random-{final}") == list(config.finetune.learning_rates) == [3e-3]
  # Finished pairs are read back, not run again.
  again = run("finetune", config, workdir, model="teacher", task="bbc_topic", check=0)
  assert "done earlier" in again.stdout and "steps of batch" not in again.stdout


def test_demo_runs_the_whole_pipeline(demo):
  workdir, result = demo
  for stage in ("[1/5] teacher", "[2/5] latency", "[3/5] search", "[4/5] finalize",
                "[5/5] fine-tune final on bbc_topic"):
    assert stage in result.stdout
  pipeline = json.loads((workdir / "pipeline.json").read_text())
  assert set(pipeline["stages"]) == {"teacher", "latency", "search", "finalize", "finetune"}
  [tuned] = pipeline["finetune"]
  assert tuned["model"] == pipeline["final"][0]["name"] and tuned["task"] == "bbc_topic"
  assert 0.0 <= tuned["scores"]["BBC"] <= 1.0 and tuned["metric"] == "accuracy"
  result_json = workdir / "finetune" / tuned["model"] / "bbc_topic" / "result.json"
  assert json.loads(result_json.read_text())["runs"][0]["steps"] <= 4
  report = (workdir / "finetune" / "report.md").read_text()
  assert tuned["model"] in report and "majority class" in report and "| BBC |" in report
  assert pipeline["search"]["trials"] == 2 and pipeline["search"]["latencies_measured"] == 4
  assert pipeline["final"] and pathlib.Path(pipeline["final"][0]["hf"], "config.json").exists()
  assert pathlib.Path(pipeline["final"][0]["hf"], "vocab.txt").exists()
  for name in ("trials.csv", "trials.json", "pareto_front.json", "pareto_front.png",
               "summary.txt", "study.sqlite", "latency.csv", "teacher/summary.json"):
    assert (workdir / name).exists(), name
  tail = result.stdout[result.stdout.index("== done in"):]
  assert f"fine-tuned {tuned['model']} on bbc_topic: accuracy BBC" in tail
  for output in ("pareto_front.png", "trials.csv", pipeline["final"][0]["hf"], "report.md"):
    assert output in tail  # the final summary points at the plot, the table and the model


# The errors people hit first: one line with the cause and the fix, exit code 1, no traceback.

# gRPC's C++ core (under the Vizier service) may log a connection event such as "Got goaway" as
# the in-process server stops, in glog format; autodistill sets GRPC_VERBOSITY=ERROR against it,
# but such a line is not ours to format, so it is not counted.
def test_unknown_task_and_missing_final_students(run, tmp_path):
  from autodistill.config import default_config
  result = run("finetune", default_config(), tmp_path, task="glue/colaa")
  one_line_error(result, "unknown task 'glue/colaa'", "glue/cola", "bbc_topic")
  result = run("finetune", default_config(), tmp_path, task="bbc_topic")
  one_line_error(result, "no finalized students", "--model=teacher")


def test_missing_teacher_corpus_and_bad_values(run, root, tmp_path):
  config = make_config(root, **{"teacher.path": str(tmp_path / "nope")})
  one_line_error(run("search", config, tmp_path), "teacher checkpoint not found",
                  "--config.teacher.path")
  config = make_config(root, **{"data.corpus": str(tmp_path / "nope")})
  one_line_error(run("teacher", config, tmp_path), "corpus not found", "--config.data.corpus")
  config = make_config(root, **{"latency.seq_len": 4096})
  one_line_error(run("teacher", config, tmp_path), "config.latency.seq_len=4096 exceeds the "
                  "teacher's", "--config.latency.seq_len=")
  config = make_config(root, **{"distill.pretrain_steps": -5})
  one_line_error(run("distill", config, tmp_path, arch="Model_24_16_2_32_1"),
                  "config.distill.pretrain_steps=-5", ">= 0")
  config = make_config(root, **{"search.designer": "bayes"})
  one_line_error(run("search", config, tmp_path), "config.search.designer='bayes'", "gp_bandit")
  assert not (tmp_path / "study.sqlite").exists()  # nothing was started


def test_unwritable_workdir(run, root, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  result = run("search", make_config(root), blocker / "workdir")
  one_line_error(result, "cannot write to workdir", "--workdir=")


def test_workdir_of_an_incompatible_run(root, demo, run):
  workdir, _ = demo
  before = (workdir / "trials.json").read_text()
  result = run("search", make_config(root, **{"search.designer": "quasi_random"}), workdir)
  one_line_error(result, "designer", "quasi_random")
  assert (workdir / "trials.json").read_text() == before  # nothing lost


def test_a_roberta_teacher_runs_the_whole_pipeline(root, tmp_path):
  """A RoBERTa teacher (byte-level BPE, one token type, no NSP head) through every stage: the
  teacher stage fits a pooler and NSP head on the frozen encoder and, at chance, drops L_N;
  flash distillation on a proxy set (KD-NAS's), regular distillation on every training
  document, export with its tokenizer.json, fine-tuning."""
  from synthetic import write_tiny_roberta  # pylint: disable=import-outside-toplevel
  teacher = write_tiny_roberta(tmp_path / "roberta", root / "corpus", kind="roberta")
  config = make_config(root, **{"teacher.path": str(teacher), "teacher.fit_steps": 4,
                                "search.num_trials": 1, "search.proxy_documents": 10})
  workdir, out = tmp_path / "work", io.StringIO()
  import contextlib  # pylint: disable=import-outside-toplevel
  with contextlib.redirect_stdout(out):
    cli.execute("demo", config, workdir)
  assert "next-sentence prediction is dropped from the distillation objective" in out.getvalue()
  assert "trials distil on a proxy set; train: 10 documents (a proxy set of the split's 22)" \
      in out.getvalue()
  summary = json.loads((workdir / "teacher" / "summary.json").read_text())
  assert summary["trained"] == ["pooler", "nsp_head"] and summary["nsp_weight"] == 0.0
  assert hf.load_bert(workdir / "teacher" / "fitted").config.model_type == "roberta"
  pipeline = json.loads((workdir / "pipeline.json").read_text())
  assert set(pipeline["stages"]) == {"teacher", "latency", "search", "finalize", "finetune"}
  [final] = pipeline["final"]
  student = hf.load_student(final["hf"]).config
  assert student.type_vocab_size == 1
  assert student.vocab_size == hf.load_bert(teacher).config.vocab_size
  assert (pathlib.Path(final["hf"]) / "tokenizer.json").read_text() == \
      (teacher / "tokenizer.json").read_text()
  [tuned] = pipeline["finetune"]
  assert 0.0 <= tuned["scores"]["BBC"] <= 1.0


def test_supernet_command_trains_searches_extracts_and_reruns_without_retraining(root, run,
                                                                                tmp_path):
  """AutoDistil end to end on a tiny sub-space: SuperLM training, scoring every subnet, the
  search's outputs, the extracted student, which `export` and `finetune` then take."""
  from synthetic import tiny_supernet_space  # pylint: disable=import-outside-toplevel
  space = tiny_supernet_space()
  config = make_config(root, **{"supernet.steps": 4, "supernet.relation_heads": 2,
                                "supernet.warmup_steps": 1, "supernet.eval_batches": 1,
                                "supernet.max_params": 25_000, "supernet.extract": 2,
                                "supernet.proxy_task": "bbc_topic",
                                "supernet.proxy_candidates": 2, "supernet.proxy_steps": 2})
  config.space.definition = space.to_dict()
  workdir = tmp_path / "work"
  # Bad input first: one line each, nothing trained.
  bad = config.copy_and_resolve_references()
  bad.supernet.proxy_task = "mnli"
  one_line_error(run("supernet", bad, workdir), "supernet.proxy_task='mnli'", "glue/mnli")
  bad = config.copy_and_resolve_references()
  bad.supernet.relation_heads = 99
  one_line_error(run("supernet", bad, workdir), "cannot share one SuperLM",
                 "supernet.relation_heads")
  assert not (workdir / "supernet" / space.name / "superlm.json").exists()
  first = run("supernet", config, workdir, check=0)
  out = workdir / "supernet" / space.name
  summary = json.loads((out / "summary.json").read_text())
  assert summary["subnets"] == 16 and 0 < summary["feasible"] < 16  # the limit prunes some
  assert summary["best"]["params"] <= 25_000
  trials = list(csv.DictReader((out / "trials.csv").open()))
  assert len(trials) == 16 and {t["status"] for t in trials} == {"completed", "infeasible"}
  assert (out / "pareto_front.png").is_file() and (out / "superlm.json").is_file()
  students = sorted(p.parent.name for p in (out / "students").glob("*/result.json"))
  assert len(students) == 2 and summary["best"]["name"] in students
  # AutoDistil's Proxy pick: the two best subnets fine-tuned briefly on the proxy task.
  proxy = summary["proxy"]
  assert proxy["task"] == "bbc_topic" and sorted(proxy["scores"]) == students
  assert proxy["best"] == max(proxy["scores"], key=proxy["scores"].get)
  assert "SuperLM trained" in first.stdout
  # Again: nothing is trained or scored a second time.
  second = run("supernet", config, workdir, check=0)
  assert "training skipped" in second.stdout and "read from" in second.stdout
  assert json.loads((out / "summary.json").read_text())["best"] == summary["best"]
  # The extracted student is a distillation directory the other commands take.
  best = f"supernet/{space.name}/students/{summary['best']['name']}"
  run("finetune", config, workdir, check=0, model=best, task="bbc_topic")
  assert list((workdir / "finetune").rglob("result.json"))
  # Further distillation starts from the extracted weights.
  further = run("distill", config, workdir, check=0, init=best)
  assert (workdir / best / "distill_flash" / "result.json").is_file()
  assert "distilled " + summary["best"]["name"] in further.stdout
  other = next(t["name"] for t in trials if t["name"] != summary["best"]["name"])
  one_line_error(run("distill", config, workdir, init=best, arch=other),
                 "is not the student of --init")
