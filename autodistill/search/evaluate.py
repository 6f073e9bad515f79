"""Evaluation of one suggested student (paper section 3.1, steps 2-3 of the loop).

:func:`evaluate_student` is what a search trial does with a design-space point:

1. **Validity and known constraints** (free): an invalid point or one over ``max_params`` is
   infeasible at once.
2. **Latency on the target device** (seconds; section 3.4): from the latency cache, or measured
   and cached. Over ``max_latency_ms`` means infeasible before any distillation.
3. **Flash distillation** (minutes to hours; section 3.3) in the trial's own directory, which
   holds its checkpoints, so a killed trial resumes where it stopped; a finished one is read back.
4. **Accuracy**: held-out MLM and NSP accuracy after distillation (and at step 0).

Failures that belong to the student (a non-finite loss, out of memory, a compile error) make the
trial infeasible with the reason; the traceback is kept in ``<trial dir>/error.txt``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import traceback
from typing import Any, Callable, Mapping, Optional

from autodistill import files
from autodistill.distill.distillation import (PREDICTIONS_FILE, distill, distilled_predictions,
                                              final_evals)
from autodistill.distill.recipe import DistillConfig
from autodistill.errors import UserError
from autodistill.hardware.cache import LatencyCache, LatencySettings
from autodistill.models import params as counting
from autodistill.models.elastic import Envelope
from autodistill.search.fidelity import paired_standard_error
from autodistill.search.records import COMPLETED, INFEASIBLE, TIME_PARTS, TrialRecord
from autodistill.search.settings import Constraints
from autodistill.space import Point, Space
from autodistill.timing import describe
from autodistill.train import IncompatibleWorkdirError

# Exceptions that are the caller's, never the student's: they propagate.
_PROPAGATE = (KeyboardInterrupt, SystemExit, MemoryError, IncompatibleWorkdirError)


@dataclasses.dataclass
class SearchContext:
  """What every trial of one worker needs; built once per worker process (by
  :meth:`autodistill.experiment.Experiment.search_context`).

  Attributes:
    space: the design space.
    teacher: a teacher with heads (:func:`autodistill.distill.prepare_teacher`).
    train_data, eval_data: pre-training pipelines.
    distill_config: the flash-distillation recipe of every trial.
    latency: how latency is measured.
    cache: the latency cache (shared by workers through its SQLite file).
    constraints: user limits.
    envelope: the elastic envelope every trial distils in, or None (each student its own shapes).
  """

  space: Space
  teacher: Any
  train_data: Any
  eval_data: Any
  distill_config: DistillConfig
  latency: LatencySettings
  cache: LatencyCache
  constraints: Constraints = Constraints()
  envelope: Optional[Envelope] = None

  def student(self, point: Mapping[str, Any]):
    """The student at ``point`` with the teacher's vocabulary and table sizes."""
    t = self.teacher.config
    return self.space.config(point, vocab_size=t.vocab_size,
                             max_position_embeddings=t.max_position_embeddings,
                             type_vocab_size=t.type_vocab_size)


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def evaluate_student(context: SearchContext, point: Point, trial_dir: pathlib.Path,
                     record: TrialRecord, log: Callable[[str], None] = print) -> TrialRecord:
  """Fills ``record`` with the metrics of the student at ``point`` (see module docstring).

  Returns the same record, with ``status`` :data:`COMPLETED` or :data:`INFEASIBLE` (and
  ``reason``). Exceptions are caught and recorded unless they are interrupts.
  """
  start = time.perf_counter()
  record.factors = dict(point)

  def infeasible(reason: str) -> TrialRecord:
    record.status, record.reason = INFEASIBLE, reason
    record.total_s = round(time.perf_counter() - start, 2)
    log(f"trial {record.trial_id}: infeasible: {reason}")
    return record

  reason = context.space.invalid_reason(point)
  if reason is not None:
    return infeasible(f"invalid architecture: {reason}")
  student = context.student(point)
  record.name = student.name
  record.params = counting.analytic_param_count(student, heads=False)
  violation = context.constraints.violation({"params": record.params})
  if violation:
    return infeasible(f"constraint: {violation}")

  t0 = time.perf_counter()
  try:
    latency = context.cache.get_or_measure(student, context.latency)
  except _PROPAGATE:
    raise
  except Exception as error:  # pylint: disable=broad-except
    _write_error(trial_dir, error)
    return infeasible(f"latency measurement failed: {_first_line(error)}")
  record.latency_s = round(time.perf_counter() - t0, 2)
  if not latency.ok:
    return infeasible(f"latency measurement failed: {latency.error}")
  record.latency_ms = latency.median_ms
  record.latency_p10_ms, record.latency_p90_ms = latency.p10_ms, latency.p90_ms
  record.latency_std_ms, record.flops = latency.std_ms, latency.flops
  violation = context.constraints.violation({"latency_ms": record.latency_ms})
  if violation:
    return infeasible(f"constraint (known before distillation): {violation}")

  t0 = time.perf_counter()
  try:
    evals, timings = _distilled_evals(context, student, trial_dir, log)
  except _PROPAGATE:
    raise
  except Exception as error:  # pylint: disable=broad-except
    _write_error(trial_dir, error)
    return infeasible(f"distillation failed: {_first_line(error)}")
  record.distill_s = round(time.perf_counter() - t0, 2)
  if timings:
    # The trial's own set-up (its latency cache look-up and record keeping) counts as set-up.
    overhead = record.distill_s - sum(timings.values())
    record.seconds = {part: round(timings.get(part, 0.0), 2) for part in TIME_PARTS}
    record.seconds["latency"] = record.latency_s
    record.seconds["setup"] = round(record.seconds["setup"] + max(overhead, 0.0), 2)
    log(f"trial {record.trial_id}: {describe(record.seconds)}")
  final = final_evals(evals)
  record.mlm_accuracy = final.get("mlm_accuracy")
  record.nsp_accuracy = final.get("nsp_accuracy")
  record.mlm_loss, record.nsp_loss = final.get("mlm_loss"), final.get("nsp_loss")
  record.mlm_predictions = final.get("mlm_predictions")
  record.mlm_loss_std = final.get("mlm_loss_std")
  record.mlm_accuracy_init = evals.get("init", {}).get("mlm_accuracy")
  if record.mlm_accuracy is None:
    return infeasible("distillation finished without a final evaluation")
  violation = context.constraints.violation({"mlm_accuracy": record.mlm_accuracy})
  if violation:
    return infeasible(f"constraint: {violation}")
  record.status, record.reason = COMPLETED, ""
  record.total_s = round(time.perf_counter() - start, 2)
  return record


