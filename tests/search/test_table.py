"""Measured tables and designer replays (autodistill.search.table) on synthetic tables."""

import json
import math
import types

import pytest

from autodistill.search import pareto
from autodistill.search import table as table_lib
from autodistill.search.records import COMPLETED, INFEASIBLE, TrialRecord
from autodistill.space import get_space

SPACE = get_space("cpu_demo")


def _metrics(point):
  """A synthetic student: wider and with more FFNs is better and slower."""
  size = point["hidden_size"] * (1 + point["num_ffn"]) + point["intermediate_size"]
  return {"mlm_loss": 9.0 - size / 400, "latency_ms": 0.5 + size / 2000 + 0.2 * point["num_heads"],
          "latency_std_ms": 0.001}


class FakeEvaluate:
  """``evaluate_student``'s signature; counts calls and can stop the build like a kill."""

  def __init__(self, kill_after=None):
    self.calls, self.kill_after = [], kill_after

  def __call__(self, context, point, trial_dir, record, log=print):
    if self.kill_after is not None and len(self.calls) >= self.kill_after:
      raise KeyboardInterrupt
    self.calls.append(context.student(point).name)
    record.name, record.factors, record.status = context.student(point).name, dict(point), COMPLETED
    for key, value in _metrics(point).items():
      setattr(record, key, value)
    return record


def _context():
  return types.SimpleNamespace(space=SPACE, student=SPACE.config)


def _table():
  table = {}
  for i, point in enumerate(SPACE.valid_points(), 1):
    record = TrialRecord(trial_id=i, name=SPACE.config(point).name, factors=point,
                         status=COMPLETED, is_baseline=point == SPACE.baseline, **_metrics(point))
    table[record.name] = record
  return table


def test_a_killed_build_resumes_without_re_evaluating_finished_students(tmp_path):
  path = tmp_path / "table.jsonl"
  first = FakeEvaluate(kill_after=10)
  with pytest.raises(KeyboardInterrupt):
    table_lib.build_table(_context(), path, tmp_path / "trials", evaluate=first, log=lambda _: 0)
  assert len(table_lib.read_table(path)) == 10
  assert first.calls[0] == SPACE.baseline_config().name  # the baseline first
  with path.open("a") as f:  # a builder killed while writing a row
    f.write('{"trial_id": 99, "name": "Model_64_')
  second = FakeEvaluate()
  done = table_lib.build_table(_context(), path, tmp_path / "trials", evaluate=second,
                               log=lambda _: 0)
  assert set(second.calls).isdisjoint(first.calls)
  assert done == second.calls and len(first.calls) + len(second.calls) == SPACE.num_valid
  table = table_lib.read_table(path)
  assert sorted(table) == sorted(SPACE.config(p).name for p in SPACE.valid_points())
  third = FakeEvaluate()
  assert table_lib.build_table(_context(), path, tmp_path / "trials", evaluate=third,
                               log=lambda _: 0) == []
  assert third.calls == []


def test_build_limit_and_reverse_split_the_work(tmp_path):
  path = tmp_path / "table.jsonl"
  a, b = FakeEvaluate(), FakeEvaluate()
  table_lib.build_table(_context(), path, tmp_path / "t", limit=5, evaluate=a, log=lambda _: 0)
  table_lib.build_table(_context(), path, tmp_path / "t", limit=5, reverse=True, evaluate=b,
                        log=lambda _: 0)
  assert len(a.calls) == len(b.calls) == 5 and set(a.calls).isdisjoint(b.calls)
  assert len(table_lib.read_table(path)) == 10


@pytest.mark.parametrize("designer", ["random", "quasi_random", "eagle"])
def test_replay_picks_the_same_students_for_the_same_seed(designer):
  table = _table()
  runs = [table_lib.replay(designer, seed, SPACE, table, ["mlm_loss", "latency_ms"],
                           max_iterations=12, hv_after=(6, 12), stop_after=0)
          for seed in (3, 3, 4)]
  assert runs[0]["names"] == runs[1]["names"] and len(runs[0]["names"]) == 12
  assert runs[0]["hypervolume"] == runs[1]["hypervolume"]
  if designer != "quasi_random":  # quasi-random's Halton sequence ignores the seed
    assert runs[0]["names"] != runs[2]["names"]


