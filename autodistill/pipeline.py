"""The stages a user runs, each one library function over an experiment config and a workdir.

The AutoDistill pipeline (paper section 3.1, Figure 2) as it runs from a config:

1. :func:`prepare_teacher_stage`: tokenize the corpus and fit the heads the teacher checkpoint
   lacks (cached in ``<workdir>/teacher``; section 3.3 needs MLM/NSP heads for eq. 3).
2. :func:`measure_space_latency`: batch-1 latency of every student of the space on the target
   device (section 3.4), into ``<workdir>/latency.sqlite`` and ``latency.csv``.
3. :func:`search_stage`: the multi-objective Vizier loop (sections 3.1, 3.5); :func:`serve_stage`
   shares its study with remote workers.
4. :func:`finalize_stage`: regular distillation of the Pareto-optimal students (section 4.1),
   exported as Orbax and Hugging Face checkpoints.
5. :func:`finetune_stage`: the finalized students fine-tuned on downstream tasks (sections
   4.4-4.5) into a Table 3/4-style report.

:func:`run_pipeline` runs them in order on one :class:`~autodistill.experiment.Experiment` (the
config parsed once; teacher, data and latency cache built once) and writes
``<workdir>/pipeline.json``. Every stage resumes: a killed run started again with the same config
and workdir redoes nothing finished. :func:`distill_architecture`, :func:`export_stage`,
:func:`report_stage` and :func:`summary_stage` are the single-purpose tools.

Each function takes a ``ConfigDict``, parsed :class:`~autodistill.config.Settings` or an
:class:`~autodistill.experiment.Experiment`. Errors a user can fix (a missing teacher or corpus,
an unwritable or incompatible workdir, a bad config value) are the exceptions of
:func:`user_errors`; the command line prints them in one line.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

from autodistill import files
from autodistill.config import ConfigError
from autodistill.errors import UserError
from autodistill.experiment import Experiment
from autodistill.workdir import WorkdirError, open_workdir

Log = Callable[[str], None]

__all__ = ["ConfigError", "WorkdirError", "PipelineResult", "user_errors", "run_pipeline",
           "prepare_teacher_stage", "measure_space_latency", "search_stage", "serve_stage",
           "finalize_stage", "finetune_stage", "distill_architecture", "export_stage",
           "report_stage", "summary_stage", "supernet_stage", "final_summary", "open_workdir"]


def user_errors() -> tuple[type[BaseException], ...]:
  """Exceptions whose message alone tells the user the cause and the fix: every
  :class:`~autodistill.errors.UserError`, and the OS's missing-file and permission errors."""
  return (UserError, FileNotFoundError, PermissionError)


def _experiment(config: Any, workdir: Any, log: Log) -> Experiment:
  if workdir is None and not isinstance(config, Experiment):
    raise ConfigError("no workdir: pass one with the config (the CLI's --workdir).")
  return Experiment.create(config, workdir, log=log)


# ---------------------------------------------------------------------------------------------
# The stages


def prepare_teacher_stage(config: Any, workdir: Any = None, *, log: Log = print) -> Any:
  """Stage 1: tokenizes the corpus and adapts the teacher to it (both cached): continued MLM of a
  head-less teacher, or fitting the heads it lacks (``config.teacher.adapt``).

  Returns:
    The :class:`~autodistill.distill.teacher.PreparedTeacher`; its held-out MLM/NSP accuracy is
    also written to ``<workdir>/teacher/summary.json``.
  """
  exp = _experiment(config, workdir, log).check()
  teacher = exp.teacher
  files.write_json(exp.workdir / "teacher" / "summary.json", {
      "source": teacher.source, "layers": teacher.config.num_layers,
      "hidden_size": teacher.config.hidden_size, "trained": list(teacher.fitted),
      "evals": teacher.evals,
      # eq. 3's weight of L_N for the students (0: the teacher predicts NSP at chance).
      "nsp_weight": exp.settings.distill.for_teacher(teacher).nsp_weight})
  evals = ", ".join(f"{k} {v:.4f}" for k, v in sorted(teacher.evals.items())
                    if isinstance(v, float) and k not in ("examples", "mlm_predictions"))
  exp.log(f"teacher: {teacher.config.num_layers} layers, hidden {teacher.config.hidden_size}, "
          f"from {teacher.source}; trained on the corpus: "
          f"{', '.join(teacher.fitted) or 'nothing'}; held-out {evals}")
  return teacher


