"""Training a SuperLM (:mod:`.superlm`) through the project's one trainer, and loading it back.

A SuperLM directory (``<workdir>/supernet/<space>/``) holds:

* ``train/``: the trainer's checkpoints, ``metrics.jsonl`` and TensorBoard logs; a run killed at
  any step resumes from its last checkpoint and reproduces the uninterrupted run;
* ``superlm/``: the trained shared weights (an Orbax checkpoint of the envelope's parameters);
* ``superlm.json``: what they are (space, envelope, teacher, recipe, evaluations, time).

Training is skipped when ``superlm.json`` and ``superlm/`` exist for the same space, teacher
and recipe; a different recipe in the same directory is refused with the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from autodistill import files, sharding
from autodistill.distill.distillation import initial_params
from autodistill.distill.recipe import DistillConfig
from autodistill.errors import UserError, damaged
from autodistill.models.configs import StudentConfig
from autodistill.models.elastic import Envelope
from autodistill.models.teacher import BertForPreTraining
from autodistill.space import Space
from autodistill.supernet.superlm import (SubnetTable, SuperLMConfig, context_table,
                                          held_out_scores, superlm_loss)
from autodistill.train.loop import Phase, RunOptions, run_phases
from autodistill.train.state import place

Params = Any
Log = Callable[[str], None]

SUMMARY_JSON = "superlm.json"


class IncompatibleSuperLMError(UserError, ValueError):
  """The SuperLM directory holds a SuperLM of another space, teacher or recipe."""


class SuperLMSetupError(UserError, ValueError):
  """The space's subnets cannot share one SuperLM, or the recipe does not fit them."""


@dataclasses.dataclass
class SuperLM:
  """A trained SuperLM.

  Attributes:
    table: every subnet of the sub-space and the envelope they share.
    params: the envelope's parameters (``encoder``, ``mlm_head``, ``nsp_head``), host arrays.
    summary: the contents of ``superlm.json``.
    directory: where it lives.
  """

  table: SubnetTable
  params: Params
  summary: dict[str, Any]
  directory: pathlib.Path

  @property
  def envelope(self) -> Envelope:
    return self.table.envelope


def _identity(space: Space, teacher: Any, config: SuperLMConfig) -> dict[str, Any]:
  """What a trained SuperLM depends on; a directory holding another is refused."""
  recipe = dataclasses.asdict(config)
  for key in ("checkpoint_every", "log_every", "progress", "eval_batches", "mesh_shape"):
    recipe.pop(key)
  identity = {"space": space.to_dict(), "teacher": dataclasses.asdict(teacher.config),
              "recipe": recipe}
  return json.loads(json.dumps(identity))  # as superlm.json holds it (tuples as lists)


def _subnets(space: Space, teacher: Any) -> list[StudentConfig]:
  t = teacher.config
  return space.architectures(vocab_size=t.vocab_size,
                             max_position_embeddings=t.max_position_embeddings,
                             type_vocab_size=t.type_vocab_size)


def initial_superlm(table: SubnetTable, teacher: Any, config: SuperLMConfig) -> Params:
  """The SuperLM's starting weights: the largest subnet grown from the teacher (section 3.3.2's
  initialisation: PCA-resampled embeddings, so every narrower subnet's leading channels are the
  teacher embedding's top principal directions), in the envelope's shape."""
  largest = table.students[table.largest]
  grown = initial_params(largest, teacher.config, teacher.params,
                         DistillConfig(seed=config.seed, scan_blocks=False))["student"]
  return table.envelope.embed(largest, jax.device_get(grown))


