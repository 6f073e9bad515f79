"""The search's report files, plot and terminal summary on hand-made trials."""

import csv
import dataclasses
import json

import pytest

from autodistill.search.records import TrialRecord
from autodistill.search.report import (
    FRONT_JSON,
    PLOT_PNG,
    TRIALS_CSV,
    TRIALS_JSON,
    load_trials,
    plot_search,
    summary_table,
    trials_columns,
    write_front,
    write_report,
    write_trials_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACC_LAT = ("mlm_accuracy", "latency_ms")


def _record(trial_id, acc, lat, status="completed", **kwargs):
  factors = {"num_blocks": 2, "hidden_size": 64 * trial_id, "hidden_act": "relu",
             "use_bottleneck": trial_id % 2 == 0}
  return TrialRecord(trial_id=trial_id, name=f"Model_{64 * trial_id}_32_4_128_4",
                     factors=factors, status=status, mlm_accuracy=acc, latency_ms=lat,
                     params=1_000_000 * trial_id, nsp_accuracy=None if acc is None else 0.9,
                     latency_p10_ms=None if lat is None else lat * 0.9, client_id="w0",
                     workdir=f"trials/{trial_id}", distill_s=12.5,
                     seconds={"compile": 7.5, "train": 4.0, "latency": 1.0} if acc else {},
                     **kwargs)


def _records():
  records = [
      _record(1, 0.50, 10.0, is_baseline=True),
      _record(2, 0.55, 8.0),
      _record(3, 0.60, 12.0),
      _record(4, 0.52, 9.0),
      _record(5, 0.40, 5.0),
      _record(6, 0.30, 20.0),
      _record(7, None, 3.0, status="infeasible", reason="latency 3 ms exceeds max"),
      _record(8, 0.70, 2.0, status="infeasible", reason="MLM accuracy below min_accuracy"),
      _record(9, None, None, status="active"),
  ]
  records[6] = dataclasses.replace(records[6], factors={"num_blocks": 3, "extra": 1.5})
  return records[::-1]  # out of order on purpose: the table sorts by trial id


def _parse(cell, expected):
  if cell == "" and not isinstance(expected, str):
    return None
  if isinstance(expected, bool):
    return cell == "True"
  return type(expected)(cell)


def test_trials_table_round_trips(tmp_path):
  records = _records()
  csv_path, json_path = write_trials_table(records, tmp_path / "out")
  assert csv_path == tmp_path / "out" / TRIALS_CSV and json_path == tmp_path / "out" / TRIALS_JSON
  with open(csv_path, newline="") as f:
    reader = csv.DictReader(f)
    rows = list(reader)
    columns = reader.fieldnames
  assert columns == trials_columns(records)
  factor_columns = [c for c in columns if c.startswith("factor.")]
  assert factor_columns == ["factor.num_blocks", "factor.hidden_size", "factor.hidden_act",
                            "factor.use_bottleneck", "factor.extra"]
  assert columns.index("factor.num_blocks") == columns.index("status") - 5  # where factors was
  assert "factors" not in columns
  by_id = {r.trial_id: r for r in records}
  assert [int(row["trial_id"]) for row in rows] == sorted(by_id)
  for row in rows:
    record = by_id[int(row["trial_id"])]
    for field in dataclasses.fields(TrialRecord):
      if field.name in ("factors", "seconds"):
        continue
      expected = getattr(record, field.name)
      assert _parse(row[field.name], expected) == expected, field.name
    for column in factor_columns:
      expected = record.factors.get(column[len("factor."):])
      assert _parse(row[column], expected) == expected
    for part in ("setup", "compile", "train", "evaluate", "checkpoint", "latency"):
      expected = record.seconds.get(part)
      assert _parse(row[f"seconds.{part}"], expected or 0.0) == expected, part
  assert rows[0]["is_baseline"] == "True" and rows[0]["mlm_accuracy"] == "0.5"
  assert rows[6]["factor.hidden_size"] == "" and rows[6]["factor.extra"] == "1.5"
  assert [TrialRecord.from_dict(d) for d in json.loads(json_path.read_text())] == sorted(
      records, key=lambda r: r.trial_id)
  assert load_trials(tmp_path / "out") == load_trials(json_path) == sorted(
      records, key=lambda r: r.trial_id)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [TRIALS_CSV, TRIALS_JSON]


def test_trials_table_of_no_trials(tmp_path):
  csv_path, json_path = write_trials_table([], tmp_path)
  assert csv_path.read_text().splitlines()[0].startswith("trial_id,name,status")
  assert json.loads(json_path.read_text()) == []


def test_write_front(tmp_path):
  path = write_front(_records(), tmp_path, ACC_LAT)
  content = json.loads(path.read_text())
  assert path.name == FRONT_JSON
  assert content["objectives"] == [{"name": "mlm_accuracy", "goal": "maximize"},
                                   {"name": "latency_ms", "goal": "minimize"}]
  assert content["front_trial_ids"] == [5, 2, 3]
  assert [r["trial_id"] for r in content["front"]] == [5, 2, 3]
  assert content["dominating_baseline_trial_ids"] == [2, 4]
  assert content["baseline"]["trial_id"] == 1
  assert content["num_trials"] == 9 and content["num_feasible"] == 6


def test_write_front_without_baseline(tmp_path):
  records = [r for r in _records() if not r.is_baseline]
  content = json.loads(write_front(records, tmp_path, ACC_LAT).read_text())
  assert content["baseline"] is None and content["dominating_baseline"] == []


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG_MAGIC


@pytest.mark.parametrize("case", ["all", "none_feasible", "empty", "one_feasible", "no_baseline",
                                  "three_objectives", "one_objective"])
def test_plot_search(tmp_path, case):
  records, objectives = _records(), ACC_LAT
  if case == "none_feasible":
    records = [r for r in records if not r.feasible]
  elif case == "empty":
    records = []
  elif case == "one_feasible":
    records = [r for r in records if r.trial_id in (2, 7)]
  elif case == "no_baseline":
    records = [r for r in records if not r.is_baseline]
  elif case == "three_objectives":
    objectives = ("mlm_accuracy", "latency_ms", "params")
  elif case == "one_objective":
    objectives = ("mlm_accuracy",)
  path = plot_search(records, tmp_path / "plots" / "search.png", objectives, title=case)
  assert path == tmp_path / "plots" / "search.png"
  assert _is_png(path) and path.stat().st_size > 1000
  assert [p.name for p in path.parent.iterdir()] == ["search.png"]  # no temporary left


def test_summary_table():
  table = summary_table(_records(), ACC_LAT)
  lines = table.splitlines()
  assert lines[0].startswith("9 trials: 6 feasible, 2 infeasible, 1 active; 3 on the Pareto front")
  assert "2 dominate the baseline (trial 1 Model_64_32_4_128_4)" in lines[0]
  assert lines[1].split()[:2] == ["trial", "name"]
  rows = {int(line.split()[0]): line for line in lines[3:12]}
  assert [int(line.split()[0]) for line in lines[3:12]] == [5, 2, 3, 1, 4, 6, 7, 8, 9]
  # The winner (on the front, dominating the baseline, the most accurate of those) against the
  # baseline; these hand-made records carry no noise.
  assert lines[12:] == [
      "winner #2 Model_128_32_4_128_4 against the baseline #1 Model_64_32_4_128_4:",
      "  MLM acc: 55.00% vs 50.00%, +5 points (noise unknown)",
      "  latency ms: 8.000 vs 10.000, -2 (noise unknown)"]
  for trial_id, line in rows.items():
    assert (" * " in line + " ") == (trial_id in (5, 2, 3)), line
    assert line.endswith("beats") == (trial_id in (2, 4)), line
  assert rows[1].endswith("base")
  assert "8.000" in rows[2] and "0.5500" in rows[2] and "2.00" in rows[2]  # latency, acc, M
  assert "infeasible" in rows[7] and "active" in rows[9]
  # Fixed width: every row as long as the header's columns allow.
  assert len({len(line) for line in lines[1:3]}) == 1


def test_summary_table_truncates_and_handles_no_baseline():
  records = [r for r in _records() if not r.is_baseline]
  lines = summary_table(records, ACC_LAT, max_rows=3).splitlines()
  assert "no completed baseline" in lines[0]
  assert len(lines) == 3 + 3 + 1 and lines[-1] == "... 5 more trials"
  assert summary_table([], ACC_LAT).splitlines()[0].startswith("0 trials: 0 feasible")
  assert "GFLOPs" in summary_table(records, ("mlm_accuracy", "flops")).splitlines()[1]


def test_write_report(tmp_path):
  paths = write_report(_records(), tmp_path / "search", ACC_LAT, title="test search")
  assert set(paths) == {"csv", "json", "front", "plot"}
  assert all(isinstance(p, str) for p in paths.values())
  names = sorted(p.name for p in (tmp_path / "search").iterdir())
  assert names == sorted([TRIALS_CSV, TRIALS_JSON, FRONT_JSON, PLOT_PNG])
  assert _is_png(paths["plot"])


def test_recommend_names_the_best_student_within_each_latency_budget(tmp_path):
  """KD-NAS's recommendations: per budget, the feasible student within it with the best quality
  objective (loss lowest / accuracy highest; ties to the faster); none when nothing fits."""
  from autodistill import pipeline
  from autodistill.config import default_config
  from autodistill.search.report import recommend, recommend_table
  records = [_record(1, 0.50, 1.0, mlm_loss=3.0), _record(2, 0.60, 2.0, mlm_loss=2.5),
             _record(3, 0.70, 3.0, mlm_loss=2.5), _record(4, 0.90, 0.5, status="infeasible",
                                                          mlm_loss=1.0)]
  rows = recommend(records, [0.4, 1.5, 2.0, 10.0], ("mlm_loss", "latency_ms"))
  assert [r["name"] and r["trial_id"] for r in rows] == [None, 1, 2, 2]  # 2 and 3 tie: faster
  assert rows[3]["candidates"] == 3 and rows[1]["latency_ms"] == 1.0
  by_accuracy = recommend(records, [10.0], ("mlm_accuracy", "latency_ms"))
  assert by_accuracy[0]["trial_id"] == 3 and by_accuracy[0]["objective"] == "mlm_accuracy"
  assert "no student of the search within it" in recommend_table(rows).splitlines()[1]
  # The command's function: the workdir's trials.json in, a table and recommend.json out.
  write_trials_table(records, tmp_path)
  config = default_config()
  config.search.latency_budgets_ms = (1.5,)
  lines = []
  assert pipeline.recommend_stage(config, tmp_path, log=lines.append)[0]["trial_id"] == 1
  assert json.loads((tmp_path / "recommend.json").read_text())[0]["trial_id"] == 1
  assert "Model_64_32_4_128_4" in lines[-1]
  config.search.latency_budgets_ms = ()
  with pytest.raises(ValueError, match="latency_budgets_ms=\\(\\) names no budget"):
    pipeline.recommend_stage(config, tmp_path, log=lines.append)
