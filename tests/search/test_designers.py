"""Seeded, stateless designers (autodistill.search.designers) and the Vizier policy that runs
them (autodistill.search.policy), through a real Vizier server and offline."""

import contextlib
import json

import numpy as np
import pytest
from vizier import algorithms as vza
from vizier import pyvizier as vz
from vizier.algorithms import evolution
from vizier.service import clients
from vizier.service import pyvizier as svz
from vizier.service import servers

from autodistill.search import designers
from autodistill.search import policy
from autodistill.search.designers import DESIGNERS, _vizier, make_designer, replay, seeds
from autodistill.search.policy import SearchPolicyFactory
from autodistill.search.problem import METADATA_NS, parameters_of, point_of, problem_statement
from autodistill.space import Space

# A cpu_demo-like space of our own (72 points, 5 factors), so that presets can change freely.
SPACE = Space(
    name="designer_test",
    factors={"hidden_size": (64, 128), "bottleneck_size": (32, 64), "num_heads": (2, 4),
             "intermediate_size": (64, 128, 256), "num_ffn": (1, 2, 4)},
    fixed={"num_blocks": 2, "embedding_size": 64},
    baseline={"hidden_size": 128, "bottleneck_size": 32, "num_heads": 4,
              "intermediate_size": 128, "num_ffn": 4})


def stub_metrics_for_designer_test(point):
  """Stand-in for flash distillation and latency measurement; exists only in this test.

  Accuracy and latency both grow with the widths and the FFN count (a real trade-off).
  """
  accuracy = (0.1 + 0.001 * point["hidden_size"] + 0.001 * point["bottleneck_size"]
              + 0.0005 * point["intermediate_size"] + 0.02 * point["num_ffn"]
              + 0.01 * point["num_heads"])
  latency = (0.5 + 0.01 * point["hidden_size"] + 0.01 * point["bottleneck_size"]
             + 0.002 * point["intermediate_size"] * point["num_ffn"] + 0.05 * point["num_heads"])
  return {"mlm_accuracy": accuracy, "latency_ms": latency}


def _problem(designer="random", seed=0):
  return problem_statement(SPACE, metadata={"designer": designer, "seed": seed})


@contextlib.contextmanager
def _server(path):
  """A Vizier server on SQLite at ``path`` with our policy factory; clients point at it."""
  server = servers.DefaultVizierServer(database_url=f"sqlite:///{path}",
                                       policy_factory=SearchPolicyFactory())
  previous = clients.environment_variables.server_endpoint
  clients.environment_variables.server_endpoint = server.endpoint
  try:
    yield server
  finally:
    clients.environment_variables.server_endpoint = previous
    server._server.stop(None)  # pylint: disable=protected-access


def _study(designer, seed, study_id):
  config = svz.StudyConfig.from_problem(_problem(designer, seed))
  config.algorithm = "DEFAULT"
  return clients.Study.from_study_config(config, owner="designer-test", study_id=study_id)


def _run(path, designer, seed, rounds, infeasible_round=None, restart_after=None):
  """Runs ``rounds`` suggest/complete rounds; returns the suggested points and the trials.

  With ``restart_after``, the server is stopped after that many rounds and a new one continues
  the study from the same SQLite file (a killed and resumed search).
  """
  points = []
  segments = [rounds] if restart_after is None else [restart_after, rounds - restart_after]
  for segment in segments:
    with _server(path):
      study = _study(designer, seed, f"{designer}-{seed}")  # loads the study if it exists
      for _ in range(segment):
        (trial,) = study.suggest(count=1, client_id="worker-0")
        point = point_of(SPACE, trial.parameters)
        SPACE.check_point(point)
        if len(points) == infeasible_round:
          trial.complete(infeasible_reason="pruned before distillation (test)")
        else:
          trial.complete(vz.Measurement(metrics=stub_metrics_for_designer_test(point)))
        points.append(point)
      trials = [t.materialize() for t in study.trials()]
  assert len(trials) == rounds
  assert all(t.status == vz.TrialStatus.COMPLETED for t in trials)
  if infeasible_round is not None:
    assert trials[infeasible_round].infeasible
  return points, trials


