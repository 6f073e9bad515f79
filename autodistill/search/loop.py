"""The AutoDistill search loop (paper section 3.1, Figure 1) on an OSS Vizier study.

Each iteration: **Model Exploration** (the Vizier designer suggests a student) -> **Flash
Distillation** of that student -> **Evaluation** (held-out MLM accuracy, latency on the target
device) -> the trial is completed with its metrics, and the designer's next suggestion uses them.

Persistence: the study lives in Vizier's SQL datastore, ``<workdir>/study.sqlite``, served by a
``vizier.service`` server (in-process by default). Each trial distils in
``<workdir>/trials/<id>/`` with its own checkpoints, and its full record (every metric, timing
and reason) is stored in the trial's metadata as well as in ``record.json``. Killing the search at
any moment and re-running the same command resumes: completed trials are kept, and the trial
that was running comes back to the same ``client_id`` (Vizier re-issues a client's active trial)
and resumes from its checkpoint.

Scale-out: :func:`serve` runs the Vizier server for a study (on a host other machines reach);
:func:`search` with ``config.search.endpoint=host:port`` and a distinct ``client_id`` per worker
runs trials on that worker's own devices. The designer runs in the server (Pythia), so all
workers share one model of the space.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Callable, Iterator, Mapping, Optional

# gRPC's core (under the Vizier service) logs connection events such as "Got goaway" at INFO to
# stderr when an in-process server stops; keep errors only unless the user asked for more. Set
# before gRPC is imported, in the one module that starts servers and clients.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # pylint: disable=wrong-import-position
from vizier import pyvizier as vz
from vizier.service import clients
from vizier.service import pyvizier as svz
from vizier.service import servers

from autodistill import files
from autodistill.search import problem as problem_lib
from autodistill.search.evaluate import SearchContext, evaluate_student, paired_errors
from autodistill.search.policy import SearchPolicyFactory
from autodistill.search.records import ACTIVE, COMPLETED, INFEASIBLE, TrialRecord
from autodistill.search.settings import IncompatibleStudyError, SearchSettings, get_objectives
from autodistill.space import Space

OWNER = "autodistill"
STUDY_DB = "study.sqlite"
NS = problem_lib.METADATA_NS


@dataclasses.dataclass
class SearchResult:
  """What a search produced: every trial, the front, and where the outputs are."""

  records: list[TrialRecord]
  front: list[TrialRecord]
  dominating_baseline: list[TrialRecord]
  outputs: dict[str, str]
  seconds: float
  summary: str = ""


def database_url(workdir: str | os.PathLike) -> str:
  return f"sqlite:///{pathlib.Path(workdir).absolute() / STUDY_DB}"


@contextlib.contextmanager
def _endpoint(endpoint: str) -> Iterator[None]:
  """Points Vizier's client library (a process-wide setting) at ``endpoint`` for a while."""
  previous = clients.environment_variables.server_endpoint
  clients.environment_variables.server_endpoint = endpoint
  try:
    yield
  finally:
    clients.environment_variables.server_endpoint = previous


# The tables of Vizier's SQL datastore (vizier/_src/service/sql_datastore.py).
STUDY_TABLES = ("owners", "studies", "trials", "suggestion_operations",
                "early_stopping_operations")


def check_study_file(workdir: str | os.PathLike) -> None:
  """Checks that an existing ``<workdir>/study.sqlite`` is a readable Vizier study.

  Vizier's datastore creates its tables in whatever file it is given, so without this check an
  emptied or damaged study would be replaced by a new, empty one (and the trials tables
  rewritten from it). A missing file is fine: a new study is created.

  Raises:
    CorruptFileError: the file is empty, not SQLite, damaged, or not a Vizier study.
  """
  path = pathlib.Path(workdir) / STUDY_DB
  if path.exists():
    files.check_sqlite(path, STUDY_TABLES, fix=(
        "restore it from a backup, or move it away to start a new study in this workdir (the "
        "trials/ directories and tables stay where they are, but the new study does not "
        "know them)"))


