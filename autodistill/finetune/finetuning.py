"""Fine-tuning a pre-trained encoder on a downstream task, through the one trainer.

This is how the paper judges its students (section 4.4-4.5, Tables 3 and 4): task-agnostic
distillation, then plain fine-tuning of the student with a task head (no teacher in the loop).
:func:`finetune` does one (model, task) pair:

1. Load the encoder from a finished distillation (Orbax), a Hugging Face checkpoint (BERT or
   MobileBERT), or the teacher (:func:`load_backbone`); or, for a baseline, only its architecture
   (``random_init``).
2. Put the task head on it (:mod:`autodistill.finetune.heads`) and encode the task's splits.
3. For each learning rate of the sweep, run one :class:`~autodistill.train.Phase` in
   ``<workdir>/lr_<rate>/`` with :func:`~autodistill.train.run_phases`: AdamW (BERT's
   fine-tuning optimizer) or LAMB, linear warm-up and decay, evaluation on ``dev`` every
   ``eval_every`` steps, early stopping that keeps the best parameters, Orbax checkpoints (a
   killed run resumes), metrics and a progress bar.
4. Pick the rate with the best dev score, evaluate its best parameters on the test split(s),
   save them (Orbax, ``<workdir>/model``) and write ``<workdir>/result.json``.

:func:`majority_baseline` scores the constant prediction of the most frequent training class.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from autodistill import files, sharding
from autodistill.data.tokenization import Tokenizer
from autodistill.finetune import heads
from autodistill.finetune.config import FinetuneConfig
from autodistill.finetune.features import INPUTS, ArrayStream, padded_batches
from autodistill.finetune.task_types import DEV, TRAIN, Task
from autodistill.finetune.tasks import get_task
from autodistill.models import hf
from autodistill.models.configs import BertConfig, StudentConfig
from autodistill.models.params import count_params
from autodistill.train import EarlyStopping, OptimizerConfig, Phase, RunOptions, run_phases

Params = Any
Log = Callable[[str], None]
RESULT = "result.json"


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A pre-trained encoder: its architecture, parameters (None: random init) and where from."""

  config: BertConfig | StudentConfig
  encoder: Optional[Params]
  source: str
  name: str


def load_backbone(source: str | os.PathLike | Any, *, random_init: bool = False) -> Backbone:
  """The encoder to fine-tune.

  Args:
    source: a finished distillation directory (``result.json`` + Orbax ``student/``, e.g.
      ``<workdir>/final/<name>``), a Hugging Face BERT or MobileBERT directory (``config.json``
      + weights, e.g. an export's ``hf/``), or a loaded teacher / checkpoint object with
      ``.config`` and ``.params`` (e.g. :func:`~autodistill.distill.prepare_teacher`'s result).
    random_init: keep only the architecture (a same-size, randomly initialised baseline).

  Raises:
    FileNotFoundError: the directory holds neither.
  """
  if hasattr(source, "config") and hasattr(source, "params"):
    config, encoder, where = source.config, source.params.get("encoder"), getattr(
        source, "source", "the given model")
  else:
    path = pathlib.Path(source)
    if (path / "result.json").exists() and (path / "student").exists():
      from autodistill.distill.distillation import load_distilled  # pylint: disable=import-outside-toplevel
      config, params, _ = load_distilled(path)
      encoder, where = params["encoder"], str(path)
    elif (path / "config.json").exists():
      model_type = hf.read_config(path).get("model_type", "bert")
      loader = hf.load_student if model_type == "mobilebert" else hf.load_bert
      checkpoint = loader(path).with_initialized(jax.random.PRNGKey(0))
      config, encoder, where = checkpoint.config, checkpoint.params["encoder"], str(path)
    else:
      raise FileNotFoundError(
          f"no model at {path}: expected a finished distillation directory (result.json and "
          "student/, e.g. <workdir>/final/<name>) or a Hugging Face directory (config.json and "
          "weights, e.g. <workdir>/final/<name>/hf).")
  name = config.name if isinstance(config, StudentConfig) else \
      f"BERT_{config.num_layers}L_{config.hidden_size}H"
  if random_init:
    return Backbone(config, None, f"random init ({where})", f"random-{name}")
  return Backbone(config, jax.device_get(encoder), where, name)


# ---------------------------------------------------------------------------------------------
# Task data


@dataclasses.dataclass
class TaskData:
  """A task's encoded splits (model inputs, targets and what decoding needs) and their sizes."""

  task: Task
  splits: dict[str, heads.EncodedSplit]
  sizes: dict[str, int] = dataclasses.field(default_factory=dict)