@pytest.mark.parametrize("designer", [d for d in DESIGNERS if d != "gp_bandit"])
def test_designer_through_server(tmp_path, designer):
  points, trials = _run(tmp_path / "study.sqlite", designer, seed=0, rounds=6,
                        infeasible_round=1)
  assert len({tuple(p.values()) for p in points}) > 1  # not the same point every call
  if designer == "eagle":  # the parent fly ids travel through the service's trial metadata
    assert all(t.metadata.ns("eagle").get("parent_fly_id") for t in trials)


def test_gp_bandit_through_server(tmp_path):
  # The first suggestion is the centre of the space; each later one fits the two-metric GP
  # (and compiles for the new trial count: 5-10 s each on 2 cores). The second trial is
  # infeasible, so the third suggestion's GP sees a feasible and an infeasible trial.
  points, _ = _run(tmp_path / "study.sqlite", "gp_bandit", seed=0, rounds=3, infeasible_round=1)
  # DiscreteGPBandit never repeats a student while the space has unevaluated ones. (Whether the
  # GP uses the metrics is tested in test_designers_gp.py.)
  assert len({tuple(p.values()) for p in points}) == 3


@pytest.mark.parametrize("designer", ["random", "quasi_random", "eagle", "kdnas"])
def test_same_seed_same_suggestions_in_fresh_server(tmp_path, designer):
  first, _ = _run(tmp_path / "a.sqlite", designer, seed=7, rounds=3)
  again, _ = _run(tmp_path / "b.sqlite", designer, seed=7, rounds=3)
  other, _ = _run(tmp_path / "c.sqlite", designer, seed=8, rounds=3)
  assert first == again
  assert first != other


@pytest.mark.parametrize("designer", ["quasi_random", "eagle", "kdnas"])
def test_killed_and_resumed_search_continues_as_uninterrupted(tmp_path, designer):
  straight, _ = _run(tmp_path / "a.sqlite", designer, seed=3, rounds=5, infeasible_round=1)
  resumed, _ = _run(tmp_path / "b.sqlite", designer, seed=3, rounds=5, infeasible_round=1,
                    restart_after=2)
  assert resumed == straight


def _history(points, start_id=1):
  trials = []
  for i, point in enumerate(points):
    trial = vz.Trial(parameters=parameters_of(SPACE, point), id=start_id + i)
    trial.complete(vz.Measurement(metrics=stub_metrics_for_designer_test(point)))
    trials.append(trial)
  return trials


def test_quasi_random_stateless_matches_vizier_sequence():
  problem = _problem()
  reference = _vizier.QuasiRandomDesigner(problem.search_space, seed=seeds.sequence_seed(3))
  expected = [s.parameters.as_dict() for s in reference.suggest(5)]
  history, got = [], []
  for k in range(5):
    (suggestion,) = designers.suggest("quasi_random", problem, history, [], seed=3)
    got.append(suggestion.parameters.as_dict())
    history += _history([point_of(SPACE, suggestion.parameters)], start_id=k + 1)
  assert got == expected


def _replay(designer, seed, rounds):
  """An offline search through designers.suggest, as the policy runs it."""
  problem, history, suggestions = _problem(designer, seed), [], []
  for k in range(rounds):
    (suggestion,) = designers.suggest(designer, problem, history, [], seed=seed)
    suggestions.append(suggestion)
    trial = suggestion.to_trial(k + 1)
    point = point_of(SPACE, trial.parameters)
    trial.complete(vz.Measurement(metrics=stub_metrics_for_designer_test(point)))
    history.append(trial)
  return suggestions, history


