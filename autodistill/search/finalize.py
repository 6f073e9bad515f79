"""Regular distillation of the search's winners (paper sections 3.1 and 4.6).

After the search, the students on the Pareto front (or trials the user picks) are distilled again
with the long ``regular`` recipe and exported:

* ``<workdir>/final/<name>/student/``: Orbax checkpoint of the student's parameters (with the
  run's ``result.json``, checkpoints and metrics beside it; a killed run resumes);
* ``<workdir>/final/<name>/hf/``: a Hugging Face MobileBERT checkpoint
  (``transformers.MobileBertForPreTraining.from_pretrained``) where the architecture is
  expressible there (``hf_export`` in the summary says why not otherwise);
* ``<workdir>/final/summary.json``: per student, the flash-distillation metrics of its trial and
  the held-out accuracy after regular distillation.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

from autodistill import export, files
from autodistill.distill.distillation import distill
from autodistill.search import pareto
from autodistill.search.evaluate import SearchContext
from autodistill.search.records import TrialRecord
from autodistill.search.settings import FinalizeSettings, get_objectives

def select_winners(records: Sequence[TrialRecord], objectives: Sequence[str],
                   trial_ids: Sequence[int] = (), max_students: int = 3) -> list[TrialRecord]:
  """The trials to finalize: ``trial_ids`` if given, else the Pareto front.

  A front larger than ``max_students`` keeps the students that dominate the baseline first, then
  the best by the first objective (e.g. the most accurate, or the lowest MLM loss).

  Raises:
    ValueError: an unknown or infeasible trial id, or no feasible trial at all.
  """
  by_id = {r.trial_id: r for r in records}
  if trial_ids:
    chosen = []
    for trial_id in trial_ids:
      record = by_id.get(int(trial_id))
      if record is None:
        raise ValueError(f"no trial {trial_id} in this search; trials are {sorted(by_id)}.")
      if not record.feasible:
        raise ValueError(f"trial {trial_id} ({record.name or record.factors}) is "
                         f"{record.status}: {record.reason}; pick a completed trial.")
      chosen.append(record)
    return chosen
  front = pareto.ranked_front(records, get_objectives(objectives))
  if not front:
    raise ValueError("the search has no feasible trial to finalize; run more trials or relax "
                     "the constraints.")
  return front[:max_students] if max_students > 0 else front


def read_records(workdir: str | os.PathLike) -> list[TrialRecord]:
  """The search's trials from ``<workdir>/trials.json``.

  Raises:
    FileNotFoundError: the workdir holds no finished search.
  """
  table = pathlib.Path(workdir) / "trials.json"
  if not table.exists():
    raise FileNotFoundError(f"{table} not found: run the search in {workdir} first (or "
                            "`report` to rebuild its outputs).")
  return [TrialRecord.from_dict(r) for r in files.read_json(
      table, fix="rebuild it from the study with `autodistill report`")]


def finalize(context: SearchContext, settings: FinalizeSettings, objectives: Sequence[str],
             workdir: str | os.PathLike, *, records: Optional[Sequence[TrialRecord]] = None,
             tokenizer: Optional[str | os.PathLike] = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Regular-distils the winners of the search in ``workdir`` and exports them.

  Args:
    context: the search's teacher, data and space (the recipe is ``settings.recipe``).
    settings: which students (``trials`` or the front, ``max_students``) and the recipe, whose
      mesh and dtype are the run's.
    objectives: the search's objectives (they define its Pareto front).
    workdir: the search's workdir.
    records: the search's trials (default: read from ``<workdir>/trials.json``).
    tokenizer: a directory whose tokenizer files go beside each Hugging Face export.

  Returns:
    One summary dict per finalized student (also written to ``final/summary.json``).
  """
  workdir = pathlib.Path(workdir)
  records = read_records(workdir) if records is None else records
  winners = select_winners(records, list(objectives), settings.trials, settings.max_students)
  log(f"finalize: regular distillation of {len(winners)} student(s): "
      + ", ".join(f"trial {r.trial_id} {r.name}" for r in winners))
  summaries = []
  for record in winners:
    start = time.time()
    student = context.student(record.factors)
    out = workdir / "final" / student.name
    context.train_data.reset()
    result = distill(student, context.teacher, context.train_data, context.eval_data, out,
                     settings.recipe, log=log)
    hf_dir, why = export.try_export_student(student, result.params, out / "hf",
                                            tokenizer=tokenizer, log=log)
    exported: dict[str, Any] = {"orbax": str(out / "student"),
                                "hf": str(hf_dir) if hf_dir else None}
    if why:
      exported["hf_export"] = why
    final = result.final
    summary = {
        "trial_id": record.trial_id, "name": student.name, "params": record.params,
        "latency_ms": record.latency_ms,
        "flash": {"mlm_accuracy": record.mlm_accuracy, "nsp_accuracy": record.nsp_accuracy},
        "regular": {"mlm_accuracy": final.get("mlm_accuracy"),
                    "nsp_accuracy": final.get("nsp_accuracy"),
                    "steps": result.plan.total_steps},
        "seconds": round(time.time() - start, 1), **exported,
    }
    log(f"finalized {student.name}: MLM accuracy {record.mlm_accuracy:.4f} (flash) -> "
        f"{summary['regular']['mlm_accuracy']:.4f} (regular, {result.plan.total_steps} steps); "
        f"exported to {out}")
    summaries.append(summary)
  files.write_json(workdir / "final" / "summary.json", summaries)
  return summaries