def _subset(examples: list, limit: int, seed: int, salt: str) -> list:
  if not limit or len(examples) <= limit:
    return examples
  keep = np.sort(np.random.default_rng([seed, len(salt)]).permutation(len(examples))[:limit])
  return [examples[i] for i in keep]


def prepare_task_data(task: Task, tokenizer: Tokenizer, config: FinetuneConfig,
                      log: Log = print) -> TaskData:
  """Loads and encodes the train, dev and test splits of ``task`` (as its head spec says)."""
  spec = heads.head_spec(task)
  splits = [TRAIN, DEV, *task.test_splits.values()]
  data = TaskData(task, {})
  for split in dict.fromkeys(splits):
    examples = task.load(split)
    limit = config.max_train_examples if split == TRAIN else config.max_eval_examples
    examples = _subset(examples, limit, config.seed, split)
    if not examples:
      raise ValueError(f"task {task.name!r}: split {split!r} is empty.")
    data.sizes[split] = len(examples)
    data.splits[split] = spec.encode(examples, tokenizer, config)
  rows = {split: len(encoded.arrays["input_ids"]) for split, encoded in data.splits.items()}
  # Span QA reads an example as one or more context windows; say how many when they differ.
  windows = "" if rows == data.sizes else \
      " (" + ", ".join(f"{split} {n} windows" for split, n in rows.items()) + ")"
  log(f"{task.name}: " + ", ".join(f"{split} {n} examples" for split, n in data.sizes.items())
      + windows)
  return data


# ---------------------------------------------------------------------------------------------
# Losses and evaluation


def task_loss(task: Task, model: Any) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
  """``loss_fn(params, batch, rng, context)`` of the task: its head spec's loss (e.g.
  :func:`~autodistill.finetune.heads.cross_entropy_loss`) of the model in training mode."""
  return _model_loss(heads.head_spec(task).loss, model)


def _model_loss(loss: Callable[..., Any], model: Any) -> Callable[..., Any]:
  def loss_fn(params, batch, rng, context):
    del context  # no teacher when fine-tuning
    outputs = model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"],
                          batch["attention_mask"], deterministic=False, rngs={"dropout": rng})
    return loss(outputs, batch)

  return loss_fn


@functools.lru_cache(maxsize=8)
def _training_programs(kind: str, model: Any) -> tuple[Callable[..., Any], dict[Any, Any]]:
  """The loss of a task kind on ``model`` and where its compiled train steps are kept, for the
  last few (kind, model) pairs of this process: the runs of a learning-rate sweep (the rate is
  data, :func:`~autodistill.train.make_train_step`), and every later fine-tune of the same
  architecture on a task of the same kind and label count, share one compiled step."""
  return _model_loss(heads.HEADS[kind].loss, model), {}