def trial_recipe(config: DistillConfig) -> DistillConfig:
  """The recipe a search trial distils with: ``config`` without its diagnostic evaluations
  (the initial student's and the one after the progressive stages). A trial's objectives come
  from the final evaluation only; each held-out pass costs about as much as 15 training steps of
  the demo's flash recipe, so a demo trial spends a quarter less time (``bench/trial_cost.py``).
  The parameters and the final evaluation are the same either way (tested)."""
  return config.replace(eval_at_start=False, evaluate_stages=False)


def _distilled_evals(context: SearchContext, student, trial_dir: pathlib.Path,
                     log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, float]]:
  """Flash-distils ``student`` in ``trial_dir`` (resuming), or reads a finished run back.

  Returns the evaluations by phase and where the distillation's time went (empty when read
  back).
  """
  result_path = trial_dir / "result.json"
  if result_path.exists():
    summary = files.read_json(result_path, fix=f"delete {trial_dir} and run the search again: "
                              "the trial is distilled anew")
    plan = dataclasses.asdict(context.distill_config.plan(student.num_blocks))
    if summary.get("student") == student.name and summary.get("plan") == plan:
      log(f"{student.name}: distilled earlier ({trial_dir}); reading its result")
      return summary["evals"], {}
  context.train_data.reset()  # every student sees the same examples in the same order
  result = distill(student, context.teacher, context.train_data, context.eval_data, trial_dir,
                   trial_recipe(context.distill_config), log=log, envelope=context.envelope)
  return result.evals, result.timings


def _write_error(trial_dir: pathlib.Path, error: BaseException) -> None:
  trial_dir.mkdir(parents=True, exist_ok=True)
  (trial_dir / "error.txt").write_text(
      "".join(traceback.format_exception(type(error), error, error.__traceback__)),
      encoding="utf-8")



# The per-prediction score behind each metric that a paired comparison can judge.
_PAIRED_SCORES = {"mlm_accuracy": "mlm_correct", "mlm_loss": "mlm_loss"}


def paired_errors(context: Optional[SearchContext], workdir: str | pathlib.Path
                  ) -> Callable[[TrialRecord, TrialRecord, str], Optional[float]]:
  """``paired(a, b, name)``: the paired standard error of trials ``a`` and ``b``'s held-out
  ``mlm_accuracy`` or ``mlm_loss`` difference, both students re-scored per held-out prediction
  (:func:`autodistill.distill.distillation.distilled_predictions`, cached in each trial's
  directory) on ``context.eval_data``. Two students err on the same tokens, so this is far
  smaller than the unpaired noise :func:`autodistill.search.pareto.difference` uses otherwise.
  None where it cannot be had (another metric, a trial without its student checkpoint, a
  damaged one): the caller falls back to the unpaired rule. Without a ``context`` (``autodistill
  report``, which trains and evaluates nothing) only the scores cached by an earlier search are
  read.
  """
  workdir = pathlib.Path(workdir)
  scores: dict[str, Optional[dict[str, Any]]] = {}

  def predictions(record: TrialRecord) -> Optional[dict[str, Any]]:
    directory = workdir / record.workdir
    if context is None and not (directory / PREDICTIONS_FILE).exists():
      return None
    if record.workdir not in scores:
      try:
        scores[record.workdir] = distilled_predictions(directory, context and context.eval_data)
      except (OSError, ValueError, UserError):
        scores[record.workdir] = None
    return scores[record.workdir]

  def paired(a: TrialRecord, b: TrialRecord, name: str) -> Optional[float]:
    key = _PAIRED_SCORES.get(name)
    if key is None or not a.workdir or not b.workdir:
      return None
    pa, pb = predictions(a), predictions(b)
    if pa is None or pb is None or len(pa[key]) != len(pb[key]) or len(pa[key]) < 2:
      return None
    return paired_standard_error(pa[key], pb[key])

  return paired
