"""Downstream scores of a distilled student vs its baselines on the offline tasks; prints JSON.

The acceptance check of the fine-tuning issue: a student distilled by the demo, fine-tuned on BBC
topic and tweet sentiment, against (a) the majority class, (b) the same architecture randomly
initialised and fine-tuned the same way (same steps, learning-rate sweep, early stopping, seed),
and (c) the teacher for reference. Every model runs the same :func:`finetune` recipe; the
teacher gets its own (lower) learning rates, as BERT-size models need.

Usage (after `make demo`, which leaves the finalized student in workdir/demo/final/<name>)::

  python bench/finetune_offline.py --distilled=workdir/demo/final/<name> \
      --workdir=/tmp/finetune_offline > finetune_offline.json

Runs are resumable (Orbax checkpoints per run) and finished ones are read back, so a killed
bench continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from autodistill.data import Tokenizer
from autodistill.finetune.finetuning import FinetuneConfig, finetune_many, load_backbone
from autodistill.hardware.latency import measure_latency
from autodistill.models import hf


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--distilled", required=True, help="a finished distillation directory")
  parser.add_argument("--teacher", default="", help="HF BERT dir (default: the MiniLM teacher)")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--tasks", default="bbc_topic,tweet_sentiment")
  parser.add_argument("--student_rates", default="1e-4,3e-4,1e-3")
  parser.add_argument("--teacher_rates", default="5e-5,1e-4")
  parser.add_argument("--epochs", type=float, default=3.0)
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--max_train_examples", type=int, default=8000)
  parser.add_argument("--no_teacher", action="store_true")
  args = parser.parse_args(argv)

  teacher_dir = pathlib.Path(args.teacher or hf.default_teacher_path())
  tokenizer = Tokenizer.from_path(teacher_dir)
  distilled = load_backbone(args.distilled)
  backbones = [distilled, load_backbone(args.distilled, random_init=True)]
  teacher = None if args.no_teacher else load_backbone(teacher_dir)
  latencies, by_architecture = {}, {}
  for backbone in backbones + ([teacher] if teacher else []):
    key = repr(backbone.config)  # a randomly initialised copy has the same latency: time it once
    if key not in by_architecture:
      by_architecture[key] = measure_latency(backbone.config, seq_len=args.seq_len).median_ms
    latencies[backbone.name] = by_architecture[key]
  config = FinetuneConfig(seq_len=args.seq_len, epochs=args.epochs,
                          max_train_examples=args.max_train_examples,
                          learning_rates=tuple(float(r) for r in args.student_rates.split(",")),
                          progress=False)
  log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
  tasks = args.tasks.split(",")
  results = finetune_many(backbones, tasks, args.workdir, tokenizer, config,
                          latencies=latencies, log=log)
  if teacher:
    teacher_config = config.replace(
        learning_rates=tuple(float(r) for r in args.teacher_rates.split(",")))
    results += finetune_many([teacher], tasks, args.workdir, tokenizer, teacher_config,
                             latencies=latencies, log=log)
  rows = []
  for r in results:
    rows.append({"model": r.model, "task": r.task, "params_m": round(r.params / 1e6, 2),
                 "latency_ms": r.latency_ms, "learning_rate": r.learning_rate,
                 "dev": r.dev, "test": r.test, "majority": r.majority,
                 "runs": r.runs, "seconds": r.seconds})
  json.dump({"distilled": str(args.distilled), "config": vars(args), "results": rows},
            sys.stdout, indent=2)
  print()


if __name__ == "__main__":
  main()