def test_eagle_replay_moves_flies_in_turn():
  # The pool holds 16 flies for 5 parameters; afterwards each suggestion moves a pool fly.
  suggestions, history = _replay("eagle", seed=0, rounds=24)
  # The pool's initial fill follows the search's Halton sequence, as quasi_random does.
  (first,) = designers.suggest("quasi_random", _problem(), [], [], seed=0)
  assert suggestions[0].parameters == first.parameters
  ids = [int(s.metadata.ns("eagle")["parent_fly_id"]) for s in suggestions]
  assert len(set(ids[:16])) == 16  # fresh flies never reuse an id of the study
  moved = ids[16:]
  assert len(set(moved)) >= 6, moved  # round robin, not the same fly every call
  again, _ = _replay("eagle", seed=0, rounds=24)
  assert [s.parameters for s in again] == [s.parameters for s in suggestions]
  # Active trials count: a parallel worker asking now gets another fly id.
  problem = _problem("eagle")
  (mine,) = designers.suggest("eagle", problem, history, [], seed=0)
  active = mine.to_trial(len(history) + 1)
  (theirs,) = designers.suggest("eagle", problem, history, [active], seed=0)
  assert theirs.metadata.ns("eagle")["parent_fly_id"] != mine.metadata.ns("eagle")[
      "parent_fly_id"] or theirs.parameters != mine.parameters


def test_eagle_scalarization_is_normalised_chebyshev():
  eagle = make_designer("eagle", _problem("eagle"), seed=0, num_trials=3)
  w = eagle.weights
  assert w.shape == (2,) and abs(w.sum() - 1) < 1e-9
  points = [dict(SPACE.baseline, num_ffn=f) for f in (1, 2, 4)]
  scored = eagle.scalarize(_history(points))
  values = [t.final_measurement.metrics["scalarized"].value for t in scored]
  # Accuracy rises and latency rises with num_ffn: the extremes each get one objective's best.
  # normalised (maximise): num_ffn=1 -> (0, 1), num_ffn=4 -> (1, 0).
  assert values[0] == pytest.approx(0.05 * w[1])
  assert values[2] == pytest.approx(0.05 * w[0])


def test_nsga2_evolves_after_its_first_population():
  suggestions, _ = _replay("nsga2", seed=0, rounds=designers.NSGA2_POPULATION + 4)
  for s in suggestions:
    SPACE.check_point(point_of(SPACE, s.parameters))
  # The first population is random (generation 0); later suggestions are children of survivors.
  generations = [evolution.NumpyOffspring.load(s.metadata.ns("nsga2")).generations[0]
                 for s in suggestions]
  assert all(g == 0 for g in generations[:designers.NSGA2_POPULATION])
  assert all(g >= 1 for g in generations[designers.NSGA2_POPULATION:])


def test_infeasible_history_is_accepted_by_every_designer():
  problem = _problem()
  history = _history([dict(SPACE.baseline, num_ffn=f) for f in (1, 2, 4)])
  bad = vz.Trial(parameters=parameters_of(SPACE, dict(SPACE.baseline, hidden_size=64)), id=4)
  bad.complete(vz.Measurement(), infeasibility_reason="too slow")
  for name in ("random", "quasi_random", "eagle", "nsga2"):
    (suggestion,) = designers.suggest(name, problem, history + [bad], [], seed=0)
    SPACE.check_point(point_of(SPACE, suggestion.parameters))


def test_call_seed_depends_on_seed_and_trial_count():
  assert designers.call_seed(0, 5) == designers.call_seed(0, 5)
  assert len({designers.call_seed(0, n) for n in range(50)}) == 50
  assert designers.call_seed(0, 5) != designers.call_seed(1, 5)
  assert 0 <= designers.call_seed(-3, 10**12) < 2**31


def test_unknown_designer_is_a_clear_error():
  with pytest.raises(ValueError, match="nelder_mead") as error:
    SearchPolicyFactory()(_problem("nelder_mead"), "DEFAULT", None, "study")
  for name in DESIGNERS:
    assert name in str(error.value)
  with pytest.raises(ValueError, match="gp_bandit"):
    make_designer("bayes", _problem(), seed=0)


def test_designer_from_algorithm_when_metadata_has_none():
  problem = problem_statement(SPACE)
  assert policy.designer_and_seed(problem, "DEFAULT") == ("gp_bandit", 0)
  assert policy.designer_and_seed(problem, "NSGA2") == ("nsga2", 0)
  assert policy.designer_and_seed(problem, "quasi_random") == ("quasi_random", 0)
  with pytest.raises(ValueError, match="eagle"):
    policy.designer_and_seed(problem, "CMA_ES")
  problem.metadata.ns(METADATA_NS)["seed"] = "x"
  with pytest.raises(ValueError, match="not an integer"):
    policy.designer_and_seed(problem, "DEFAULT")


