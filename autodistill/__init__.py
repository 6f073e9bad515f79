"""autodistill: AutoDistill (Google, 2022) in JAX/Flax."""

import os as _os

# gRPC's core (the Vizier service underneath the search) logs connection events such as
# "Got goaway" at INFO to stderr when an in-process server stops; keep errors only unless the
# user asked for more.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

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
    OptimizerConfig,
    flash_distill,
    prepare_teacher,
    regular_distill,
)
from autodistill import data  # autodistill.data.WordPiece etc. after a plain `import autodistill`
from autodistill.hardware import LatencyCache, measure_latency, measure_space
# `autodistill.search` is the search subpackage and, called, runs the search:
# autodistill.search(config, workdir) == autodistill.search.search(config, workdir).
from autodistill import search
from autodistill import finetune  # autodistill.finetune.finetune(model, task, workdir, tokenizer)
from autodistill.space import SPACES, Space, get_space

__version__ = "0.1.0"