def start_server(workdir: str | os.PathLike, host: str = "localhost",
                 port: Optional[int] = None) -> servers.DefaultVizierServer:
  """A Vizier server (with autodistill's seeded designers) on ``<workdir>/study.sqlite``.

  Raises:
    CorruptFileError: the workdir's study exists and cannot be read (see
      :func:`check_study_file`); it is never re-created over.
  """
  pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
  check_study_file(workdir)
  kwargs = {"port": port} if port else {}
  return servers.DefaultVizierServer(host=host, database_url=database_url(workdir),
                                     policy_factory=SearchPolicyFactory(), **kwargs)


def _study_metadata(space: Space, settings: SearchSettings,
                    evaluation: Mapping[str, Any]) -> dict[str, str]:
  """What the study stores about itself; ``evaluation`` is everything a trial's result depends
  on (:meth:`autodistill.config.Settings.evaluation`): a resumed search must evaluate like the
  original."""
  return {"designer": settings.designer, "seed": str(settings.seed),
          "space": json.dumps(space.to_dict(), sort_keys=True),
          "objectives": json.dumps(list(settings.objectives)),
          "evaluation": json.dumps(evaluation, sort_keys=True, default=str),
          **settings.designer_metadata()}


def create_or_load_study(space: Space, settings: SearchSettings,
                         evaluation: Mapping[str, Any]) -> clients.Study:
  """Creates the study (and requests the space's baseline as its first trial), or loads it.

  Must run with the client pointed at the server (see :func:`search` and :func:`serve`).

  Raises:
    IncompatibleStudyError: a study with this id exists with another space, objectives,
      designer or evaluation.
  """
  metadata = _study_metadata(space, settings, evaluation)
  problem = problem_lib.problem_statement(space, settings.objectives, metadata)
  study_config = svz.StudyConfig.from_problem(problem)
  study_config.algorithm = "DEFAULT"  # the designer is chosen by SearchPolicyFactory from metadata
  study = clients.Study.from_study_config(study_config, owner=OWNER, study_id=settings.study_id)
  stored = study.materialize_problem_statement().metadata.ns(NS)
  for key in metadata:
    if stored.get(key) != metadata[key]:
      raise IncompatibleStudyError(
          f"study {settings.study_id!r} in this workdir was created with {key}="
          f"{stored.get(key)!r}, not {metadata[key]!r}; resume with the original config, or use "
          "a fresh --workdir (or another --config.search.study_id).")
  if (settings.evaluate_baseline and space.baseline is not None
      and not list(study.trials().get())):
    suggestion = vz.TrialSuggestion(problem_lib.parameters_of(space, space.baseline))
    suggestion.metadata.ns(NS)["baseline"] = "true"
    study.request(suggestion)
  return study


def _counts(trials: list[vz.Trial]) -> tuple[int, int]:
  """(completed trials that reached distillation, all completed trials)."""
  completed = [t for t in trials if t.status == vz.TrialStatus.COMPLETED]
  evaluated = [t for t in completed if t.metadata.ns(NS).get("pruned") != "true"]
  return len(evaluated), len(completed)


