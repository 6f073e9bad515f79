"""Distillation recipes: the paper's step presets (section 4.1), step plans and
:class:`DistillConfig`, everything :func:`autodistill.distill.distill` needs besides the models
and the data.

Presets follow section 4.1: ``flash`` is 25k pre-training-distillation steps with 500 warm-up and
a progressive:pre-training step ratio of 0.48 (24 blocks x 500 = 12k), batch 2048; ``regular`` is
500k steps with 10k warm-up at the same ratio (24 x 10k = 240k). ``scale`` multiplies every step
count (keeping the ratios) so the same recipe fits a CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from autodistill.distill import losses
from autodistill.distill.teacher import nsp_verdict
from autodistill.train import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class Preset:
  """A distillation schedule of the paper (section 4.1), before scaling."""

  pretrain_steps: int
  warmup_steps: int
  progressive_ratio: float
  batch_size: int


PRESETS: dict[str, Preset] = {
    # 24 blocks x 500 steps = 12k progressive, 25k pre-training distillation, 500 warm-up.
    "flash": Preset(pretrain_steps=25_000, warmup_steps=500, progressive_ratio=0.48,
                    batch_size=2048),
    # 24 blocks x 10k steps = 240k progressive, 500k pre-training distillation, 10k warm-up.
    "regular": Preset(pretrain_steps=500_000, warmup_steps=10_000, progressive_ratio=0.48,
                      batch_size=2048),
}


@dataclasses.dataclass(frozen=True)
class StepPlan:
  """Step counts of one distillation run."""

  num_blocks: int
  steps_per_block: int
  pretrain_steps: int
  warmup_steps: int

  @property
  def progressive_steps(self) -> int:
    return self.num_blocks * self.steps_per_block

  @property
  def total_steps(self) -> int:
    return self.progressive_steps + self.pretrain_steps


def step_plan(preset: str, num_blocks: int, scale: float = 1.0, *,
              steps_per_block: Optional[int] = None, pretrain_steps: Optional[int] = None,
              warmup_steps: Optional[int] = None) -> StepPlan:
  """The steps of a preset for a student of ``num_blocks`` blocks, scaled by ``scale``.

  The paper fixes two ratios (section 4.1, 4.7): progressive to pre-training-distillation steps
  (0.48: 24 blocks x 500 = 12k against 25k) and warm-up to pre-training distillation (500 of 25k,
  2%). A student with K blocks gets ``round(0.48 * pretrain_steps / K)`` steps per block: 500 for
  the paper's 24 blocks. An explicit count overrides the preset and is not scaled; a count left
  to the preset follows from the *actual* pre-training steps by the paper's ratios, so
  ``pretrain_steps=40`` alone gives a 1-step warm-up and ``round(19.2 / K)`` steps per block
  (not the full preset's 500 and 6,000).

  Raises:
    ValueError: unknown preset, non-positive scale or a negative count.
  """
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
  if scale <= 0:
    raise ValueError(f"scale must be positive, got {scale}.")
  for name, value in (("steps_per_block", steps_per_block), ("pretrain_steps", pretrain_steps),
                      ("warmup_steps", warmup_steps)):
    if value is not None and value < 0:
      raise ValueError(f"{name} must be >= 0, got {value}.")
  p = PRESETS[preset]
  pretrain = (pretrain_steps if pretrain_steps is not None
              else max(1, round(p.pretrain_steps * scale)))
  warmup = (warmup_steps if warmup_steps is not None
            else round(pretrain * p.warmup_steps / p.pretrain_steps))
  per_block = (steps_per_block if steps_per_block is not None
               else max(1, round(p.progressive_ratio * pretrain / num_blocks)))
  return StepPlan(num_blocks=num_blocks, steps_per_block=per_block, pretrain_steps=pretrain,
                  warmup_steps=min(warmup, pretrain))


PROGRESSIVE_PROGRAMS = ("shared", "per_block")
# What the student learns from (DistillConfig.objective): AutoDistill's recipe (progressive
# transfer on eqs. 1-2, then eq. 3), or KD-NAS's multi-layer hidden states (with eq. 3's logit
# terms) in one joint phase.
DISTILL_OBJECTIVES = ("autodistill", "multi_layer")
# From this many blocks a student trains with its blocks under nn.scan unless
# ``DistillConfig.scan_blocks`` says otherwise (``bench/compile_depth.py``).
SCAN_MIN_BLOCKS = 4


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """Everything :func:`distill` needs besides the models and the data.

  Attributes:
    preset: "flash" or "regular" (section 4.1).
    scale: multiplies the preset's step counts (e.g. 0.01 on a CPU).
    steps_per_block, pretrain_steps, warmup_steps: explicit overrides of the preset.
    progressive: run progressive transfer before pre-training distillation (the paper: yes).
    optimizer: LAMB settings; warm-up comes from the plan for pre-training distillation, and
      each progressive stage warms up over its first 10% of steps.
    alpha: weight of the hard MLM loss in eq. 3 (MobileBERT: 0.5).
    nsp_weight: weight of L_N in eq. 3 (the paper: 1). None (the default): 1 if the teacher
      predicts next sentences better than chance on the held-out data, else 0, so that the
      student is not trained towards labels nobody can predict from this corpus
      (:func:`~autodistill.distill.teacher.nsp_verdict`; :func:`distill` decides it).
    temperature: softmax temperature of the MLM distillation term.
    attention_loss: "kl" (eq. 1) or "relation" (MiniLM-v2 Q/K/V relations).
    relation_heads: relation heads for "relation" (None: the largest count <= 12 dividing both
      attention widths).
    mha_weight, fm_weight: weights of L_MHA and L_FM in progressive stages.
    layer_mapping: teacher layer (1-based) per student block; None = uniform.
    embedding_init: "pca", "linear" or "truncate" (see initialization).
    dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32.
    seed: initialisation and dropout seed.
    mesh_shape: (data, model) mesh shape; -1 takes the remaining devices.
    checkpoint_every, log_every, keep_checkpoints: persistence and logging.
    eval_at_start: evaluate the initialised student before training (the step-0 baseline).
    evaluate_stages: evaluate after the last progressive stage too (how far the layer-wise
      transfer alone got). Both are diagnostics: a search trial needs only the run's final
      evaluation and skips them (:func:`autodistill.search.evaluate.trial_recipe`), which saves
      two of a demo trial's three held-out passes.
    progress: show progress bars.
    progressive_program: "shared" runs the K progressive stages as one compiled step with the
      stage index as data (one compile, but every stage's step computes the whole student's
      forward and backward, the teacher's whole forward, and masks what the stage does not
      train); "per_block" compiles one step per stage, each pruned to its own block and the
      teacher layers it needs (K compiles, cheaper steps: the choice when a stage runs for
      many steps, e.g. the paper's 500 per block). Both give the same parameters.
    scan_blocks: train the student's blocks as one ``nn.scan`` over parameters stored stacked
      (:class:`~autodistill.models.student.StudentEncoder`'s ``scan_blocks``): the training and
      evaluation programs then compile in about the same time at any depth (the 24-block
      MobileBERT step: see the README's Distillation section), and LAMB's trust ratio is still
      computed per block. The result, ``student/`` and everything outside the trainer keep the
      usual per-block parameters; checkpoints in the workdir hold the stacked ones. Needs
      ``progressive_program="shared"`` (a stage cannot freeze part of a stacked leaf). Same
      parameters as unrolled blocks (tested to 1e-5) except that dropout draws other masks.
      None (the default): scan when the model has at least :data:`SCAN_MIN_BLOCKS` blocks and
      the progressive program is shared (:meth:`scans`); measured on a 2-core CPU, the two
      layouts cost the same at 2 blocks and the scan wins from 4 (``bench/compile_depth.py``).
    objective: "autodistill" (the paper's recipe above) or "multi_layer": KD-NAS's multi-layer
      hidden-state distillation (:func:`losses.multi_layer_hidden_mse`), every block matched to
      its teacher layer (``layer_mapping``) through its learned projection, all blocks and
      projections trained together in one phase ("multi_layer_distillation") of the recipe's
      total step count (progressive + pre-training steps, so the budgets compare), with
      ``hidden_weight`` x L_HS + ``logits_weight`` x eq. 3 (alpha, temperature, nsp_weight as
      above). ``progressive`` and the attention settings do not apply.
    hidden_weight, logits_weight: the two weights of the "multi_layer" objective (logits_weight
      0: hidden states only).
  """

  preset: str = "flash"
  scale: float = 1.0
  steps_per_block: Optional[int] = None
  pretrain_steps: Optional[int] = None
  warmup_steps: Optional[int] = None
  progressive: bool = True
  optimizer: OptimizerConfig = OptimizerConfig(learning_rate=1e-3, weight_decay=0.01)
  alpha: float = 0.5
  nsp_weight: Optional[float] = None
  temperature: float = 1.0
  attention_loss: str = "kl"
  relation_heads: Optional[int] = None
  mha_weight: float = 1.0
  fm_weight: float = 1.0
  layer_mapping: Optional[tuple[int, ...]] = None
  embedding_init: str = "pca"
  dtype: str = "float32"
  seed: int = 0
  mesh_shape: tuple[int, int] = (-1, 1)
  checkpoint_every: int = 500
  log_every: int = 50
  keep_checkpoints: int = 2
  eval_at_start: bool = True
  evaluate_stages: bool = True
  progress: bool = True
  progressive_program: str = "shared"
  scan_blocks: Optional[bool] = None
  objective: str = "autodistill"
  hidden_weight: float = 1.0
  logits_weight: float = 1.0

  def __post_init__(self):
    if self.attention_loss not in losses.ATTENTION_LOSSES:
      raise ValueError(f"unknown attention_loss {self.attention_loss!r}; choose one of "
                       f"{sorted(losses.ATTENTION_LOSSES)}.")
    if not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"alpha must be in [0, 1] (eq. 3), got {self.alpha}.")
    if self.nsp_weight is not None and not self.nsp_weight >= 0:
      raise ValueError(f"nsp_weight must be >= 0 (or None: from the teacher), got "
                       f"{self.nsp_weight}.")
    if self.temperature <= 0:
      raise ValueError(f"temperature must be positive, got {self.temperature}.")
    if self.progressive_program not in PROGRESSIVE_PROGRAMS:
      raise ValueError(f"unknown progressive_program {self.progressive_program!r}; choose one "
                       f"of {list(PROGRESSIVE_PROGRAMS)}.")
    if self.objective not in DISTILL_OBJECTIVES:
      raise ValueError(f"unknown objective {self.objective!r}; choose one of "
                       f"{list(DISTILL_OBJECTIVES)}.")
    if not (self.hidden_weight >= 0 and self.logits_weight >= 0
            and self.hidden_weight + self.logits_weight > 0):
      raise ValueError("hidden_weight and logits_weight must be >= 0 and not both 0; got "
                       f"{self.hidden_weight} and {self.logits_weight}.")
    if self.scan_blocks and self.progressive_program != "shared":
      raise ValueError("scan_blocks=True trains the progressive stages with the shared program; "
                       "set progressive_program='shared' (or scan_blocks=False).")
    if isinstance(self.optimizer, dict):
      object.__setattr__(self, "optimizer", OptimizerConfig(**self.optimizer))
    step_plan(self.preset, 1, self.scale)  # validates preset and scale

  def replace(self, **changes) -> "DistillConfig":
    return dataclasses.replace(self, **changes)

  def for_teacher(self, teacher: Any) -> "DistillConfig":
    """This recipe with ``nsp_weight`` decided for ``teacher``: as set, or (None) 1 if the
    teacher's held-out evaluations (``teacher.evals``, e.g. a
    :class:`~autodistill.distill.PreparedTeacher`) show that it predicts next sentences better
    than chance, else 0; 1 for a teacher without them (eq. 3 as published)."""
    if self.nsp_weight is not None:
      return self
    evals = getattr(teacher, "evals", None) or {}
    learned = "nsp_accuracy" not in evals or nsp_verdict(evals)[0]
    return self.replace(nsp_weight=1.0 if learned else 0.0)

  def scans(self, num_blocks: int) -> bool:
    """Whether a model of ``num_blocks`` blocks trains with its blocks scanned (``scan_blocks``)."""
    if self.scan_blocks is not None:
      return bool(self.scan_blocks)
    return self.progressive_program == "shared" and num_blocks >= SCAN_MIN_BLOCKS

  def plan(self, num_blocks: int) -> StepPlan:
    return step_plan(self.preset, num_blocks, self.scale, steps_per_block=self.steps_per_block,
                     pretrain_steps=self.pretrain_steps, warmup_steps=self.warmup_steps)
