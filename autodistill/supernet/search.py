"""AutoDistil's search without re-training: score every subnet in the SuperLM's shared weights.

Step (4) of AutoDistil ("optimal compressed student search"): with the SuperLM trained, a subnet
is judged by its task-agnostic objective *in the shared weights*, the held-out self-attention
relation loss against the teacher (the training loss, measured on the held-out split without
dropout), so no subnet is trained on its own. Every subnet is scored (20 s for 256 on a 2-core
CPU) and kept in ``scores.json``; constraints on parameters, FLOPs and measured latency then mark
subnets infeasible, so changing them re-reports without scoring again. The "Agnostic" pick is the
feasible subnet with the lowest relation loss, and the Pareto front trades the loss against the
cost (latency, FLOPs or parameters).

Outputs, beside the SuperLM (``<workdir>/supernet/<space>/``), in the AutoDistill search's form:
``trials.csv`` / ``trials.json`` (one row per subnet, ``relation_loss`` beside the usual
columns), ``pareto_front.json``, ``pareto_front.png`` and ``summary.json``.
:func:`extract_subnet` cuts a subnet out as a standalone student in a distillation directory,
which ``autodistill export``, ``finetune --model=DIR`` and further distillation read unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from autodistill import files
from autodistill.distill.distillation import save_params
from autodistill.hardware.flops import analytic_flops
from autodistill.models.configs import StudentConfig
from autodistill.models.params import analytic_param_count
from autodistill.search import report as report_lib
from autodistill.search.pareto import pareto_front
from autodistill.search.records import COMPLETED, INFEASIBLE, TrialRecord
from autodistill.search.settings import OBJECTIVES, Objective
from autodistill.space import Space
from autodistill.supernet.superlm import held_out_scores, superlm_loss
from autodistill.supernet.training import SuperLM

Params = Any
Log = Callable[[str], None]

SCORES_JSON = "scores.json"
SUMMARY_JSON = "summary.json"
RELATION_LOSS = Objective("relation_loss", "minimize",
                          "held-out self-attention relation loss in the SuperLM's shared weights")
COSTS = ("flops", "params", "latency_ms")


@dataclasses.dataclass(frozen=True)
class SubnetConstraints:
  """Limits a subnet must meet to be feasible (on the front, extractable); 0 means no limit."""

  max_params: float = 0
  max_gflops: float = 0
  max_latency_ms: float = 0

  def violation(self, record: TrialRecord) -> str:
    """Why ``record`` breaks a limit, or ""."""
    limits = (("params", record.params, self.max_params, 1.0),
              ("GFLOPs", record.flops, self.max_gflops, 1e-9),
              ("latency_ms", record.latency_ms, self.max_latency_ms, 1.0))
    for name, value, limit, scale in limits:
      if limit and value is not None and value * scale > limit:
        return f"{name} {value * scale:.4g} > {limit:.4g}"
    if self.max_latency_ms and record.latency_ms is None:
      return "latency not measured (run `autodistill latency` or supernet.cost=latency_ms)"
    return ""


def score_subnets(superlm: SuperLM, teacher: Any, eval_data: Any, *, eval_batches: int,
                  mesh: Any, progress: bool = True, log: Log = print) -> dict[str, float]:
  """Every subnet's held-out relation loss by name, read from ``scores.json`` when the same
  SuperLM was scored on as many batches before, else computed and saved there."""
  path = superlm.directory / SCORES_JSON
  stamp = {"global_step": superlm.summary["global_step"], "eval_batches": eval_batches,
           "seconds": superlm.summary["seconds"]}
  names = [s.name for s in superlm.table.students]
  if path.is_file():
    saved = files.read_json(path, fix=f"delete {path}; the subnets are scored again")
    if saved.get("stamp") == stamp and set(saved.get("scores", {})) == set(names):
      log(f"supernet: scores of the {len(names)} subnets read from {path}")
      return saved["scores"]
  s = superlm.summary
  loss = superlm_loss(superlm.envelope, teacher.config, s["relation_heads"], s["teacher_layer"],
                      s["recipe"]["sampling"], s["recipe"]["subnets_per_step"])
  log(f"supernet: scoring {len(names)} subnets in the shared weights on "
      f"{eval_batches or 'all'} held-out batches")
  scores = held_out_scores(loss, superlm.params, teacher.params, superlm.table,
                           np.arange(len(names)), eval_data, mesh, eval_batches, progress)
  result = {name: float(v) for name, v in zip(names, scores)}
  files.write_json(path, {"stamp": stamp, "scores": result})
  return result


def subnet_records(space: Space, students: Sequence[StudentConfig], scores: dict[str, float],
                   latency: Any, cache: Any, constraints: SubnetConstraints
                   ) -> list[TrialRecord]:
  """One :class:`TrialRecord` per subnet (trial id = point order + 1): its factors, size, FLOPs
  of the latency forward (``latency``: :class:`~autodistill.hardware.cache.LatencySettings`),
  cached latency where ``cache`` has it, and its score unless a constraint prunes it."""
  points = space.valid_points()
  baseline = space.baseline
  records = []
  for i, (point, student) in enumerate(zip(points, students)):
    record = TrialRecord(trial_id=i + 1, name=student.name, factors=dict(point),
                         is_baseline=baseline is not None and dict(point) == dict(baseline),
                         params=analytic_param_count(student, heads=False),
                         flops=float(analytic_flops(student, batch_size=latency.batch_size,
                                                    seq_len=latency.seq_len)))
    measured = None if cache is None else cache.get(student, **latency.key_settings)
    if measured is not None and measured.ok:
      record.latency_ms, record.latency_std_ms = measured.median_ms, measured.std_ms
      record.latency_p10_ms, record.latency_p90_ms = measured.p10_ms, measured.p90_ms
    reason = constraints.violation(record)
    if reason:
      record.status, record.reason = INFEASIBLE, f"constraint: {reason}"
    else:
      record.status, record.relation_loss = COMPLETED, scores[student.name]
    records.append(record)
  return records


def objectives_for(cost: str) -> list[Objective]:
  """(relation loss, cost): the front the search reports."""
  if cost not in COSTS:
    raise ValueError(f"supernet.cost={cost!r} is not one of {COSTS}.")
  return [RELATION_LOSS, OBJECTIVES[cost]]


def best_subnet(records: Sequence[TrialRecord]) -> Optional[TrialRecord]:
  """The feasible subnet with the lowest relation loss (AutoDistil's task-agnostic pick)."""
  feasible = [r for r in records if r.feasible and r.relation_loss is not None]
  return min(feasible, key=lambda r: (r.relation_loss, r.trial_id)) if feasible else None


def write_search(records: Sequence[TrialRecord], directory: pathlib.Path, cost: str,
                 title: str, extra: dict[str, Any]) -> dict[str, Any]:
  """Writes the trials table, front, plot and ``summary.json``; returns the summary."""
  objectives = objectives_for(cost)
  paths = report_lib.write_report(records, directory, objectives, title=title)
  front = pareto_front(records, objectives)
  best = best_subnet(records)
  baseline = next((r for r in records if r.is_baseline), None)

  def row(r: Optional[TrialRecord]) -> Optional[dict[str, Any]]:
    if r is None:
      return None
    return {"name": r.name, "factors": r.factors, "relation_loss": r.relation_loss,
            "params": r.params, "flops": r.flops, "latency_ms": r.latency_ms,
            "status": r.status}

  summary = {**extra, "subnets": len(records),
             "feasible": sum(r.feasible for r in records), "cost": cost,
             "best": row(best), "baseline": row(baseline),
             "front": [row(r) for r in front], "files": paths}
  files.write_json(directory / SUMMARY_JSON, summary)
  return summary


def extract_subnet(superlm: SuperLM, student: StudentConfig, target: str | os.PathLike,
                   *, relation_loss: Optional[float] = None) -> pathlib.Path:
  """Writes ``student``, cut out of the SuperLM's shared weights, as a distillation directory
  (``result.json`` + ``student/`` Orbax parameters, as :func:`~autodistill.distill.distill`
  writes them), which ``load_distilled``, ``autodistill export`` and ``finetune`` read.

  Its forward equals the SuperLM's masked forward for the subnet
  (``tests/supernet/test_supernet.py``). The MLM and NSP heads are the SuperLM's, which relation
  distillation does not train: distil further before reading MLM accuracy off it.
  """
  target = pathlib.Path(target)
  params = superlm.envelope.extract(student, superlm.params)
  save_params(target / "student", jax.device_get(params))
  files.write_json(target / "result.json", {
      "student": student.name, "student_config": dataclasses.asdict(student),
      "source": "supernet", "superlm": str(superlm.directory),
      "evals": {"superlm": {} if relation_loss is None else {"relation_loss": relation_loss}}})
  return target


def proxy_select(superlm: SuperLM, records: Sequence[TrialRecord], task: Any, recipe: Any,
                 tokenizer: Any, directory: pathlib.Path, candidates: int,
                 log: Log = print) -> dict[str, Any]:
  """AutoDistil's "Proxy" selection: the ``candidates`` feasible subnets with the lowest
  relation loss are extracted and fine-tuned briefly on a proxy task (the paper: MNLI), and the
  best on its dev split wins (the "Agnostic" pick is the relation loss's own best).

  Args:
    task: a :class:`~autodistill.finetune.Task`.
    recipe: the :class:`~autodistill.finetune.FinetuneConfig` of the short fine-tune.
    directory: the SuperLM directory; students go to ``students/<name>``, fine-tunings to
      ``proxy/<name>/<task>`` (finished ones are read back).

  Returns:
    ``{"task", "scores": {name: dev score}, "metric", "best"}``.
  """
  # pylint: disable-next=import-outside-toplevel
  from autodistill.finetune.finetuning import finetune_many, load_backbone
  ranked = sorted((r for r in records if r.feasible and r.relation_loss is not None),
                  key=lambda r: (r.relation_loss, r.trial_id))[:candidates]
  by_name = {s.name: s for s in superlm.table.students}
  backbones = []
  for record in ranked:
    target = directory / "students" / record.name
    if not (target / "result.json").is_file():
      extract_subnet(superlm, by_name[record.name], target, relation_loss=record.relation_loss)
    backbones.append(load_backbone(target))
  log(f"supernet: proxy selection: {len(backbones)} subnets fine-tuned on {task.name}")
  results = finetune_many(backbones, [task], directory / "proxy", tokenizer, recipe, log=log)
  scores = {r.model: float(r.dev[r.metric]) for r in results}
  relation = {r.name: r.relation_loss for r in ranked}
  best = max(scores, key=lambda name: (scores[name], -relation[name])) if scores else None
  return {"task": task.name, "metric": results[0].metric if results else "", "scores": scores,
          "best": best}