def run_worker(study: clients.Study, context: SearchContext, settings: SearchSettings,
               workdir: pathlib.Path, *, log: Callable[[str], None] = print) -> int:
  """Runs trials of ``study`` until it has ``num_trials`` evaluated trials; returns how many ran.

  Trials pruned before distillation (invalid architectures, known constraint violations) are
  completed as infeasible at no cost and do not count towards ``num_trials``; at most
  ``max_suggestions`` (default 20 x num_trials) suggestions are taken, so a space that is
  mostly invalid cannot loop forever.
  """
  space = context.space
  client_id = settings.client_id
  num_trials = settings.num_trials
  max_suggestions = settings.max_suggestions or 20 * num_trials
  ran = 0
  for _ in range(max_suggestions):
    evaluated, _ = _counts(list(study.trials().get()))
    if evaluated >= num_trials:
      break
    suggestions = study.suggest(count=1, client_id=client_id)
    if not suggestions:
      log("the designer has no more suggestions")
      break
    trial = suggestions[0]
    vz_trial = trial.materialize()
    point = problem_lib.point_of(space, vz_trial.parameters.as_dict())
    is_baseline = vz_trial.metadata.ns(NS).get("baseline") == "true"
    trial_dir = workdir / "trials" / f"{trial.id:04d}"
    record = TrialRecord(trial_id=trial.id, client_id=client_id, is_baseline=is_baseline,
                         workdir=str(trial_dir.relative_to(workdir)))
    resumed = (trial_dir / "checkpoints").exists()
    label = " (baseline)" if is_baseline else ""
    what = point if space.invalid_reason(point) else space.config(point).name
    log(f"trial {trial.id}{label}: {what}{' - resuming' if resumed else ''} "
        f"[{evaluated}/{num_trials} evaluated]")
    earlier = _earlier_evaluation(study, space, point, trial.id)
    if earlier is not None:
      # Designers may suggest a student again (a small discrete space, or the GP's acquisition
      # maximum staying put): reuse its result instead of distilling it twice.
      record = dataclasses.replace(earlier, trial_id=trial.id, client_id=client_id,
                                   is_baseline=is_baseline, workdir=earlier.workdir,
                                   repeat_of=earlier.repeat_of or earlier.trial_id)
      log(f"trial {trial.id}: repeats trial {record.repeat_of}; reusing its result")
    else:
      evaluate_student(context, point, trial_dir, record, log=log)
    _complete(trial, record, settings.objectives, trial_dir)
    ran += 1
    if record.status == COMPLETED:
      loss = "?" if record.mlm_loss is None else f"{record.mlm_loss:.4f}"
      log(f"trial {trial.id}: {record.name} MLM accuracy {record.mlm_accuracy:.4f} (loss "
          f"{loss}), latency {record.latency_ms:.3f} ms, {record.params / 1e6:.2f}M params "
          f"({record.total_s or 0:.0f}s)")
  return ran


def _earlier_evaluation(study: clients.Study, space: Space, point: dict[str, Any],
                        trial_id: int) -> Optional[TrialRecord]:
  """The record of a completed trial of the same student, if there is one."""
  for other in study.trials().get():
    if other.id == trial_id or other.status != vz.TrialStatus.COMPLETED:
      continue
    stored = other.metadata.ns(NS).get("record")
    if stored and problem_lib.point_of(space, other.parameters.as_dict()) == point:
      return TrialRecord.from_dict(json.loads(stored))
  return None


def _complete(trial: clients.Trial, record: TrialRecord, objectives: Any,
              trial_dir: pathlib.Path) -> None:
  """Stores the record (metadata + record.json) and completes the Vizier trial."""
  # Pruned: cost no distillation (invalid, a constraint known in advance, or a repeat).
  pruned = (record.status == INFEASIBLE and record.distill_s is None) or bool(record.repeat_of)
  metadata = vz.Metadata()
  metadata.ns(NS)["record"] = json.dumps(record.to_dict())
  metadata.ns(NS)["pruned"] = "true" if pruned else "false"
  trial.update_metadata(metadata)
  files.write_json(trial_dir / "record.json", record.to_dict())
  values = {name: record.metric(name) for name in objectives}
  measurement = None
  if all(v is not None for v in values.values()):
    measurement = vz.Measurement(metrics=values)
  if record.status == COMPLETED:
    trial.complete(measurement)
  else:
    trial.complete(measurement, infeasible_reason=record.reason or "infeasible")


def study_records(study: clients.Study, space: Space) -> list[TrialRecord]:
  """Every trial of the study as a :class:`TrialRecord`, in trial-id order."""
  records = []
  for trial in sorted(study.trials().get(), key=lambda t: t.id):
    stored = trial.metadata.ns(NS).get("record")
    if stored:
      record = TrialRecord.from_dict(json.loads(stored))
    else:
      record = TrialRecord(trial_id=trial.id)
      try:
        record.factors = problem_lib.point_of(space, trial.parameters.as_dict())
        if space.invalid_reason(record.factors) is None:
          record.name = space.config(record.factors).name
      except ValueError:
        pass
      record.is_baseline = trial.metadata.ns(NS).get("baseline") == "true"
    if trial.status == vz.TrialStatus.COMPLETED:
      record.status = INFEASIBLE if trial.infeasible else COMPLETED
      if trial.infeasible:
        record.reason = trial.infeasibility_reason or record.reason
    else:
      record.status = ACTIVE
    records.append(record)
  return records


