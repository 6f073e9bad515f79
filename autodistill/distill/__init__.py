"""Distillation: losses (eqs. 1-3, MiniLM relations, KD-NAS's multi-layer hidden states),
student initialisation, Flash/Regular Distillation and teacher preparation (paper section 3.3),
all trained by :mod:`autodistill.train`."""

from autodistill.distill.distillation import (
    DistillResult,
    distill,
    distillation_phases,
    final_evals,
    flash_distill,
    initial_params,
    load_distilled,
    regular_distill,
)
from autodistill.distill.evaluation import (
    chance_mlm_accuracy,
    evaluate_pretraining,
    make_pretraining_evaluator,
)
from autodistill.distill.initialization import (
    RESAMPLERS,
    FeatureProjections,
    init_student_from_teacher,
    layer_mapping,
    resampling_map,
)
from autodistill.distill.losses import (
    ATTENTION_LOSSES,
    LOSSES,
    attention_kl,
    attention_relation_kl,
    feature_map_mse,
    match_heads,
    mlm_distill_loss,
    mlm_loss,
    multi_layer_hidden_mse,
    nsp_loss,
    pretraining_distill_loss,
)
from autodistill.distill.recipe import PRESETS, DistillConfig, Preset, StepPlan, step_plan
from autodistill.distill.teacher import PreparedTeacher, prepare_teacher, pretrain_teacher

# What a caller of distill() configures and catches; the trainer itself is autodistill.train.
from autodistill.train import IncompatibleWorkdirError, NonFiniteLossError, OptimizerConfig