def measure_space_latency(config: Any, workdir: Any = None, *, log: Log = print) -> list[Any]:
  """Stage 2: the latency of every valid student of the space (section 3.4).

  Cached results are reused; new ones go to ``<workdir>/latency.sqlite`` (which the search reads)
  and all of them to ``<workdir>/latency.csv``.
  """
  from autodistill.hardware.sweep import latency_command  # pylint: disable=import-outside-toplevel
  exp = _experiment(config, workdir, log).check()
  s = exp.settings
  t = exp.teacher_config
  archs = s.space.architectures(vocab_size=t.vocab_size,
                                max_position_embeddings=t.max_position_embeddings,
                                type_vocab_size=t.type_vocab_size)
  return latency_command(archs, exp.workdir, **s.latency.key_settings, **s.latency.timing,
                         output=exp.workdir / "latency.csv", progress=s.runtime.progress,
                         max_other_load=s.latency.max_other_load, echo=exp.log)


def search_stage(config: Any, workdir: Any = None, *, log: Log = print) -> Any:
  """Stage 3: runs (or resumes) the search (:func:`autodistill.search.search`).

  With ``config.search.endpoint`` set, this process is one worker of a served study.

  Returns:
    The :class:`~autodistill.search.SearchResult`.
  """
  from autodistill.search.loop import check_study_file, search  # pylint: disable=import-outside-toplevel
  exp = _experiment(config, workdir, log).check()
  if not exp.settings.search.endpoint:
    check_study_file(exp.workdir)  # before minutes of teacher preparation
  return search(exp.search_context(), exp.settings.search, exp.workdir,
                evaluation=exp.settings.evaluation(), log=exp.log)


def serve_stage(config: Any, workdir: Any = None, *, host: str = "0.0.0.0", port: int = 0,
                log: Log = print, **options: Any) -> Any:
  """Serves the study to remote search workers (:func:`autodistill.search.serve`) until it has
  ``config.search.num_trials`` trials, then writes the outputs."""
  from autodistill.search.loop import serve  # pylint: disable=import-outside-toplevel
  exp = _experiment(config, workdir, log)
  return serve(exp.settings.space, exp.settings.search, exp.workdir,
               evaluation=exp.settings.evaluation(), host=host, port=port, log=exp.log,
               **options)


def finalize_stage(config: Any, workdir: Any = None, *, records: Optional[Sequence[Any]] = None,
                   log: Log = print) -> list[dict[str, Any]]:
  """Stage 4: regular-distils the search's winners and exports them
  (:func:`autodistill.search.finalize.finalize`); ``records`` default to ``trials.json``."""
  from autodistill.search.finalize import finalize, read_records  # pylint: disable=import-outside-toplevel
  exp = _experiment(config, workdir, log)
  records = read_records(exp.workdir) if records is None else records  # before the teacher
  exp.check()
  return finalize(exp.search_context(), exp.settings.finalize, exp.settings.search.objectives,
                  exp.workdir, records=records, tokenizer=exp.tokenizer_dir, log=exp.log)