def make_evaluator(task: Task, model: Any, data: TaskData, config: FinetuneConfig,
                   mesh: jax.sharding.Mesh,
                   param_shardings: Params) -> Callable[[Params, str], dict[str, float]]:
  """``evaluate(params, split) -> {metric: value}`` over a whole split (jitted once): the
  model's outputs, decoded and scored by the task's head spec."""
  spec = heads.head_spec(task)

  def forward(params, batch):
    return model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"],
                       batch["attention_mask"], deterministic=True)

  forward = jax.jit(forward, in_shardings=(param_shardings, None),
                    out_shardings=sharding.replicated(mesh))
  data_size = mesh.shape["data"]
  batch_size = -(-config.eval_batch_size // data_size) * data_size

  def outputs(params, arrays):
    inputs = {k: v for k, v in arrays.items() if k in INPUTS}
    chunks = []
    for batch, real in padded_batches(inputs, batch_size, mesh):
      out = jax.device_get(forward(params, batch))
      chunks.append(jax.tree.map(lambda x, r=real: np.asarray(x)[:r], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)

  def evaluate(params: Params, split: str) -> dict[str, float]:
    encoded = data.splits[split]
    predictions = spec.predict(outputs(params, encoded.arrays), encoded, config)
    return spec.score(task, predictions, encoded)

  return evaluate


def majority_baseline(task: Task, data: TaskData) -> dict[str, dict[str, float]]:
  """Scores of always predicting the most frequent training class, per test column; empty for
  tasks without classes."""
  spec = heads.head_spec(task)
  if not spec.has_classes:
    return {}
  labels = data.splits[TRAIN].arrays["labels"]
  majority = int(np.bincount(labels, minlength=task.num_labels).argmax())
  result = {}
  for column, split in task.test_splits.items():
    encoded = data.splits[split]
    constant = np.full_like(encoded.arrays["labels"], majority)
    result[column] = spec.score(task, constant, encoded)
  return result


# ---------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class FinetuneResult:
  """What :func:`finetune` returns (and writes to ``result.json``)."""

  task: str
  model: str
  source: str
  params: int
  learning_rate: float
  dev: dict[str, float]
  test: dict[str, dict[str, float]]
  runs: list[dict[str, Any]]
  majority: dict[str, dict[str, float]]
  workdir: pathlib.Path
  latency_ms: Optional[float] = None
  seconds: float = 0.0
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def scores(self) -> dict[str, float]:
    """The task's score per test column (e.g. ``{"CoLA": 0.52}``)."""
    return {column: values[self.metric] for column, values in self.test.items()}

  @property
  def metric(self) -> str:
    return self.extra.get("metric", "")

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["workdir"] = str(self.workdir)
    return out


def _steps(config: FinetuneConfig, num_examples: int) -> int:
  if config.num_steps:
    return config.num_steps
  return max(1, math.ceil(config.epochs * num_examples / config.batch_size))


def _score(value: float) -> float:
  """A dev score for comparisons: NaN (undefined correlation) ranks below everything."""
  return value if math.isfinite(value) else -math.inf


def _rate_dir(rate: float) -> str:
  return f"lr_{rate:g}"


def finetune(backbone: Backbone | str | os.PathLike, task: Task | str, workdir: str | os.PathLike,
             tokenizer: Tokenizer, config: FinetuneConfig = FinetuneConfig(), *,
             latency_ms: Optional[float] = None, task_options: Optional[Mapping[str, Any]] = None,
             data: Optional[TaskData] = None, log: Log = print) -> FinetuneResult:
  """Fine-tunes ``backbone`` on ``task`` (a learning-rate sweep with early stopping on dev) and
  reports the test score(s) of the best dev run; resumes from ``workdir``.

  Args:
    backbone: a :class:`Backbone` or anything :func:`load_backbone` takes.
    task: a :class:`Task` or a registry name (``"bbc_topic"``, ``"glue/cola"``, ``"squad"``).
    workdir: one directory per (model, task): ``lr_<rate>/`` runs, ``model/`` (the best
      fine-tuned parameters, Orbax) and ``result.json``.
    tokenizer: the backbone's tokenizer (the teacher's).
    config: the recipe.
    latency_ms: the backbone's measured batch-1 latency, recorded for the report.
    task_options: options for :func:`~autodistill.finetune.tasks.get_task` when ``task`` is a name.
    data: already encoded task data (e.g. shared by several models); encoded here if None.
    log: progress messages.
  """
  start = time.time()
  if not isinstance(backbone, Backbone):
    backbone = load_backbone(backbone)
  if isinstance(task, str):
    task = get_task(task, **dict(task_options or {}))
  tokenizer.check_vocab_size(backbone.config.vocab_size)
  if config.seq_len > backbone.config.max_sequence_length:
    raise ValueError(f"seq_len {config.seq_len} exceeds the model's "
                     f"{backbone.config.max_sequence_length} positions; lower it.")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = data or prepare_task_data(task, tokenizer, config, log)
  mesh = sharding.make_mesh(config.mesh_shape)
  if config.batch_size % mesh.shape["data"]:
    raise ValueError(f"batch_size {config.batch_size} is not divisible by the mesh's data axis "
                     f"({mesh.shape['data']} devices); choose a multiple.")
  model = heads.head_for(task, backbone.config, jnp.dtype(config.dtype), config.dropout)
  param_sh = sharding.model_shardings(model, mesh)
  rng = jax.random.PRNGKey(config.seed)
  fresh = heads.init_head_params(model, rng)
  params = fresh if backbone.encoder is None else heads.with_pretrained_encoder(
      fresh, backbone.encoder)
  num_params = count_params(params)
  evaluate = make_evaluator(task, model, data, config, mesh, param_sh)
  num_steps = _steps(config, data.sizes[TRAIN])
  eval_every = config.eval_every or max(1, num_steps // max(config.evals_per_run, 1))
  metric = task.score_metric
  log(f"fine-tuning {backbone.name} ({num_params / 1e6:.2f}M parameters, from {backbone.source}) "
      f"on {task.name}: {num_steps} steps of batch {config.batch_size}, {config.optimizer}, "
      f"learning rates {list(config.learning_rates)}, dev {metric} every {eval_every} steps")

  runs, best_run = [], None
  loss_fn, programs = _training_programs(task.kind, model)
  for rate in config.learning_rates:
    optimizer = OptimizerConfig(name=config.optimizer, learning_rate=rate,
                                warmup_steps=int(config.warmup_fraction * num_steps),
                                weight_decay=config.weight_decay, clip_norm=config.clip_norm)
    phase = Phase(f"finetune/{task.name}", num_steps, loss_fn, optimizer)
    stream = ArrayStream(data.splits[TRAIN].arrays, config.batch_size, config.seed)
    result = run_phases(
        [phase], params, param_shardings=param_sh, mesh=mesh, train_data=stream,
        workdir=workdir / _rate_dir(rate), seed=config.seed,
        eval_fn=lambda p: evaluate(p, DEV),
        early_stopping=EarlyStopping(metric, "max", config.patience),
        options=RunOptions(eval_every=eval_every, checkpoint_every=config.checkpoint_every,
                           log_every=max(1, min(50, eval_every)), progress=config.progress),
        log=log, programs=programs)
    best, best_params, best_step = result.best, result.best_params, result.best_step
    if best is None:  # no finite dev score at all (e.g. constant regression outputs): the last
      last = result.history[-1]
      best = {k: v for k, v in last.items() if k not in ("step", "phase")}
      best_params, best_step = result.params, last["step"]
    run = {"learning_rate": rate, "best_step": best_step, "dev": best,
           "stopped_early_at": result.stopped_early_at, "steps": result.global_step,
           "seconds": round(result.seconds, 1)}
    runs.append(run)
    log(f"  lr {rate:g}: best dev {metric} {best[metric]:.4f} at step {best_step}"
        + (f" (stopped early at {result.stopped_early_at})" if result.stopped_early_at else ""))
    if best_run is None or _score(best[metric]) > _score(best_run[0]["dev"][metric]):
      best_run = (run, best_params)
  run, best_params = best_run
  test = {column: evaluate(best_params, split) for column, split in task.test_splits.items()}
  _save_params(workdir / "model", best_params)
  outcome = FinetuneResult(
      task=task.name, model=backbone.name, source=backbone.source, params=num_params,
      learning_rate=run["learning_rate"], dev=run["dev"], test=test, runs=runs,
      majority=majority_baseline(task, data), workdir=workdir, latency_ms=latency_ms,
      seconds=round(time.time() - start, 1),
      extra={"metric": metric, "columns": dict(task.test_splits), "in_average": task.in_average,
             "sizes": data.sizes, "config": dataclasses.asdict(config),
             "architecture": dataclasses.asdict(backbone.config),
             "kind": type(backbone.config).__name__})
  tmp = workdir / (RESULT + ".tmp")
  tmp.write_text(json.dumps(outcome.to_dict(), indent=2, default=str), encoding="utf-8")
  os.replace(tmp, workdir / RESULT)
  log(f"{backbone.name} on {task.name}: " + ", ".join(
      f"{column} {metric} {values[metric]:.4f}" for column, values in test.items())
      + f" (lr {run['learning_rate']:g}, dev {run['dev'][metric]:.4f})")
  return outcome


def _save_params(target: pathlib.Path, params: Params) -> None:
  if target.exists():
    return  # written by an earlier (identical) call; runs are deterministic
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(target.absolute(), jax.device_get(params))


def read_result(workdir: str | os.PathLike) -> dict[str, Any]:
  """The ``result.json`` of a finished :func:`finetune` workdir."""
  return files.read_json(pathlib.Path(workdir) / RESULT,
                         fix=f"delete {workdir} and fine-tune again: it is rebuilt")


def finetune_many(backbones: Sequence[Backbone], tasks: Sequence[Task | str],
                  workdir: str | os.PathLike, tokenizer: Tokenizer,
                  config: FinetuneConfig = FinetuneConfig(), *,
                  latencies: Optional[Mapping[str, float]] = None,
                  task_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  log: Log = print) -> list[FinetuneResult]:
  """Every backbone on every task, in ``<workdir>/<model>/<task>/``; each task is encoded once.

  A finished (model, task) pair (its ``result.json`` exists) is read back, not run again.
  """
  results = []
  for task in tasks:
    if isinstance(task, str):
      task = get_task(task, **dict((task_options or {}).get(task, {})))
    data = None
    for backbone in backbones:
      out = pathlib.Path(workdir) / backbone.name / task.name.replace("/", "_")
      if (out / RESULT).exists():
        log(f"{backbone.name} on {task.name}: done earlier ({out / RESULT})")
        results.append(_result_from_dict(read_result(out)))
        continue
      data = data or prepare_task_data(task, tokenizer, config, log)
      results.append(finetune(backbone, task, out, tokenizer, config, data=data,
                              latency_ms=(latencies or {}).get(backbone.name), log=log))
  return results


def _result_from_dict(values: Mapping[str, Any]) -> FinetuneResult:
  values = dict(values)
  values["workdir"] = pathlib.Path(values["workdir"])
  return FinetuneResult(**values)