def train_superlm(space: Space, teacher: Any, train_data: Any, eval_data: Any,
                  directory: str | os.PathLike, config: SuperLMConfig = SuperLMConfig(), *,
                  log: Log = print) -> SuperLM:
  """Trains the SuperLM of ``space`` (or loads the one ``directory`` already holds).

  Args:
    space: the sub-space; every valid point is a subnet.
    teacher: the prepared teacher (``.config``, ``.params`` with the encoder).
    train_data, eval_data: :class:`~autodistill.data.PretrainingData` pipelines.
    directory: the SuperLM directory (see the module docstring).
    config: the recipe.
    log: progress messages.

  Raises:
    IncompatibleSuperLMError: ``directory`` holds a SuperLM of another space, teacher or recipe.
    ValueError: the space's students cannot share one envelope.
  """
  directory = pathlib.Path(directory)
  identity = _identity(space, teacher, config)
  done = load_superlm(directory, expect=identity)
  if done is not None:
    log(f"supernet: the SuperLM of {space.name} is trained ({directory}); training skipped")
    return done
  relation_heads = config.relation_heads_for(teacher.config)
  try:
    table = SubnetTable.build(_subnets(space, teacher), relation_heads)
  except ValueError as error:
    raise SuperLMSetupError(
        f"the subnets of space {space.name!r} cannot share one SuperLM: {error} Set "
        "--config.supernet.relation_heads to at most the narrowest subnet's attention width, or "
        "use a space whose students differ only in their searched factors "
        "(experiments/autodistil_subspaces.py).") from None
  env = table.envelope
  layer = config.teacher_layer_for(teacher.config)
  log(f"supernet: training the SuperLM of {space.name} ({len(table)} subnets; envelope "
      f"{env.describe()}) for {config.steps} steps, {config.sampling} sampling of "
      f"{config.subnets_per_step} subnets per step, relation distillation from teacher layer "
      f"{layer} with {relation_heads} relation heads")
  loss = superlm_loss(env, teacher.config, relation_heads, layer, config.sampling,
                      config.subnets_per_step)
  mesh = sharding.make_mesh(config.mesh_shape)
  param_sh = sharding.model_shardings(env.model(), mesh)
  teacher_sh = sharding.model_shardings(BertForPreTraining(teacher.config), mesh)
  rep = sharding.replicated(mesh)
  table_data = context_table(table)
  context = {"teacher": place(teacher.params, teacher_sh), "subnets": table_data}
  context_sh = {"teacher": teacher_sh, "subnets": jax.tree.map(lambda _: rep, table_data)}
  phase = Phase("superlm", config.steps, loss,
                config.optimizer.replace(warmup_steps=config.warmup_steps),
                trainable=lambda path: path[0] == "encoder", context=context,
                context_shardings=context_sh)
  probes = {"largest": table.largest, "smallest": table.smallest}
  evaluate = _probe_evaluator(loss, table, probes, teacher.params, eval_data, mesh, config)
  started = time.time()
  result = run_phases(
      [phase], initial_superlm(table, teacher, config), param_shardings=param_sh, mesh=mesh,
      train_data=train_data, workdir=directory / "train", seed=config.seed, eval_fn=evaluate,
      log=log, programs=loss.programs,
      options=RunOptions(checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                         eval_at_start=True, progress=config.progress))
  params = jax.device_get(result.params)
  _save(directory / "superlm", params)
  summary = {**identity, "envelope": {"config": dataclasses.asdict(env.config),
                                      "num_heads": env.num_heads, "head_size": env.head_size},
             "subnets": len(table), "evals": result.evals, "global_step": result.global_step,
             "seconds": round(time.time() - started, 1), "timings": result.timings,
             "relation_heads": relation_heads, "teacher_layer": layer}
  files.write_json(directory / SUMMARY_JSON, summary)
  log(f"supernet: SuperLM trained in {summary['seconds']:.0f} s; held-out relation loss "
      + ", ".join(f"{k} {v:.4f}" for k, v in result.evals.get("superlm", {}).items()))
  return SuperLM(table, params, summary, directory)


def _probe_evaluator(loss: Any, table: SubnetTable, probes: dict[str, int], teacher_params: Params,
                     eval_data: Any, mesh: Any, config: SuperLMConfig) -> Callable[..., Any]:
  """The trainer's ``eval_fn``: the held-out relation loss of a few subnets (largest, smallest)."""
  indices = np.asarray(list(probes.values()))

  def evaluate(params: Params) -> dict[str, float]:
    scores = held_out_scores(loss, params, teacher_params, table, indices, eval_data, mesh,
                             config.eval_batches)
    return {f"relation_{name}": float(s) for name, s in zip(probes, scores)}

  return evaluate


def _save(target: pathlib.Path, params: Params) -> None:
  if target.exists():  # a kill between the save and the summary: save again
    shutil.rmtree(target)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(target.absolute(), params)


_RETRAIN = "delete {directory} and run the supernet command again: the SuperLM is trained anew"


def load_superlm(directory: str | os.PathLike,
                 expect: Optional[dict[str, Any]] = None) -> Optional[SuperLM]:
  """The trained SuperLM in ``directory``, or None if training has not finished there.

  Args:
    expect: the space, teacher and recipe it must have been trained with (None: any).

  Raises:
    IncompatibleSuperLMError: it was trained with other ones (the message says what differs).
    CorruptFileError: its files cannot be read.
  """
  directory = pathlib.Path(directory)
  if not (directory / SUMMARY_JSON).is_file():
    return None
  fix = _RETRAIN.format(directory=directory)
  summary = files.read_json(directory / SUMMARY_JSON, fix=fix)
  if expect is not None:
    differ = sorted(k for k in expect if summary.get(k) != expect[k])
    if differ:
      raise IncompatibleSuperLMError(
          f"{directory} holds a SuperLM trained with another {' and '.join(differ)}; use "
          f"another --workdir, or {fix}.")
  space = Space.from_dict(summary["space"])
  env = summary["envelope"]
  envelope = Envelope(StudentConfig.from_dict(env["config"]), env["num_heads"],
                      env["head_size"])
  t = summary["teacher"]
  students = space.architectures(vocab_size=t["vocab_size"],
                                 max_position_embeddings=t["max_position_embeddings"],
                                 type_vocab_size=t["type_vocab_size"])
  table = SubnetTable.build(students, summary["relation_heads"], envelope)
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      params = checkpointer.restore((directory / "superlm").absolute(),
                                    _abstract(envelope))
  except Exception as error:  # pylint: disable=broad-except
    raise damaged(directory / "superlm", error, fix, what="an Orbax checkpoint") from error
  return SuperLM(table, jax.device_get(params), summary, directory)


def _abstract(envelope: Envelope) -> Params:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                      envelope.abstract_params())