def _backbones(exp: Experiment, models: Sequence[str]) -> list[Any]:
  """The :class:`~autodistill.finetune.Backbone` of every entry of ``finetune.models``."""
  from autodistill.finetune.finetuning import load_backbone  # pylint: disable=import-outside-toplevel
  final_dirs = sorted(p.parent for p in (exp.workdir / "final").glob("*/result.json"))
  backbones = []
  for model in models:
    if model in ("final", "random"):
      if not final_dirs:
        raise FileNotFoundError(
            f"no finalized students in {exp.workdir / 'final'}; run `autodistill finalize` "
            "first, or pass --model=DIR (a distillation or Hugging Face directory) or "
            "--model=teacher.")
      backbones += [load_backbone(d, random_init=model == "random") for d in final_dirs]
    elif model == "teacher":
      backbones.append(load_backbone(exp.teacher_dir))
    else:
      backbones.append(load_backbone(_in_workdir(exp.workdir, model)))
  for backbone in backbones:
    exp.log(f"model {backbone.name}: {backbone.source}")
  return backbones


def finetune_stage(config: Any, workdir: Any = None, *, models: Optional[Sequence[str]] = None,
                   tasks: Optional[Sequence[str]] = None, log: Log = print) -> list[Any]:
  """Stage 5: fine-tunes models on downstream tasks and writes the Table 3/4-style report.

  Every model of ``models`` (default ``config.finetune.models``: the finalized students) is
  fine-tuned on every task of ``tasks`` (default ``config.finetune.tasks``) into
  ``<workdir>/finetune/<model>/<task>/``; finished pairs are read back. ``teacher`` is swept
  over ``config.finetune.teacher_learning_rates`` instead of ``learning_rates``. The table of every
  fine-tuned model in the workdir goes to ``<workdir>/finetune/report.md`` and ``report.csv``.

  Returns:
    The list of :class:`~autodistill.finetune.FinetuneResult`.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.finetune.finetuning import finetune_many
  from autodistill.finetune.report import write_report
  from autodistill.finetune.tasks import get_task
  exp = _experiment(config, workdir, log)
  s = exp.settings
  models, tasks = tuple(models or s.finetune.models), tuple(tasks or s.finetune.tasks)
  if not models or not tasks:
    raise ConfigError("nothing to fine-tune: set --config.finetune.models and "
                      "--config.finetune.tasks (or pass --model and --task).")
  built = [get_task(name, **_task_options(exp, name)) for name in tasks]
  # The teacher with its own learning rates (config.finetune.teacher_learning_rates).
  groups = [(s.finetune.recipe, _backbones(exp, [m for m in models if m != "teacher"])),
            (s.finetune.teacher_recipe, _backbones(exp, [m for m in models if m == "teacher"]))]
  latencies = {b.name: exp.latency_cache.get_or_measure(b.config, s.latency).latency_ms
               for _, group in groups for b in group}
  results = []
  for recipe, group in groups:
    if group:
      results += finetune_many(group, built, exp.workdir / "finetune", exp.tokenizer, recipe,
                               latencies=latencies, log=exp.log)
  write_report(exp.workdir / "finetune", log=exp.log)
  return results


def _task_options(exp: Experiment, name: str) -> dict[str, Any]:
  """The config's options of a task: BBC topic leaves out the articles the distillation holds
  out; GLUE and SQuAD read TFDS's ``data_dir``."""
  if name == "bbc_topic":
    data = exp.settings.data
    return ({"eval_fraction": data.eval_fraction, "seed": data.seed} if data.corpus == "bbc"
            else {"eval_fraction": 0.0})
  if name.startswith("glue/") or name == "squad":
    return {"data_dir": exp.settings.finetune.data_dir or None}
  return {}


# ---------------------------------------------------------------------------------------------
# Single-purpose tools