def test_replay_counts_distinct_students_that_dominate_beyond_latency_noise():
  table = _table()
  objectives = ["mlm_loss", "latency_ms"]
  wanted = set(table_lib.dominating_baseline(table, objectives))
  baseline = table[SPACE.baseline_config().name]
  assert wanted == {n for n, r in table.items()
                    if pareto.dominates([r.mlm_loss, r.latency_ms],
                                        [baseline.mlm_loss, baseline.latency_ms], objectives)}
  run = table_lib.replay("random", 0, SPACE, table, objectives, max_iterations=48,
                         hv_after=(48,), stop_after=0)
  hits = [i for i, name in enumerate(run["names"], 1) if name in wanted]
  distinct = [i for i in hits if run["names"].index(run["names"][i - 1]) == i - 1]
  assert run["first_dominating"] == distinct[0]
  assert run["third_dominating"] == distinct[2]
  assert len(wanted) == 4 and run["dominating_found"] == len({run["names"][i - 1] for i in hits})
  # A latency difference within the noise is a tie. When the noise swamps every difference,
  # dominating the baseline comes down to a lower loss alone, slower students included.
  for record in table.values():
    record.latency_std_ms = 10.0
  assert table_lib.dominating_baseline(table, objectives) == sorted(
      n for n, r in table.items() if r.mlm_loss < baseline.mlm_loss)
  assert any(table[n].latency_ms > baseline.latency_ms
             for n in table_lib.dominating_baseline(table, objectives))


def test_single_objective_replay_is_scored_on_the_report_front():
  table = _table()
  report = ["mlm_loss", "latency_ms"]
  reference = table_lib.hypervolume_reference(table, report)
  run = table_lib.replay("random", 1, SPACE, table, ["latency_ms"], max_iterations=10,
                         hv_after=(10,), report_objectives=report, stop_after=0)
  points = [[table[n].mlm_loss, table[n].latency_ms] for n in run["names"]]
  assert run["objectives"] == ["latency_ms"]
  assert math.isclose(run["hypervolume"][10], pareto.hypervolume(points, reference, report))


def test_replay_refuses_an_unfinished_table_and_infeasible_rows_stay_infeasible():
  table = _table()
  name = next(iter(table))
  partial = dict(table)
  del partial[name]
  with pytest.raises(ValueError, match=r"lacks 1 of 48 students.*finish building"):
    table_lib.replay("random", 0, SPACE, partial, ["mlm_loss"], max_iterations=3)
  table[name] = TrialRecord(trial_id=1, name=name, status=INFEASIBLE, reason="too slow")
  run = table_lib.replay("random", 0, SPACE, table, ["mlm_loss", "latency_ms"],
                         max_iterations=48, hv_after=(48,), stop_after=0)
  assert name in run["names"]  # suggested, completed as infeasible, not scored
  assert json.dumps(run)


def test_a_larger_spaces_table_serves_its_sub_space():
  wide = get_space("cpu_wide")
  table = {}
  for i, point in enumerate(wide.valid_points(), 1):
    name = wide.config(point).name
    table[name] = TrialRecord(trial_id=i, name=name, factors=point, status=COMPLETED,
                              is_baseline=point == wide.baseline, **_metrics(point))
  demo = table_lib.space_table(table, SPACE)
  assert len(table) == 216 and sorted(demo) == sorted(_table())
  run = table_lib.replay("random", 0, SPACE, table, ["mlm_loss", "latency_ms"],
                         max_iterations=8, hv_after=(8,), stop_after=0)
  assert set(run["names"]) <= set(demo)
  # The hypervolume's reference and the students that beat the baseline are the sub-space's.
  assert run == table_lib.replay("random", 0, SPACE, demo, ["mlm_loss", "latency_ms"],
                                 max_iterations=8, hv_after=(8,), stop_after=0) | {
                                     "suggest_s": run["suggest_s"]}


