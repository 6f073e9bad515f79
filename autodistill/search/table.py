"""Measured tables of a space's students, and designer replays against them (paper section 4.3,
Figures 3 and 4, in kind).

The paper compares designers by the iterations each needs to find a student better than
MobileBERT (Figure 3: the GP bandit 43 vs random 116 to the first, 110 vs 270 to the third).
Distilling every student of every designer's run for several seeds would cost hundreds of trials
per run; instead, every student of a space is evaluated once, exactly as a search trial is, into a
*table*, and each designer is *replayed* against it: a suggestion's metrics are looked up, not
re-trained. The designer sees the same Vizier trials a live search would give it.

* **A table** is a JSON-lines file with one :class:`TrialRecord` (``to_dict``) per student.
  :func:`build_table` appends each row as its student finishes, so a killed build resumes where
  it stopped without re-evaluating a finished student, and several builders may share one file
  (each re-reads it before a student; if two race on one student the first row wins when read).
* **Latency** of every row can be re-taken from one sweep of the space (:func:`with_latency`,
  :func:`write_table`), so that students timed hours apart under different loads compare.
* **A replay** (:func:`replay`) asks the designer for one suggestion at a time, up to
  ``max_iterations``; an infeasible row is completed as infeasible, as the live loop does. It
  records the suggested students in order, the iterations to the first and third distinct student
  that dominates the baseline, and the hypervolume of the feasible trials among the first N.
* **Dominating the baseline** follows the search's noise rule (:func:`pareto.record_dominates`):
  a latency difference within the larger of the two measurements' noise is a tie, so a student
  "beats the baseline" only by a difference the latency measurement resolves. Replays also
  count the students that beat the baseline's raw medians, the paper's comparison.
* **Search and report objectives** may differ: a single-objective search (accuracy only, latency
  only, Figure 4's comparison) is scored on the same two-objective front as the multi-objective
  one (``report_objectives``).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

from autodistill import files
from autodistill.search import pareto
from autodistill.search.records import TrialRecord
from autodistill.search.settings import Objective, get_objectives
from autodistill.space import Point, Space

Table = dict[str, TrialRecord]


def read_table(path: str | pathlib.Path) -> Table:
  """The table at ``path`` by student name ({} when the file does not exist yet).

  A truncated last line (a builder killed mid-write) is ignored; it is re-evaluated.
  """
  path = pathlib.Path(path)
  table: Table = {}
  if not path.exists():
    return table
  for line in path.read_text().splitlines():
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(row, dict) and row.get("name") and row["name"] not in table:
      table[row["name"]] = TrialRecord.from_dict(row)
  return table


def build_table(context: Any, path: str | pathlib.Path, trials_dir: str | pathlib.Path, *,
                points: Optional[Sequence[Point]] = None, limit: int = 0,
                reverse: bool = False, evaluate: Optional[Callable[..., TrialRecord]] = None,
                log: Callable[[str], None] = print) -> list[str]:
  """Evaluates the students of ``context.space`` missing from the table at ``path``.

  Args:
    context: the search's :class:`~autodistill.search.evaluate.SearchContext`.
    path: the JSON-lines table; created, then appended to.
    trials_dir: each student's trial directory is ``trials_dir/<name>`` (its checkpoints let an
      interrupted student resume).
    points: the students to cover (default: every valid point, the baseline first).
    limit: evaluate at most this many (0: all missing).
    reverse: start from the last point (a second builder on the same table).
    evaluate: ``evaluate_student``'s signature; the default is the search's own.
    log: progress lines.

  Returns:
    The names evaluated by this call, in order.
  """
  if evaluate is None:
    # pylint: disable-next=import-outside-toplevel
    from autodistill.search.evaluate import evaluate_student as evaluate
  path, trials_dir = pathlib.Path(path), pathlib.Path(trials_dir)
  space: Space = context.space
  if points is None:
    points = sorted(space.valid_points(), key=lambda p: p != space.baseline)
  points = list(reversed(points)) if reverse else list(points)
  names = [context.student(p).name for p in points]
  finished = read_table(path)
  missing = [i for i, name in enumerate(names) if name not in finished]
  todo = missing[:limit or None]
  log(f"table {path.name}: {len(points) - len(missing)} of {len(points)} students done; "
      f"evaluating {len(todo)}")
  path.parent.mkdir(parents=True, exist_ok=True)
  done: list[str] = []
  for i in todo:
    name = names[i]
    if name in read_table(path):  # another builder finished it meanwhile
      continue
    start = time.perf_counter()
    record = TrialRecord(trial_id=i + 1, is_baseline=points[i] == space.baseline,
                         workdir=str(trials_dir / name))
    evaluate(context, points[i], trials_dir / name, record, log=lambda _: None)
    _append(path, record.to_dict())
    done.append(name)
    log(f"[{len(read_table(path))}/{len(points)}] {name}: {record.status}, mlm loss "
        f"{_fmt(record.mlm_loss)}, accuracy {_fmt(record.mlm_accuracy)}, latency "
        f"{_fmt(record.latency_ms)} ms ({time.perf_counter() - start:.0f} s) {record.reason}")
  return done


def _append(path: pathlib.Path, row: dict[str, Any]) -> None:
  """Appends one JSON line, first ending a line a killed writer left unfinished."""
  with path.open("ab") as f:
    if f.tell() and _last_byte(path) != b"\n":
      f.write(b"\n")
    f.write((json.dumps(row) + "\n").encode())


def _last_byte(path: pathlib.Path) -> bytes:
  with path.open("rb") as f:
    f.seek(-1, 2)
    return f.read(1)


def write_table(table: Table, path: str | pathlib.Path) -> pathlib.Path:
  """Rewrites the table at ``path`` whole (atomically: a kill leaves the old file or the new)."""
  return files.write_text(path, "".join(json.dumps(r.to_dict()) + "\n" for r in table.values()))


def with_latency(table: Table, measure: Callable[[TrialRecord], Any]) -> Table:
  """The table with every row's latency taken from ``measure(row)`` (a
  :class:`~autodistill.hardware.latency.LatencyResult`, e.g. from one latency sweep of the whole
  space on a quiet machine): median, 10th and 90th percentiles, spread and FLOPs.

  A table built over hours mixes latencies timed under different loads (on a shared 2-core host
  the same student's median moved 3x between two such measurements), which decides who beats the
  baseline; one sweep for all rows makes them comparable. Other fields are kept.

  Raises:
    ValueError: a measurement failed (the message names the student).
  """
  out: Table = {}
  for name, record in table.items():
    result = measure(record)
    if not result.ok:
      raise ValueError(f"latency of {name} failed: {result.error}")
    row = TrialRecord.from_dict(record.to_dict())
    row.latency_ms, row.latency_p10_ms, row.latency_p90_ms = (result.median_ms, result.p10_ms,
                                                              result.p90_ms)
    row.latency_std_ms, row.flops = result.std_ms, result.flops
    out[name] = row
  return out


def _fmt(value: Optional[float]) -> str:
  return "-" if value is None else f"{value:.4f}"


def missing_students(space: Space, table: Table) -> list[str]:
  """Names of the valid students of ``space`` the table lacks."""
  return [c.name for c in space.architectures() if c.name not in table]


def space_table(table: Table, space: Space) -> Table:
  """The rows of ``space``'s students (a table of a larger space serves each sub-space whose
  students it holds, e.g. ``cpu_demo``'s 48 in ``cpu_wide``'s 216).

  Raises:
    ValueError: the table lacks students of the space (the message says how many).
  """
  missing = missing_students(space, table)
  if missing:
    raise ValueError(f"the table lacks {len(missing)} of {space.num_valid} students of "
                     f"{space.name} (e.g. {missing[0]}); finish building it first.")
  return {c.name: table[c.name] for c in space.architectures()}


def dominating_baseline(table: Table, objectives: Sequence[str | Objective], *,
                        noise: bool = True) -> list[str]:
  """Students of the table that dominate its baseline, by name.

  ``noise=True`` is the search's rule (:func:`pareto.dominating_baseline`: a latency within the
  larger of the two measurements' noise is a tie); ``noise=False`` compares the medians as they
  are, as the paper's tables do.
  """
  if noise:
    return sorted(r.name for r in pareto.dominating_baseline(list(table.values()), objectives))
  base = pareto.baseline_record(list(table.values()))
  vector = lambda r: pareto.metric_vector(r, objectives)  # noqa: E731
  return sorted(r.name for r in pareto.feasible_records(list(table.values()), objectives)
                if not r.is_baseline and pareto.dominates(vector(r), vector(base), objectives))


def uniform_hit_iteration(students: int, hits: int, j: int = 1) -> Optional[float]:
  """Expected iteration of the ``j``-th hit when students are drawn uniformly without
  replacement, ``hits`` of ``students`` being hits: ``j (students + 1) / (hits + 1)`` (None when
  fewer than ``j`` hits exist). The yardstick of a replay: with a third of the table dominating
  the baseline, uniform sampling finds the first in about 3 iterations, and no designer can need
  fewer than ``j``."""
  if hits < j:
    return None
  return j * (students + 1) / (hits + 1)


def with_baseline(table: Table, name: str) -> Table:
  """The table with ``name`` as its baseline (the row's ``is_baseline``; other rows cleared).

  Raises:
    ValueError: ``name`` is not a row of the table.
  """
  if name not in table:
    raise ValueError(f"no student {name} in the table; pick a baseline among its rows.")
  out: Table = {}
  for key, record in table.items():
    row = TrialRecord.from_dict(record.to_dict())
    row.is_baseline = key == name
    out[key] = row
  return out


def baseline_at_share(table: Table, objectives: Sequence[str | Objective],
                      share: float = 0.05) -> str:
  """A baseline as hard to beat as ``share`` asks: the feasible student that the number of rows
  dominating it (the search's noise rule) is closest to ``share`` of the table without exceeding
  it, ties broken by the median latency closest to the table's median (the middle of the
  trade-off, as MobileBERT sits in the paper's Figure 4), then by name.

  The paper's baseline is a hand-tuned MobileBERT that few searched students beat; a space's
  own baseline point need not be (in ``cpu_wide`` a third of the students beat the scaled
  MobileBERT shape after flash distillation), and a replay in which random search finds a
  better student in three draws cannot show a designer's efficiency. The rule looks at the
  table only, never at a designer's runs.
  """
  if not 0.0 <= share <= 1.0:
    raise ValueError(f"share must be between 0 and 1 (a fraction of the table), got {share}.")
  feasible = pareto.feasible_records(list(table.values()), objectives)
  if not feasible:
    raise ValueError("the table has no feasible student to be the baseline.")
  limit = share * len(table)
  latencies = sorted(r.latency_ms for r in feasible)
  middle = latencies[len(latencies) // 2]

  def dominators(record: TrialRecord) -> int:
    return sum(pareto.record_dominates(o, record, objectives) for o in feasible if o is not record)

  counted = [(dominators(r), r) for r in feasible]
  eligible = [(n, r) for n, r in counted if n <= limit]
  return min(eligible, key=lambda nr: (-nr[0], abs(nr[1].latency_ms - middle), nr[1].name))[1].name


def raw_front(table: Table, objectives: Sequence[str | Objective]) -> list[str]:
  """The Pareto front of the table's medians (no noise rule), sorted by the last objective.

  With large latency noise the search's noise-aware front can shrink to the most accurate
  student alone (it ties every slower one); this is the front a plot of the medians shows.
  """
  records = pareto.feasible_records(list(table.values()), objectives)
  vector = lambda r: pareto.metric_vector(r, objectives)  # noqa: E731
  front = [r for r in records
           if not any(pareto.dominates(vector(o), vector(r), objectives) for o in records)]
  last = pareto.as_objectives(objectives)[-1].name
  return [r.name for r in sorted(front, key=lambda r: (r.metric(last), r.name))]


def hypervolume_reference(table: Table, objectives: Sequence[str | Objective]) -> list[float]:
  """The worst value of each objective over the table's feasible students."""
  feasible = [r for r in table.values() if r.feasible]
  return [(min if o.goal == "maximize" else max)(r.metric(o.name) for r in feasible)
          for o in get_objectives([getattr(o, "name", o) for o in objectives])]


def replay(designer: str, seed: int, space: Space, table: Table,
           objectives: Sequence[str], *, max_iterations: int, hv_after: Sequence[int] = (16,),
           report_objectives: Optional[Sequence[str]] = None,
           reference: Optional[Sequence[float]] = None, stop_after: int = 3) -> dict[str, Any]:
  """One designer's search against the table (see the module docstring).

  Args:
    designer: a name of :data:`autodistill.search.designers.DESIGNERS`.
    seed: the designer's seed.
    space: the table's space.
    table: :func:`read_table`'s result; must hold every valid student of ``space`` (other rows
      are left out: :func:`space_table`).
    objectives: what the designer optimises (names of ``OBJECTIVES``).
    max_iterations: suggestions at most.
    hv_after: report the hypervolume of the feasible trials among the first N, per N.
    report_objectives: the objectives the run is scored on (default ``objectives``).
    reference: the hypervolume reference (default: :func:`hypervolume_reference`).
    stop_after: stop once this many distinct students dominating the baseline were found and
      every ``hv_after`` was reached (0: run all ``max_iterations``).

  Returns:
    ``{"designer", "seed", "objectives", "names", "iterations", "first_dominating",
    "third_dominating", "dominating_found", "first_dominating_raw", "third_dominating_raw",
    "hypervolume": {N: hv}, "suggest_s"}``; an iteration count is None when the run did not
    find that many. ``*_raw`` count students that beat the baseline's medians (no noise rule);
    ``stop_after`` follows the noise rule.

  Raises:
    ValueError: the table lacks students of the space (the message says how many).
  """
  # pylint: disable=import-outside-toplevel
  from vizier import pyvizier as vz

  from autodistill.search import designers
  from autodistill.search import problem as problem_lib

  table = space_table(table, space)
  report = list(report_objectives or objectives)
  reference = list(reference) if reference is not None else hypervolume_reference(table, report)
  wanted = set(dominating_baseline(table, report))
  wanted_raw = set(dominating_baseline(table, report, noise=False))
  problem = problem_lib.problem_statement(space, list(objectives))
  completed: list[vz.Trial] = []
  names: list[str] = []
  found: list[int] = []  # iterations at which a new dominating student arrived
  found_raw: list[int] = []  # the same by the medians alone
  suggest_s: list[float] = []
  for iteration in range(1, max_iterations + 1):
    start = time.perf_counter()
    suggestion = designers.suggest(designer, problem, completed, [], seed=seed, count=1)[0]
    suggest_s.append(round(time.perf_counter() - start, 4))
    point = problem_lib.point_of(space, suggestion.parameters.as_dict())
    name = space.config(point).name
    record = table[name]
    trial = suggestion.to_trial(iteration)
    if record.feasible:
      trial.complete(vz.Measurement(metrics={o: record.metric(o) for o in objectives}))
    else:
      trial.complete(vz.Measurement(), infeasibility_reason=record.reason or "infeasible")
    completed.append(trial)
    if name not in names:
      if name in wanted:
        found.append(iteration)
      if name in wanted_raw:
        found_raw.append(iteration)
    names.append(name)
    if stop_after and len(found) >= stop_after and iteration >= max(hv_after, default=0):
      break
  hypervolume = {}
  for n in hv_after:
    points = [pareto.metric_vector(table[name], report) for name in names[:n]
              if table[name].feasible]
    hypervolume[n] = pareto.hypervolume(points, reference, report)
  return {"designer": designer, "seed": seed, "objectives": list(objectives), "names": names,
          "iterations": len(names),
          "first_dominating": found[0] if found else None,
          "third_dominating": found[2] if len(found) > 2 else None,
          "dominating_found": len(found),
          "first_dominating_raw": found_raw[0] if found_raw else None,
          "third_dominating_raw": found_raw[2] if len(found_raw) > 2 else None,
          "hypervolume": hypervolume, "suggest_s": suggest_s}