def _twelve_point_history(count):
  space = Space(name="twelve", factors={"hidden_size": (64, 128, 256), "num_ffn": (1, 2, 3, 4)},
                fixed={"bottleneck_size": 32, "num_heads": 2, "intermediate_size": 64,
                       "num_blocks": 2, "embedding_size": 32})
  problem = problem_statement(space, ["mlm_accuracy", "latency_ms"])
  points = list(space.points())
  completed = []
  for i in (0, 5, 7, 11, 3, 8)[:count]:
    trial = vz.Trial(id=len(completed) + 1, parameters=parameters_of(space, points[i]))
    h, f = points[i]["hidden_size"], points[i]["num_ffn"]
    trial.complete(vz.Measurement(metrics={"mlm_accuracy": 0.2 + 0.001 * h + 0.03 * f,
                                           "latency_ms": 0.5 + 0.01 * h + 0.3 * f}))
    completed.append(trial)
  return space, problem, points, completed


def test_gp_bandit_never_repeats_while_a_student_is_unevaluated():
  """On a 4-point space with 3 points evaluated, the GP's next suggestion is the 4th point."""
  space = Space(name="four", factors={"hidden_size": (64, 128), "num_ffn": (2, 4)},
                fixed={"bottleneck_size": 32, "num_heads": 2, "intermediate_size": 64,
                       "num_blocks": 2, "embedding_size": 32})
  problem = problem_statement(space, ["mlm_loss", "latency_ms"])
  points = list(space.points())
  history = []
  for i, point in enumerate(points[:3]):
    trial = vz.Trial(id=i + 1, parameters=parameters_of(space, point))
    trial.complete(vz.Measurement(metrics={"mlm_loss": 8.0 - 0.1 * i, "latency_ms": 1.0 + i}))
    history.append(trial)
  for seed in (0, 1):
    suggestion = designers.suggest("gp_bandit", problem, history, [], seed=seed)[0]
    assert point_of(space, suggestion.parameters.as_dict()) == points[3]


def test_gp_bandit_suggests_the_unevaluated_students_with_the_highest_vizier_acquisition(
    monkeypatch):
  """The grid acquisition: the candidates are exactly the students neither completed nor
  running, each scored as Vizier's scoring function scores it alone (the fixed-shape batches and
  their filler rows change no value), and the suggestions are the best of them in order."""
  from autodistill.search.designers import gp_bandit
  space, problem, points, completed = _twelve_point_history(4)  # students 0, 5, 7 and 11
  active = [vz.Trial(id=5, parameters=parameters_of(space, points[2]))]
  calls = []
  real = gp_bandit.acquisition_values

  def recording(scoring_fn, converter, candidates, seed):
    values = real(scoring_fn, converter, candidates, seed)
    calls.append((scoring_fn, converter, list(candidates), seed, values))
    return values

  monkeypatch.setattr(gp_bandit, "acquisition_values", recording)
  designer = make_designer("gp_bandit", problem, seed=0, num_trials=5)
  designer.update(vza.CompletedTrials(completed), vza.ActiveTrials(active))
  suggestions = designer.suggest(3)

  (scoring_fn, converter, candidates, seed, values), = calls
  assert sorted(points.index(point_of(space, c.parameters.as_dict())) for c in candidates) == [
      i for i in range(12) if i not in (0, 2, 5, 7, 11)]
  alone = np.array([real(scoring_fn, converter, [c], seed)[0] for c in candidates])
  np.testing.assert_allclose(values, alone, rtol=1e-5, atol=1e-6)
  assert len(set(np.round(alone, 6))) > 1  # the GP tells the students apart
  best = [candidates[i] for i in np.argsort(-alone, kind="stable")[:3]]
  assert [s.parameters.as_dict() for s in suggestions] == [b.parameters.as_dict() for b in best]
  assert all(s.metadata.ns(METADATA_NS)["acquisition"] == "grid" for s in suggestions)