def write_outputs(records: list[TrialRecord], workdir: pathlib.Path,
                  objectives: Any, title: str, paired: Any = None) -> tuple[dict[str, str], str]:
  """Trials table, Pareto front, plot and the terminal summary (see :mod:`search.report`;
  ``paired``: :func:`~autodistill.search.evaluate.paired_errors`, where the held-out data is at
  hand)."""
  from autodistill.search import report  # pylint: disable=import-outside-toplevel
  outputs = report.write_report(records, workdir, objectives, title=title)
  summary = report.summary_table(records, objectives, paired=paired)
  files.write_text(workdir / "summary.txt", summary + "\n")
  outputs["summary"] = str(workdir / "summary.txt")
  return outputs, summary


def _result(study: clients.Study, space: Space, settings: SearchSettings,
            workdir: pathlib.Path, start: float, log: Callable[[str], None],
            paired: Any = None) -> SearchResult:
  from autodistill.search import pareto  # pylint: disable=import-outside-toplevel
  objectives = get_objectives(settings.objectives)
  records = study_records(study, space)
  title = f"{space.name}: {settings.designer} search, {len(records)} trials"
  outputs, summary = write_outputs(records, workdir, list(settings.objectives), title, paired)
  log(summary)
  log("outputs: " + ", ".join(f"{k} {v}" for k, v in outputs.items()))
  return SearchResult(records=records,
                      front=pareto.pareto_front(records, objectives),
                      dominating_baseline=pareto.dominating_baseline(records, objectives),
                      outputs=outputs, seconds=round(time.time() - start, 1), summary=summary)


@contextlib.contextmanager
def _study_server(workdir: pathlib.Path, endpoint: str, **kwargs: Any) -> Iterator[str]:
  """The endpoint of the study: ``endpoint`` if given, else an in-process Vizier server on the
  workdir's SQLite database for the duration of the block; the client points at it."""
  server = None if endpoint else start_server(workdir, **kwargs)
  endpoint = endpoint or server.endpoint
  try:
    with _endpoint(endpoint):
      yield endpoint
  finally:
    if server is not None:
      server._server.stop(None)  # pylint: disable=protected-access


def search(context: SearchContext, settings: SearchSettings, workdir: str | os.PathLike, *,
           evaluation: Mapping[str, Any], log: Callable[[str], None] = print) -> SearchResult:
  """Runs (or resumes) the AutoDistill search in ``workdir``.

  With ``settings.endpoint`` empty, a Vizier server runs in this process on
  ``<workdir>/study.sqlite``; otherwise this process is one worker of the study served at that
  endpoint (see :func:`serve`), and ``settings.client_id`` must be unique per worker.

  Args:
    context: the teacher, data, space and recipe of every trial.
    settings: designer, trials, objectives, study and worker.
    workdir: holds the study, the trials and the outputs.
    evaluation: everything a trial's result depends on (stored in the study; a resumed search
      must match it): :meth:`autodistill.config.Settings.evaluation`.

  Returns:
    A :class:`SearchResult`; the trials table (CSV/JSON), Pareto front, plot and summary are
    written to ``workdir``.
  """
  start = time.time()
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  with _study_server(workdir, settings.endpoint) as endpoint:
    if settings.endpoint:
      study = _load_remote_study(context.space, settings, evaluation)
    else:
      study = create_or_load_study(context.space, settings, evaluation)
    log(f"search: {context.space.describe()}; designer {settings.designer} (seed "
        f"{settings.seed}); {settings.num_trials} trials; study {study.resource_name} at "
        f"{endpoint}")
    run_worker(study, context, settings, workdir, log=log)
    try:
      return _result(study, context.space, settings, workdir, start, log,
                     paired=paired_errors(context, workdir))
    except grpc.RpcError as error:
      if not settings.endpoint:
        raise
      log(f"the Vizier server at {endpoint} has finished ({error.code().name}); its workdir "
          "holds the search's outputs")
      return SearchResult(records=[], front=[], dominating_baseline=[], outputs={},
                          seconds=round(time.time() - start, 1))


