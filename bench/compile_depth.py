"""Compile time against depth: `distill` of MobileBERT-shaped students of 4 to 24 blocks with the
blocks unrolled (one parameter subtree per block) and under `nn.scan` (`scan_blocks`); JSON.

Each run is a fresh process (no compiled program shared between runs, no persistent cache) that
distils one student of ``Model_512_128_4_512_4``'s widths and the given depth from a
BERT-base-shaped teacher (12 x 768, 12 heads, random weights with MLM/NSP heads: compile time
does not depend on the values) on BBC News (the embedded corpus, MiniLM's WordPiece vocabulary),
batch 8 x 32, for 2 steps per progressive stage and 3 of pre-training distillation. It reports
the run's own breakdown (``DistillResult.timings``: setup, compile = tracing + lowering + XLA
compile of every program of the run, train, evaluate, checkpoint).

    python bench/compile_depth.py                       # ~10 min on 2 cores
    python bench/compile_depth.py --blocks 4 24 --layouts scan

Run it on a quiet machine: the seconds are wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _one(blocks: int, layout: str) -> None:
  """One run in this process; prints its JSON line."""
  import pathlib

  import jax

  from autodistill.data import ExampleConfig, TextFiles, Tokenizer, pretraining_data
  from autodistill.data.corpora import bbc_news_dir
  from autodistill.distill import DistillConfig, PreparedTeacher, distill
  from autodistill.models import BertConfig, StudentConfig, hf

  tokenizer = Tokenizer.from_path(hf.default_teacher_path() / "vocab.txt")
  examples = ExampleConfig(max_seq_length=32, max_predictions_per_seq=5)
  train, held_out = pretraining_data(TextFiles(bbc_news_dir()), tokenizer, global_batch_size=8,
                                     examples=examples, eval_fraction=0.01, seed=0)
  teacher_config = BertConfig(vocab_size=tokenizer.vocab_size)
  teacher = PreparedTeacher(teacher_config, hf.init_params(teacher_config, jax.random.PRNGKey(0)),
                            "random", (), {})
  student = StudentConfig.from_name("Model_512_128_4_512_4", num_blocks=blocks,
                                    vocab_size=tokenizer.vocab_size)
  config = DistillConfig(steps_per_block=2, pretrain_steps=3, warmup_steps=1, progress=False,
                         log_every=100, scan_blocks=layout == "scan")
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    result = distill(student, teacher, train, held_out, pathlib.Path(workdir), config,
                     log=lambda _: None)
    wall = time.perf_counter() - start
  print(json.dumps({"blocks": blocks, "layout": layout, "distill_s": round(wall, 1),
                    "timings_s": result.timings,
                    "steps": 2 * blocks + 3}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--blocks", type=int, nargs="+", default=[4, 12, 24])
  parser.add_argument("--layouts", nargs="+", choices=("unrolled", "scan"),
                      default=["unrolled", "scan"])
  parser.add_argument("--one", nargs=2, metavar=("BLOCKS", "LAYOUT"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    _one(int(args.one[0]), args.one[1])
    return
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  runs = []
  for blocks in args.blocks:
    for layout in args.layouts:
      done = subprocess.run([sys.executable, __file__, "--one", str(blocks), layout], env=env,
                            capture_output=True, text=True, check=False)
      if done.returncode:
        sys.exit(f"{blocks} blocks, {layout}: failed\n{done.stderr[-3000:]}")
      runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
      print(json.dumps(runs[-1]), file=sys.stderr)
  print(json.dumps({"student": "Model_512_128_4_512_4", "teacher": "BERT 12x768x12h (random)",
                    "batch": "8 x 32", "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(), "runs": runs}, indent=2))


if __name__ == "__main__":
  main()
