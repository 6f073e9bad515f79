"""autodistill: AutoDistill (Google, 2022) in JAX/Flax."""

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

__version__ = "0.1.0"
