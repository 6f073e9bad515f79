"""The one trainer behind every phase (teacher head fitting, distillation, fine-tuning): phases
and their loop, the pure jitted step, optimizers, checkpoints, early stopping and metrics."""

from autodistill.train.checkpointing import Checkpoints, IncompatibleWorkdirError
from autodistill.train.early_stopping import BestSoFar, EarlyStopping
from autodistill.train.loop import NonFiniteLossError, Phase, RunOptions, RunResult, run_phases
from autodistill.train.metrics import MetricWriter, read_metrics
from autodistill.train.optimizers import (
    OptimizerConfig,
    count_by_label,
    decay_mask,
    freeze_labels,
    learning_rate_schedule,
    make_optimizer,
)
from autodistill.train.state import (
    Program,
    TrainState,
    create_state,
    make_train_step,
    place,
    state_shardings,
)
