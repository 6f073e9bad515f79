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

import json
import os
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

import ml_collections

from autodistill.distill.distillation import distill
from autodistill.models import hf
from autodistill.search import pareto
from autodistill.search import problem as problem_lib
from autodistill.search.config import distill_config_from
from autodistill.search.evaluate import prepare_context
from autodistill.search.records import TrialRecord


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
  objs = problem_lib.get_objectives(objectives)
  front = pareto.pareto_front(records, objs)
  if not front:
    raise ValueError("the search has no feasible trial to finalize; run more trials or relax "
                     "the constraints.")
  beats = {r.trial_id for r in pareto.dominating_baseline(records, objs)}
  first = objs[0]
  sign = -1.0 if first.goal == "maximize" else 1.0
  front.sort(key=lambda r: (r.trial_id not in beats, sign * r.metric(first.name)))
  return front[:max_students] if max_students > 0 else front


def finalize(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
             records: Optional[Sequence[TrialRecord]] = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Regular-distils the winners of the search in ``workdir`` and exports them.

  Args:
    config: the search's config (``config.finalize`` holds the recipe and the choice).
    workdir: the search's workdir.
    records: the search's trials (default: read from ``<workdir>/trials.json``).

  Returns:
    One summary dict per finalized student (also written to ``final/summary.json``).
  """
  from autodistill.pipeline import copy_tokenizer, tokenizer_dir  # pylint: disable=import-outside-toplevel
  workdir = pathlib.Path(workdir)
  if records is None:
    table = workdir / "trials.json"
    if not table.exists():
      raise FileNotFoundError(f"{table} not found: run the search in {workdir} first (or "
                              "`report` to rebuild its outputs).")
    records = [TrialRecord.from_dict(r) for r in json.loads(table.read_text(encoding="utf-8"))]
  winners = select_winners(records, list(config.search.objectives),
                           tuple(config.finalize.trials), config.finalize.max_students)
  log(f"finalize: regular distillation of {len(winners)} student(s): "
      + ", ".join(f"trial {r.trial_id} {r.name}" for r in winners))
  context = prepare_context(config, workdir, log=log)
  recipe = distill_config_from(config.finalize, preset=config.finalize.preset,
                               progress=config.distill.progress)
  recipe = recipe.replace(
      optimizer=context.distill_config.optimizer, attention_loss=context.distill_config.attention_loss,
      embedding_init=context.distill_config.embedding_init, dtype=context.distill_config.dtype,
      seed=context.distill_config.seed, checkpoint_every=context.distill_config.checkpoint_every,
      log_every=context.distill_config.log_every)
  summaries = []
  for record in winners:
    start = time.time()
    student = context.student(record.factors)
    out = workdir / "final" / student.name
    context.train_data.reset()
    result = distill(student, context.teacher, context.train_data, context.eval_data, out,
                     recipe, log=log)
    export: dict[str, Any] = {"orbax": str(out / "student")}
    try:
      export["hf"] = str(hf.export_student(student, result.params, out / "hf"))
      copy_tokenizer(tokenizer_dir(config), export["hf"])
    except ValueError as error:
      export["hf"] = None
      export["hf_export"] = str(error)
    final = result.evals.get("pretraining_distillation", {})
    summary = {
        "trial_id": record.trial_id, "name": student.name, "params": record.params,
        "latency_ms": record.latency_ms,
        "flash": {"mlm_accuracy": record.mlm_accuracy, "nsp_accuracy": record.nsp_accuracy},
        "regular": {"mlm_accuracy": final.get("mlm_accuracy"),
                    "nsp_accuracy": final.get("nsp_accuracy"),
                    "steps": result.plan.total_steps},
        "seconds": round(time.time() - start, 1), **export,
    }
    log(f"finalized {student.name}: MLM accuracy {record.mlm_accuracy:.4f} (flash) -> "
        f"{summary['regular']['mlm_accuracy']:.4f} (regular, {result.plan.total_steps} steps); "
        f"exported to {out}")
    summaries.append(summary)
  (workdir / "final").mkdir(parents=True, exist_ok=True)
  tmp = workdir / "final" / "summary.json.tmp"
  tmp.write_text(json.dumps(summaries, indent=2), encoding="utf-8")
  os.replace(tmp, workdir / "final" / "summary.json")
  return summaries
