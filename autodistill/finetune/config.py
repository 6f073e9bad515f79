"""The fine-tuning recipe: optimizer, schedule, evaluation, span-QA windows and decoding.

Its own module so that the heads (:mod:`autodistill.finetune.heads`, which encode and decode per
task kind) and the fine-tuning loop (:mod:`autodistill.finetune.finetuning`) read the same
recipe without importing each other.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """How to fine-tune (defaults: BERT's GLUE recipe, scaled to small data).

  Attributes:
    seq_len: tokens per example (GLUE: 128; SQuAD: 384).
    batch_size: global batch (BERT: 32).
    num_steps: optimizer steps per run; 0 derives them from ``epochs``.
    epochs: passes over the training split when ``num_steps`` is 0 (BERT: 3).
    learning_rates: one run per rate; the best on dev wins (BERT sweeps 5e-5, 3e-5, 2e-5).
    optimizer: "adamw" (BERT) or "lamb".
    warmup_fraction: linear warm-up over this fraction of the steps, then linear decay to 0.
    weight_decay: decoupled weight decay (not on biases and norms).
    clip_norm: global gradient-norm clip, or None.
    dropout: classifier dropout; None uses the encoder's ``hidden_dropout_prob`` (Hugging Face).
    eval_every: steps between dev evaluations; 0 evaluates about ``evals_per_run`` times.
    evals_per_run: dev evaluations per run when ``eval_every`` is 0.
    patience: dev evaluations without improvement before stopping; 0 never stops early.
    eval_batch_size: batch of the dev/test passes.
    max_train_examples, max_eval_examples: use at most this many examples (0: all); a fixed,
      seeded subset, for quick runs on large tasks.
    doc_stride, max_query_length, n_best, max_answer_length: span QA windows and decoding
      (BERT's run_squad defaults).
    seed: initialisation of the head, dropout and the data order.
    dtype: compute dtype ("float32" or "bfloat16").
    mesh_shape: (data, model) device mesh; -1 takes the remaining devices.
    checkpoint_every: steps between checkpoints (and one at the end of each run).
    progress: show progress bars.
  """

  seq_len: int = 128
  batch_size: int = 32
  num_steps: int = 0
  epochs: float = 3.0
  learning_rates: tuple[float, ...] = (5e-5,)
  optimizer: str = "adamw"
  warmup_fraction: float = 0.1
  weight_decay: float = 0.01
  clip_norm: Optional[float] = 1.0
  dropout: Optional[float] = None
  eval_every: int = 0
  evals_per_run: int = 10
  patience: int = 5
  eval_batch_size: int = 64
  max_train_examples: int = 0
  max_eval_examples: int = 0
  doc_stride: int = 128
  max_query_length: int = 64
  n_best: int = 20
  max_answer_length: int = 30
  seed: int = 0
  dtype: str = "float32"
  mesh_shape: tuple[int, ...] = (-1, 1)
  checkpoint_every: int = 500
  progress: bool = True

  def __post_init__(self):
    object.__setattr__(self, "learning_rates", tuple(float(r) for r in self.learning_rates))
    object.__setattr__(self, "mesh_shape", tuple(int(s) for s in self.mesh_shape))
    problems = []
    if not self.learning_rates or min(self.learning_rates) <= 0:
      problems.append(f"learning_rates must be positive, got {self.learning_rates}")
    if self.num_steps < 0 or (self.num_steps == 0 and self.epochs <= 0):
      problems.append("set num_steps > 0 or epochs > 0")
    if not 0 <= self.warmup_fraction < 1:
      problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
    if self.batch_size < 1 or self.eval_batch_size < 1:
      problems.append("batch_size and eval_batch_size must be >= 1")
    if self.optimizer not in ("adamw", "lamb"):
      problems.append(f"optimizer must be 'adamw' or 'lamb', not {self.optimizer!r}")
    if problems:
      raise ValueError("bad FinetuneConfig: " + "; ".join(problems) + ".")

  def replace(self, **changes) -> "FinetuneConfig":
    return dataclasses.replace(self, **changes)
