"""The command line and the embedded demo, through the real entry point."""

import json
import subprocess
import sys



def _cli(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "autodistill", *args], capture_output=True,
                        text=True, timeout=timeout)


def test_summary_command_prints_the_breakdown():
  result = _cli("summary", "--arch=Model_512_128_1_640_2")
  assert result.returncode == 0, result.stderr
  assert "Model_512_128_1_640_2: 32.10M parameters" in result.stdout


def test_bad_architecture_is_a_one_line_error_not_a_traceback():
  result = _cli("summary", "--arch=Model_512_128_3_512_4")
  assert result.returncode == 1
  assert "bottleneck_size=128 is not divisible by num_heads=3" in result.stderr
  assert "Traceback" not in result.stderr


def test_unknown_command_prints_usage():
  result = _cli("serch")
  assert result.returncode != 0
  assert "commands:" in result.stderr and "demo" in result.stderr


def test_demo_does_real_work(tmp_path, minilm_dir, bbc_dir):
  from autodistill.demo import run_demo
  summary = run_demo(tmp_path, headlines_per_topic=8, forward_students=())
  embeddings = summary["teacher_embeddings"]
  assert embeddings["headlines"] == 40
  # MiniLM is a sentence embedder: same-topic headlines should be nearest far above chance.
  assert embeddings["nn_topic_agreement"] > 2 * embeddings["chance"]
  assert summary["teacher"]["missing"] == ["mlm_head", "nsp_head"]
  assert summary["export"]["round_trip_identical"] is True
  assert json.loads((tmp_path / "demo_summary.json").read_text()) == summary
