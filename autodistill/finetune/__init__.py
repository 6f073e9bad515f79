"""Downstream evaluation: task heads, GLUE/SQuAD (TFDS) and offline tasks, benchmark metrics,
fine-tuning through the one trainer, and the Table 3/4-style report (paper sections 4.4-4.5)."""

from autodistill.finetune.config import FinetuneConfig
from autodistill.finetune.features import ArrayStream, encode_examples
from autodistill.finetune.finetuning import (
    Backbone,
    FinetuneResult,
    finetune,
    finetune_many,
    load_backbone,
    majority_baseline,
    prepare_task_data,
    read_result,
)
from autodistill.finetune.heads import (
    HEADS,
    EncodedSplit,
    HeadSpec,
    SequenceClassifier,
    SpanQA,
    head_for,
    head_spec,
)
from autodistill.finetune.metrics import METRICS, compute, squad_scores
from autodistill.finetune.qa import QaFeatures, decode_spans, make_qa_features
from autodistill.finetune.report import collect_results, report_rows, write_report
from autodistill.finetune.task_types import QaExample, Task, TextExample
from autodistill.finetune.tasks import TASKS, UnknownTaskError, get_task