def test_prefer_novel_keeps_order_and_tops_up_with_repeats():
  space = Space(name="two", factors={"hidden_size": (64, 128, 256)},
                fixed={"bottleneck_size": 32, "num_heads": 2, "intermediate_size": 64,
                       "num_blocks": 2, "embedding_size": 32})
  a, b, c = (vz.TrialSuggestion(parameters_of(space, p)) for p in space.points())
  history = [a.to_trial(1)]
  prefer_novel = replay._prefer_novel  # pylint: disable=protected-access
  assert prefer_novel([a, b, a, c], history, 2) == [b, c]
  assert prefer_novel([a, a], history, 1) == [a]


def test_padded_gp_predicts_and_scores_as_the_unpadded_gp(monkeypatch):
  """The trial axis padded to a power of two (5 trials -> 8 rows) leaves every objective's GP
  and the acquisition unchanged: the padded rows are masked out of each single-metric GP's
  likelihood and out of the acquisition's floor."""
  from vizier.pyvizier.converters import padding
  from autodistill.search.designers import gp_bandit
  space, problem, points, completed = _twelve_point_history(5)
  schedules = {"none": padding.PaddingSchedule(), "powers_of_2": gp_bandit.GP_PADDING}
  queries = [vz.TrialSuggestion(parameters=t.parameters) for t in completed[:2]] + [
      vz.TrialSuggestion(parameters=parameters_of(space, points[i])) for i in (1, 9)]
  real, scores = gp_bandit.acquisition_values, []
  monkeypatch.setattr(gp_bandit, "acquisition_values",
                      lambda *args: scores.append(real(*args)) or scores[-1])
  predictions, suggestions = {}, {}
  for name, schedule in schedules.items():
    designer = make_designer("gp_bandit", problem, seed=0, padding_schedule=schedule)
    designer.update(vza.CompletedTrials(completed), vza.ActiveTrials([]))
    predictions[name] = designer.predict(queries)
    suggestions[name] = designer.suggest(1)[0].parameters.as_dict()
  assert np.all(np.isfinite(scores[0])) and len(set(np.round(scores[0], 6))) > 1
  np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4, atol=1e-6)
  assert suggestions["powers_of_2"] == suggestions["none"]
  np.testing.assert_allclose(predictions["powers_of_2"].mean, predictions["none"].mean,
                             rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(predictions["powers_of_2"].stddev, predictions["none"].stddev,
                             rtol=1e-2, atol=1e-4)
  # The GP learned the objectives: it predicts the evaluated students' metrics closely (Vizier
  # reports a minimised metric negated: it maximises everything).
  observed = [[t.final_measurement.metrics["mlm_accuracy"].value,
               -t.final_measurement.metrics["latency_ms"].value] for t in completed[:2]]
  np.testing.assert_allclose(predictions["none"].mean[:2], observed, rtol=0.05)


def test_gp_suggestions_in_one_padded_size_compile_once(monkeypatch):
  """A stateless suggestion at 5 and then at 6 completed trials (both padded to 8 rows) compiles
  none of the GP's programs the second time: the ARD fit (setup, loss), the posterior and the
  scoring are found again. (Single eager operations on the unpadded inputs still compile for
  their new shapes; they take milliseconds.)"""
  import jax
  _, problem, _, completed = _twelve_point_history(6)
  gp_programs = {"jit(setup)", "jit(loss_with_aux)", "jit(precompute_predictive)",
                 "jit(_score)"}
  compiled = []

  def listener(event, duration, fun_name=None, **_):
    del duration
    if event == "/jax/core/compile/backend_compile_duration":
      compiled.append(fun_name)

  from autodistill.search.designers import gp_bandit
  jax.clear_caches()  # the first call compiles every program, whatever ran before
  monkeypatch.setattr(gp_bandit, "_suggestions_since_clear", 0)  # no clearing between the two
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    programs = []
    for count in (5, 6):
      compiled.clear()
      designers.suggest("gp_bandit", problem, completed[:count], [], seed=0)
      programs.append(set(compiled) & gp_programs)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert programs == [gp_programs, set()], programs


# ---------------------------------------------------------------------------------------------
# kdnas (KD-NAS's controller)

# 256 students with one best: accuracy falls by 0.1 per step away from TARGET in any factor.
_KD_SPACE = Space(
    name="kdnas_test",
    factors={"hidden_size": (64, 128, 192, 256), "bottleneck_size": (16, 32, 48, 64),
             "intermediate_size": (64, 128, 192, 256), "num_ffn": (1, 2, 3, 4)},
    fixed={"num_blocks": 2})
_KD_TARGET = {"hidden_size": 192, "bottleneck_size": 16, "intermediate_size": 256, "num_ffn": 3}


def _kd_accuracy(point):
  steps = sum(abs(_KD_SPACE.factors[k].index(point[k]) - _KD_SPACE.factors[k].index(v))
              for k, v in _KD_TARGET.items())
  return 1.0 - 0.1 * steps


def _rounds_to_optimum(designer, seed, budget):
  problem = problem_statement(_KD_SPACE, objectives=("mlm_accuracy",),
                              metadata={"designer": designer, "seed": seed})
  history = []
  for k in range(budget):
    (suggestion,) = designers.suggest(designer, problem, history, [], seed=seed)
    trial = suggestion.to_trial(k + 1)
    point = point_of(_KD_SPACE, trial.parameters)
    trial.complete(vz.Measurement(metrics={"mlm_accuracy": _kd_accuracy(point)}))
    history.append(trial)
    if point == _KD_TARGET:
      return k + 1
  return None


def test_kdnas_controller_reaches_a_known_optimum_that_random_misses():
  """On 256 students with one optimum, the controller (REINFORCE policy + reward predictor)
  with seed 0 finds it within 20 trials; random search with the same seed does not."""
  assert _rounds_to_optimum("kdnas", 0, 20) is not None
  assert _rounds_to_optimum("random", 0, 20) is None


def test_kdnas_reward_is_monotone_in_quality_and_latency():
  from autodistill.search.designers.kdnas import reward
  qualities, latencies = np.linspace(0.1, 1.0, 7), np.linspace(0.5, 8.0, 9)
  for hard in (False, True):
    grid = np.array([[reward(q, t, 2.0, hard=hard) for t in latencies] for q in qualities])
    assert np.all(np.diff(grid, axis=0) > 0)  # better quality, more reward
    assert np.all(np.diff(grid, axis=1) <= 0)  # slower, no more reward
  assert reward(0.5, 1.0, 2.0, hard=True) == 0.5  # within a hard budget: the quality alone
  assert reward(0.5, 4.0, 2.0, hard=True) == pytest.approx(0.25)  # twice over: half
  assert reward(0.5, 4.0, 2.0) == pytest.approx(0.5 * 2 ** -0.07)  # MnasNet's soft w
  assert reward(0.5, None, 2.0) == reward(0.5, 4.0, None) == 0.5


def test_kdnas_rewards_come_from_loss_latency_and_the_budget_in_the_study():
  """exp(-mlm_loss) x (latency / T)^w with T from the study's metadata, else the baseline's
  latency; infeasible students get 0."""
  from autodistill.search.designers.kdnas import KdnasController
  problem = problem_statement(SPACE, objectives=("mlm_loss", "latency_ms"),
                              metadata={"designer": "kdnas", "seed": 0,
                                        "kdnas": json.dumps({"budget_ms": 2.0, "exponent": -0.5})})
  trial = vz.Trial(parameters=parameters_of(SPACE, SPACE.baseline), id=1)
  trial.complete(vz.Measurement(metrics={"mlm_loss": 3.0, "latency_ms": 8.0}))
  controller = KdnasController(problem, seed=0, num_trials=1)
  assert controller.trial_reward(trial, 2.0) == pytest.approx(np.exp(-3.0) * 4.0 ** -0.5)
  assert controller._budget([trial]) == 2.0  # pylint: disable=protected-access
  no_budget = KdnasController(problem_statement(SPACE, objectives=("mlm_loss", "latency_ms")),
                              seed=0, num_trials=1)
  trial.metadata.ns(METADATA_NS)["baseline"] = "true"
  assert no_budget._budget([trial]) == 8.0  # pylint: disable=protected-access
  bad = vz.Trial(parameters=parameters_of(SPACE, SPACE.baseline), id=2)
  bad.complete(vz.Measurement(), infeasibility_reason="over the latency limit")
  assert controller.trial_reward(bad, 2.0) == 0.0