def distill_architecture(config: Any, workdir: Any = None, arch: str = "", *,
                         start_from: str = "", log: Log = print) -> Any:
  """Distils one architecture by ``config.distill`` (flash or regular) into
  ``<workdir>/distill/<name>`` and exports it to Hugging Face format in its ``hf/``.

  Fields the name does not give (e.g. ``num_blocks``) come from the space's fixed fields, so
  ``Model_128_32_4_128_4`` in the ``cpu_demo`` space has its 2 blocks and 64-wide embedding.
  ``start_from`` (a distillation directory, e.g. a subnet the ``supernet`` command extracted)
  distils that student from its weights instead, into ``<start_from>/distill_<preset>``.

  Returns:
    The :class:`~autodistill.distill.DistillResult`.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.distill.distillation import distill, load_distilled
  from autodistill.export import try_export_student
  exp = _experiment(config, workdir, log).check()
  start = None
  if start_from:
    source = _in_workdir(exp.workdir, start_from)
    student, start, _ = load_distilled(source)
    if arch and exp.student(arch).name != student.name:
      raise ConfigError(f"--arch={arch} is not the student of --init={start_from} "
                        f"({student.name}); leave --arch out to distil that one.")
    out = source / f"distill_{exp.settings.distill.preset}"
  elif not arch:
    raise ConfigError("no architecture: pass --arch=NAME, e.g. --arch=Model_128_32_4_128_4.")
  else:
    student = exp.student(arch)
    out = exp.workdir / "distill" / student.name
  result = distill(student, exp.teacher, exp.train_data, exp.eval_data, out,
                   exp.settings.distill, log=exp.log, start=start)
  exported, _ = try_export_student(student, result.params, out / "hf",
                                   tokenizer=exp.tokenizer_dir, log=exp.log)
  final = result.final
  exp.log(f"distilled {student.name} ({result.plan.total_steps} steps, "
          f"{exp.settings.distill.preset}): held-out MLM accuracy "
          f"{final.get('mlm_accuracy', float('nan')):.4f}, NSP accuracy "
          f"{final.get('nsp_accuracy', float('nan')):.4f}; Orbax checkpoint {out / 'student'}"
          + (f", Hugging Face {exported}" if exported else ""))
  return result


def supernet_stage(config: Any, workdir: Any = None, *, log: Log = print) -> dict[str, Any]:
  """AutoDistil (Xu et al. 2022) on the config's space: trains its SuperLM (or reuses the
  trained one), scores every subnet in the shared weights, writes the search's tables, front,
  plot and summary in ``<workdir>/supernet/<space>/``, and extracts the ``supernet.extract``
  best subnets as students in its ``students/<name>/`` (Orbax, and Hugging Face where
  transformers can express them). With ``supernet.proxy_task``, the best few subnets are also
  fine-tuned briefly on that task and the best on its dev split named (AutoDistil's "Proxy"
  pick, ``summary["proxy"]``). Resumes a killed training; re-reports without retraining.

  Returns:
    The search summary (also ``summary.json``).
  """
  # pylint: disable=import-outside-toplevel
  from autodistill import sharding
  from autodistill.export import try_export_student
  from autodistill.hardware.sweep import measure_space
  from autodistill.search.report import summary_table
  from autodistill import supernet as sn
  from autodistill.finetune.tasks import TASKS, get_task
  exp = _experiment(config, workdir, log).check()
  s, n = exp.settings, exp.settings.supernet
  if n.proxy_task and n.proxy_task not in TASKS:
    raise ConfigError(f"config.supernet.proxy_task={n.proxy_task!r} is not a task; choose one of "
                      f"{', '.join(sorted(TASKS))} (or '' for no Proxy pick).")
  directory = exp.workdir / "supernet" / s.space.name
  started = time.time()
  superlm = sn.train_superlm(s.space, exp.teacher, exp.train_data, exp.eval_data, directory,
                             n.recipe, log=exp.log)
  trained = time.time()
  scores = sn.score_subnets(superlm, exp.teacher, exp.eval_data,
                            eval_batches=n.recipe.eval_batches,
                            mesh=sharding.make_mesh(n.recipe.mesh_shape),
                            progress=s.runtime.progress, log=exp.log)
  scored = time.time()
  students = superlm.table.students
  if n.cost == "latency_ms" or n.constraints.max_latency_ms:
    exp.log(f"supernet: batch-1 latency of the {len(students)} subnets (cached ones reused)")
    measure_space(students, exp.latency_cache, **s.latency.key_settings, **s.latency.timing,
                  progress=s.runtime.progress, max_other_load=s.latency.max_other_load)
  records = sn.subnet_records(s.space, students, scores, s.latency, exp.latency_cache,
                              n.constraints)
  proxy = None
  if n.proxy_task:
    recipe = dataclasses.replace(s.finetune.recipe, num_steps=n.proxy_steps,
                                 learning_rates=s.finetune.recipe.learning_rates[:1])
    proxy = sn.proxy_select(superlm, records, get_task(n.proxy_task, **_task_options(
        exp, n.proxy_task)), recipe, exp.tokenizer, directory, n.proxy_candidates, log=exp.log)
    exp.log(f"supernet: proxy pick on {proxy['task']}: {proxy['best']} (dev {proxy['metric']} "
            + ", ".join(f"{v:.4f}" for v in proxy["scores"].values()) + ")")
  summary = sn.write_search(
      records, directory, n.cost, title=f"SuperLM of {s.space.name}: {len(records)} subnets",
      extra={"space": s.space.name, "seconds": {
          "superlm": round(trained - started, 1), "scoring": round(scored - trained, 1),
          "proxy": round(time.time() - scored, 1)},
          "superlm_training_seconds": superlm.summary["seconds"], "proxy": proxy})
  exp.log(summary_table(records, sn.objectives_for(n.cost)))
  ranked = sorted((r for r in records if r.feasible), key=lambda r: r.relation_loss)
  by_name = {student.name: student for student in students}
  for record in ranked[:n.extract]:
    target, student = directory / "students" / record.name, by_name[record.name]
    sn.extract_subnet(superlm, student, target, relation_loss=record.relation_loss)
    exported, _ = try_export_student(student, superlm.envelope.extract(student, superlm.params),
                                     target / "hf", tokenizer=exp.tokenizer_dir, log=exp.log)
    exp.log(f"supernet: extracted {record.name} (relation loss {record.relation_loss:.4f}) to "
            f"{target}" + (f"; Hugging Face {exported}" if exported else ""))
  best = summary["best"]
  exp.log(f"supernet: {summary['feasible']} of {summary['subnets']} subnets feasible; best "
          + (f"{best['name']} (relation loss {best['relation_loss']:.4f})" if best else "none")
          + f"; outputs in {directory}")
  return summary


def _in_workdir(workdir: pathlib.Path, value: str) -> pathlib.Path:
  """A user's path: as given if it exists or is absolute, else relative to the workdir, where
  ``trials/3`` also finds ``trials/0003``."""
  path = pathlib.Path(value).expanduser()
  if path.is_absolute() or path.exists():
    return path
  path = workdir / path
  if not path.exists() and path.parent.name == "trials" and path.name.isdigit():
    path = path.parent / f"{int(path.name):04d}"
  return path


def export_stage(config: Any, workdir: Any = None, source: str = "",
                 output: Optional[str] = None, *, log: Log = print) -> pathlib.Path:
  """Exports a finished distillation (``source``: ``trials/3``, ``final/<name>``,
  ``distill/<name>``, relative to the workdir, or absolute) as a Hugging Face checkpoint
  with the run's tokenizer files (:func:`autodistill.export.export_distilled`)."""
  from autodistill.export import export_distilled  # pylint: disable=import-outside-toplevel
  if not source:
    raise ConfigError("no source: pass --source=DIR, a finished distillation directory such as "
                      "trials/3 or final/<name>.")
  exp = _experiment(config, workdir, log)
  path = _in_workdir(exp.workdir, source)
  target = pathlib.Path(output).expanduser() if output else path / "hf"
  open_workdir(target.parent)
  return export_distilled(path, target, tokenizer=exp.tokenizer_dir, log=exp.log)