def test_raw_front_and_dominance_by_the_medians_are_the_plain_pareto_definitions():
  table = _table()
  objectives = ["mlm_loss", "latency_ms"]
  for record in table.values():  # noise so large that the noise-aware front collapses
    record.latency_std_ms = 10.0
  vectors = {n: [r.mlm_loss, r.latency_ms] for n, r in table.items()}
  front = [n for n, v in vectors.items()
           if not any(pareto.dominates(w, v, objectives) for w in vectors.values())]
  assert sorted(table_lib.raw_front(table, objectives)) == sorted(front) and len(front) > 3
  assert len(pareto.pareto_front(list(table.values()), objectives)) < len(front)
  base = vectors[SPACE.baseline_config().name]
  raw = table_lib.dominating_baseline(table, objectives, noise=False)
  assert raw == sorted(n for n, v in vectors.items() if pareto.dominates(v, base, objectives))
  run = table_lib.replay("random", 2, SPACE, table, objectives, max_iterations=48,
                         hv_after=(48,), stop_after=0)
  first_raw = next(i for i, n in enumerate(run["names"], 1) if n in raw)
  assert run["first_dominating_raw"] == first_raw


def test_latency_is_retaken_from_one_sweep_and_the_table_rewritten_whole(tmp_path):
  table = _table()
  swept = {name: 2.0 + i / 100 for i, name in enumerate(table)}

  def measure(record):
    return types.SimpleNamespace(ok=True, error="", median_ms=swept[record.name],
                                 p10_ms=swept[record.name] - 0.1, p90_ms=swept[record.name] + 0.1,
                                 std_ms=0.05, flops=1e6)

  fresh = table_lib.with_latency(table, measure)
  path = table_lib.write_table(fresh, tmp_path / "table.jsonl")
  back = table_lib.read_table(path)
  assert list(back) == list(table)
  for name, record in back.items():
    assert record.latency_ms == swept[name] and record.latency_p90_ms == swept[name] + 0.1
    assert record.latency_std_ms == 0.05 and record.flops == 1e6
    assert record.mlm_loss == table[name].mlm_loss and record.trial_id == table[name].trial_id
  assert table[next(iter(table))].latency_ms != swept[next(iter(table))]  # the input is kept
  failed = lambda record: types.SimpleNamespace(ok=False, error="out of memory")  # noqa: E731
  with pytest.raises(ValueError, match="latency of Model_.* failed: out of memory"):
    table_lib.with_latency(table, failed)


def test_the_uniform_yardstick_matches_counting_every_order():
  import itertools
  students, hits = 6, 2
  positions = {1: [], 2: []}
  for order in itertools.permutations(range(students)):  # students 0 and 1 are the hits
    found = [i + 1 for i, s in enumerate(order) if s < hits]
    positions[1].append(found[0])
    positions[2].append(found[1])
  for j in (1, 2):
    mean = sum(positions[j]) / len(positions[j])
    assert table_lib.uniform_hit_iteration(students, hits, j) == pytest.approx(mean)
  assert table_lib.uniform_hit_iteration(students, hits, 3) is None


def test_a_baseline_at_a_share_is_beaten_by_at_most_that_share_and_by_as_many_as_allowed():
  table = _table()
  objectives = ["mlm_loss", "latency_ms"]
  counts = {name: len(table_lib.dominating_baseline(table_lib.with_baseline(table, name),
                                                    objectives)) for name in table}
  for share in (0.05, 0.2):
    name = table_lib.baseline_at_share(table, objectives, share)
    rebased = table_lib.with_baseline(table, name)
    assert [r.name for r in rebased.values() if r.is_baseline] == [name]
    assert counts[name] <= share * len(table)
    assert counts[name] == max(n for n in counts.values() if n <= share * len(table))
  assert table[SPACE.baseline_config().name].is_baseline  # the input is kept
  with pytest.raises(ValueError, match="no student Model_1 in the table"):
    table_lib.with_baseline(table, "Model_1")


def test_a_share_outside_0_1_is_refused_with_the_range():
  with pytest.raises(ValueError, match="share must be between 0 and 1"):
    table_lib.baseline_at_share(_table(), ["mlm_loss", "latency_ms"], 5)
