"""autodistill: AutoDistill (Google, 2022) in JAX/Flax.

One call runs the whole pipeline of an experiment config in a workdir::

  import autodistill
  config = autodistill.default_config()          # or an experiments/*.py get_config()
  autodistill.run_pipeline(config, "workdir/demo")

Each stage alone is a function of :mod:`autodistill.pipeline` over the same ``(config, workdir)``
(``search_stage``, ``finalize_stage``, ...). The building blocks are importable too: models,
data, the one trainer (:mod:`autodistill.train`), distillation, latency, the search's pieces and
fine-tuning. ``import autodistill`` loads JAX and Flax but not Vizier, gRPC, TFDS or torch:
those load inside the commands that use them.
"""

from autodistill.models import (
    MOBILEBERT,
    BertConfig,
    BertEncoder,
    BertForPreTraining,
    ModelOutput,
    StudentConfig,
    StudentEncoder,
    StudentForPreTraining,
)

# `distill` itself stays in autodistill.distill: re-exporting it here would shadow the subpackage.
from autodistill.distill import (
    DistillConfig,
    DistillResult,
    flash_distill,
    prepare_teacher,
    regular_distill,
)
from autodistill.train import OptimizerConfig
from autodistill import data  # autodistill.data.Tokenizer etc. after a plain `import autodistill`
from autodistill.hardware import LatencyCache, LatencySettings, measure_latency, measure_space
from autodistill import search  # its Vizier parts load on first use
from autodistill import finetune  # autodistill.finetune.finetune(model, task, workdir, tokenizer)
from autodistill.space import SPACES, Space, get_space
from autodistill.config import ConfigError, Settings, default_config, parse_config
from autodistill.experiment import Experiment
from autodistill import pipeline
from autodistill.pipeline import run_pipeline

__version__ = "0.1.0"