def _load_remote_study(space: Space, settings: SearchSettings,
                       evaluation: Mapping[str, Any]) -> clients.Study:
  deadline = time.time() + 60
  while True:
    try:
      study = clients.Study.from_owner_and_id(OWNER, settings.study_id)
      break
    except clients.ResourceNotFoundError:
      if time.time() > deadline:
        raise
      time.sleep(1.0)
  stored = study.materialize_problem_statement().metadata.ns(NS)
  expected = _study_metadata(space, settings, evaluation)
  # Paths may differ between machines, so only what defines the problem must match.
  for key in ("space", "objectives"):
    if stored.get(key) != expected[key]:
      raise IncompatibleStudyError(
          f"the server's study {settings.study_id!r} has {key}={stored.get(key)!r}; this "
          f"worker's config has {expected[key]!r}. Start workers with the server's config.")
  return study


def serve(space: Space, settings: SearchSettings, workdir: str | os.PathLike, *,
          evaluation: Mapping[str, Any], host: str = "0.0.0.0", port: int = 0,
          poll_s: float = 5.0, linger_s: float = 10.0, log: Callable[[str], None] = print,
          ready: Optional[Callable[[str], None]] = None) -> SearchResult:
  """Serves the study to remote workers until it has ``settings.num_trials`` trials.

  Creates (or loads) the study in ``<workdir>/study.sqlite`` and requests the baseline, then
  waits while workers (``search`` with ``settings.endpoint`` set) run trials; when enough
  trials are evaluated, writes the trials table, front, plot and summary and returns.

  Args:
    space, settings, evaluation: as for :func:`search`.
    host, port: where to listen (port 0 picks a free one); workers connect to ``host:port``.
    poll_s: seconds between checks of the study.
    linger_s: seconds the server stays up after the study is done, so workers finishing their
      last trial can still report.
    ready: called with the endpoint once the server accepts workers.

  The study is done when ``num_trials`` trials are evaluated and no trial is running (a worker
  that is killed leaves its trial running until it is restarted with the same client id).
  """
  start = time.time()
  workdir = pathlib.Path(workdir)
  with _study_server(workdir, "", host=host, port=port or None) as endpoint:
    study = create_or_load_study(space, settings, evaluation)
    log(f"serving study {study.resource_name} at {endpoint} ({settings.designer}, "
        f"{settings.num_trials} trials); start workers with --config.search.endpoint={endpoint}")
    if ready is not None:
      ready(endpoint)
    last = None
    while True:
      trials = list(study.trials().get())
      evaluated, completed = _counts(trials)
      active = sum(t.status == vz.TrialStatus.ACTIVE for t in trials)
      if (evaluated, completed, active) != last:
        log(f"study: {evaluated}/{settings.num_trials} evaluated ({completed} completed, "
            f"{active} running)")
        last = (evaluated, completed, active)
      # Workers may overshoot by one trial each; wait for their running trials to complete.
      if evaluated >= settings.num_trials and not active:
        break
      time.sleep(poll_s)
    result = _result(study, space, settings, workdir, start, log)
    time.sleep(linger_s)  # let workers read the final state before the server goes
    return result


def search_report(space: Space, settings: SearchSettings, workdir: str | os.PathLike, *,
                  log: Callable[[str], None] = print) -> SearchResult:
  """Rewrites the outputs of the search in ``workdir`` from its study (no training)."""
  start = time.time()
  workdir = pathlib.Path(workdir)
  if not (workdir / STUDY_DB).exists() and not settings.endpoint:
    raise FileNotFoundError(f"{workdir} holds no search ({STUDY_DB} missing); run the search "
                            "first or pass the workdir it used.")
  with _study_server(workdir, settings.endpoint):
    study = clients.Study.from_owner_and_id(OWNER, settings.study_id)
    # Paired noise from the per-prediction scores the search cached (nothing is evaluated).
    return _result(study, space, settings, workdir, start, log,
                   paired=paired_errors(None, workdir))