def report_stage(config: Any, workdir: Any = None, *, log: Log = print) -> Any:
  """Rewrites the search's tables and plot from its study, and the fine-tuning report from its
  ``result.json`` files; trains nothing."""
  # pylint: disable=import-outside-toplevel
  from autodistill.finetune.report import write_report
  from autodistill.search.loop import search_report
  exp = _experiment(config, workdir, log)
  result = search_report(exp.settings.space, exp.settings.search, exp.workdir, log=exp.log)
  if (exp.workdir / "finetune").is_dir():
    write_report(exp.workdir / "finetune", log=exp.log)
  return result


def recommend_stage(config: Any, workdir: Any = None, *, log: Log = print
                    ) -> list[dict[str, Any]]:
  """For each of ``search.latency_budgets_ms``, the best student the search found within it
  (:func:`autodistill.search.report.recommend`); prints a table and writes
  ``<workdir>/recommend.json``. Trains and measures nothing.

  Raises:
    ConfigError: no budgets are set.
    FileNotFoundError: the workdir holds no finished search.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.search.finalize import read_records
  from autodistill.search.report import recommend, recommend_table
  exp = _experiment(config, workdir, log)
  budgets = exp.settings.search.latency_budgets_ms
  if not budgets:
    raise ConfigError("config.search.latency_budgets_ms=() names no budget; give some, e.g. "
                      "--config.search.latency_budgets_ms='(1.0, 2.0)' or "
                      "--config=experiments/kdnas.py:1.0,2.0.")
  rows = recommend(read_records(exp.workdir), budgets, exp.settings.search.objectives)
  exp.log(recommend_table(rows))
  files.write_json(exp.workdir / "recommend.json", rows)
  return rows


def summary_stage(arch: str, *, log: Log = print) -> str:
  """The parameter breakdown of an architecture by component
  (:func:`autodistill.models.params.summary`)."""
  # pylint: disable=import-outside-toplevel
  from autodistill.models import StudentConfig
  from autodistill.models import params as counting
  if not arch:
    raise ConfigError("no architecture: pass --arch=NAME, e.g. --arch=Model_512_128_4_512_4.")
  try:
    text = counting.summary(StudentConfig.from_name(arch))
  except ValueError as error:
    raise ConfigError(str(error)) from None
  log(text)
  return text


# ---------------------------------------------------------------------------------------------
# The whole pipeline


@dataclasses.dataclass
class PipelineResult:
  """What :func:`run_pipeline` produced (also in ``<workdir>/pipeline.json``)."""

  workdir: str
  stages: dict[str, float]
  teacher: dict[str, Any]
  search: dict[str, Any]
  final: list[dict[str, Any]]
  outputs: dict[str, str]
  finetune: list[dict[str, Any]]
  seconds: float

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def run_pipeline(config: Any, workdir: Any = None, *, log: Log = print) -> PipelineResult:
  """Runs the whole pipeline of ``config`` in ``workdir``: teacher heads -> latency of the space
  -> search -> finalize the winners -> fine-tune them on the downstream tasks; resumes whatever a
  previous run left unfinished. The config is parsed and the teacher, data and latency cache are
  built once, for all five stages.

  Returns:
    A :class:`PipelineResult`; the final summary points at the plot, the trials table and the
    exported models.
  """
  start = time.time()
  exp = _experiment(config, workdir, log).check()
  s = exp.settings
  stages: dict[str, float] = {}
  steps = [
      ("teacher", "teacher: tokenize the corpus, adapt the teacher to it",
       lambda: prepare_teacher_stage(exp)),
      ("latency", "latency of every student of the space on this device",
       lambda: measure_space_latency(exp)),
      ("search", f"search: {s.search.num_trials} trials, {s.search.designer}",
       lambda: search_stage(exp)),
      ("finalize", "finalize: regular distillation and export of the winners",
       lambda: finalize_stage(exp, records=done["search"].records)),
      ("finetune", f"fine-tune {', '.join(s.finetune.models)} on {', '.join(s.finetune.tasks)}",
       lambda: finetune_stage(exp)),
  ]
  done: dict[str, Any] = {}
  with exp:
    for number, (name, title, run) in enumerate(steps, 1):
      log(f"\n== [{number}/{len(steps)}] {title} ({time.time() - start:.0f} s elapsed) ==")
      t = time.time()
      done[name] = run()
      stages[name] = round(time.time() - t, 1)
  teacher, latencies, result, final, tuned = (done[name] for name, _, _ in steps)
  # pylint: disable-next=import-outside-toplevel
  from autodistill.search.evaluate import paired_errors
  from autodistill.search.report import versus_baseline  # pylint: disable=import-outside-toplevel
  outputs = dict(result.outputs, latency=str(exp.workdir / "latency.csv"),
                 final=str(exp.workdir / "final" / "summary.json"),
                 finetune=str(exp.workdir / "finetune" / "report.md"))
  pipeline = PipelineResult(
      workdir=str(exp.workdir), stages=stages,
      teacher={"source": teacher.source, "trained": list(teacher.fitted),
               "evals": teacher.evals,
               "nsp_weight": exp.settings.distill.for_teacher(teacher).nsp_weight},
      search={"trials": len(result.records), "front": [r.trial_id for r in result.front],
              "dominating_baseline": [r.trial_id for r in result.dominating_baseline],
              "versus_baseline": versus_baseline(
                  result.records, s.search.objectives,
                  paired_errors(exp.search_context(), exp.workdir)),
              "latencies_measured": sum(r.ok for r in latencies)},
      final=final, outputs=outputs, seconds=round(time.time() - start, 1),
      finetune=[{"model": r.model, "task": r.task, "scores": r.scores, "metric": r.metric,
                 "majority": {c: v[r.metric] for c, v in r.majority.items()},
                 "learning_rate": r.learning_rate} for r in tuned])
  files.write_json(exp.workdir / "pipeline.json", pipeline.to_dict())
  log(final_summary(pipeline))
  return pipeline


def final_summary(result: PipelineResult) -> str:
  """The closing text of a pipeline run: timings and where everything is."""
  lines = [f"\n== done in {result.seconds / 60:.1f} min ("
           + ", ".join(f"{k} {v / 60:.1f}" for k, v in result.stages.items()) + ") =="]
  lines.append(f"search: {result.search['trials']} trials; Pareto front: trials "
               f"{result.search['front']}; dominating the baseline: "
               f"{result.search['dominating_baseline'] or 'none'}")
  lines += result.search.get("versus_baseline", [])
  for student in result.final:
    regular = student.get("regular", {})
    lines.append(f"finalized {student['name']} (trial {student['trial_id']}): "
                 f"{student['latency_ms']:.3f} ms, MLM accuracy "
                 f"{regular.get('mlm_accuracy', float('nan')):.4f} after "
                 f"{regular.get('steps')} regular-distillation steps")
    lines.append(f"  model:  {student.get('hf') or student['orbax']}")
  for tuned in result.finetune:
    scores = ", ".join(f"{column} {value:.4f}" for column, value in tuned["scores"].items())
    floor = ", ".join(f"{value:.4f}" for value in tuned["majority"].values())
    lines.append(f"fine-tuned {tuned['model']} on {tuned['task']}: {tuned['metric']} {scores}"
                 + (f" (majority class {floor})" if floor else ""))
  out = result.outputs
  lines.append(f"plot:     {out.get('plot')}")
  lines.append(f"trials:   {out.get('csv')}")
  lines.append(f"summary:  {out.get('summary')}")
  lines.append(f"finetune: {out.get('finetune')}")
  lines.append(f"pipeline: {pathlib.Path(result.workdir) / 'pipeline.json'}")
  return "\n".join(lines)
