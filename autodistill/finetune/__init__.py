"""Downstream evaluation: task heads, GLUE/SQuAD (TFDS) and offline tasks, benchmark metrics,
fine-tuning through the one trainer, and the Table 3/4-style report (paper sections 4.4-4.5)."""

from autodistill.finetune import glue, offline  # registers the tasks
from autodistill.finetune.features import ArrayStream, encode_examples
from autodistill.finetune.finetuning import (
    Backbone,
    FinetuneConfig,
    FinetuneResult,
    finetune,
    finetune_many,
    load_backbone,
    majority_baseline,
    prepare_task_data,
    read_result,
)
from autodistill.finetune.heads import SequenceClassifier, SpanQA, head_for
from autodistill.finetune.metrics import METRICS, compute, squad_scores
from autodistill.finetune.qa import QaFeatures, decode_spans, make_qa_features
from autodistill.finetune.report import collect_results, report_rows, write_report
from autodistill.finetune.tasks import (
    TASKS,
    QaExample,
    Task,
    TextExample,
    UnknownTaskError,
    get_task,
)
