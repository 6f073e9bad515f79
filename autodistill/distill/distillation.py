"""Flash and Regular Distillation (paper sections 3.3 and 4.1) on the one trainer.

:func:`distill` grows a student from a teacher:

1. **Initialisation** (section 3.3.2): random blocks; the embedding layer copied from the teacher
   and resampled to the student's widths (:mod:`autodistill.distill.initialization`); a learned
   projection per block where the student's hidden size differs from the teacher's.
2. **Progressive knowledge transfer** (section 3.3.3): K stages; stage k trains block k and its
   projection on ``mha_weight · L_MHA^k + fm_weight · L_FM^k`` (eqs. 1-2, or MiniLM relations)
   against the teacher layer mapped to block k, with the embedding and every other block frozen.
   By default the K stages are one compiled step, the stage index and the block mask passed as
   data (``progressive_program="shared"``); ``"per_block"`` compiles one pruned step per stage.
3. **Pre-training distillation**: every student parameter trains on L_D (eq. 3).

The teacher runs forward only, inside each step, on its own parameters passed as an argument and
under ``stop_gradient``. The held-out MLM and NSP accuracy at the end (and at step 0, and after
progressive transfer) is what the search optimises.

The recipe (presets of section 4.1, step plans, :class:`DistillConfig`) is in
:mod:`autodistill.distill.recipe`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from autodistill import files, sharding
from autodistill.distill import losses
from autodistill.distill.evaluation import held_out_predictions, make_pretraining_evaluator
from autodistill.distill.initialization import (FeatureProjections, init_projections,
                                                init_student_from_teacher, layer_mapping)
from autodistill.distill.recipe import DistillConfig, StepPlan
from autodistill.errors import damaged
from autodistill.models import hf
from autodistill.models.configs import BertConfig, StudentConfig
from autodistill.models.elastic import Envelope, pad_tree
from autodistill.models.student import (StudentEncoder, StudentForPreTraining, stack_blocks,
                                        unstack_blocks)
from autodistill.models.teacher import BertEncoder, BertForPreTraining
from autodistill.timing import Stopwatch, describe
from autodistill.train import Phase, RunOptions, RunResult, place, run_phases

Params = Any


@dataclasses.dataclass
class DistillResult:
  """A distilled student: its parameters and held-out accuracy by phase."""

  student: StudentConfig
  params: Params
  evals: dict[str, dict[str, float]]
  plan: StepPlan
  workdir: pathlib.Path
  seconds: float
  resumed_from: Optional[int] = None
  timings: dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def final(self) -> dict[str, float]:
    """The held-out evaluation at the end (:func:`final_evals`)."""
    return final_evals(self.evals)

  @property
  def mlm_accuracy(self) -> float:
    return self.final.get("mlm_accuracy", float("nan"))

  @property
  def nsp_accuracy(self) -> float:
    return self.final.get("nsp_accuracy", float("nan"))


def final_evals(evals: dict[str, dict[str, float]]) -> dict[str, float]:
  """The evaluation at the end of a run from its ``evals`` (``DistillResult.evals`` or
  ``result.json``'s): the last phase's ("pretraining_distillation" for the paper's recipe,
  "multi_layer_distillation" for KD-NAS's), {} if the run did not get that far."""
  for phase in FINAL_PHASES:
    if phase in evals:
      return evals[phase]
  return {}


# The phase that ends a run, by objective.
FINAL_PHASES = ("pretraining_distillation", "multi_layer_distillation")


def _relation_heads(config: DistillConfig, teacher: BertConfig, student: StudentConfig) -> int:
  if config.relation_heads is not None:
    return config.relation_heads
  widths = math.gcd(teacher.num_heads * teacher.head_size, student.num_heads * student.head_size)
  return max(r for r in range(1, 13) if widths % r == 0)


def _qkv(intermediates: Params, layer: str) -> tuple[jax.Array, ...]:
  return intermediates["intermediates"][layer]["attention"]["qkv"][0]


def _pick(items: Sequence[Any], index: Any) -> Any:
  """``items[index]`` for a Python index; for a traced one, the same from the stacked items
  (every item a like-shaped array, or a like-shaped tuple of arrays)."""
  if isinstance(index, int):
    return items[index]
  return jax.tree.map(lambda *xs: jnp.stack(xs)[index], *items)


def _check_teacher(teacher: Any) -> None:
  missing = [c for c in ("mlm_head", "nsp_head") if c not in teacher.params]
  if missing or "pooler" not in teacher.params.get("encoder", {}):
    raise ValueError(
        f"the teacher lacks {', '.join(missing) or 'a pooler'}; pre-training distillation (eq. 3) "
        "needs its MLM and NSP heads. Fit them first with autodistill.distill.prepare_teacher "
        "(the MiniLM teacher ships without heads).")


@dataclasses.dataclass(frozen=True)
class _Recipe:
  """The fields of a :class:`DistillConfig` that the loss functions compute with."""

  dtype: str
  attention_loss: str
  alpha: float
  temperature: float
  mha_weight: float
  fm_weight: float
  nsp_weight: float
  scan_blocks: bool
  hidden_weight: float
  logits_weight: float

  @classmethod
  def of(cls, config: DistillConfig, num_blocks: int) -> "_Recipe":
    """The recipe of ``config`` for a model (student or envelope) of ``num_blocks`` blocks."""
    return cls(config.dtype, config.attention_loss, config.alpha, config.temperature,
               config.mha_weight, config.fm_weight,
               1.0 if config.nsp_weight is None else float(config.nsp_weight),
               config.scans(num_blocks), config.hidden_weight, config.logits_weight)


def _any_block(path: tuple[str, ...]) -> bool:
  return (path[:2] == ("student", "encoder") and path[2].startswith("block")
          or path[0] == "projections")


def _trains_block(k: int, num_blocks: int, path: tuple[str, ...]) -> Any:
  """Whether stage k trains the leaf at ``path``: a bool, or for a leaf of stacked blocks
  (``encoder/blocks``, ``scan_blocks``) one bool per block (the trainer's per-block mask)."""
  if path[:3] == ("student", "encoder", "blocks") or path[:2] == ("projections", "blocks"):
    return np.arange(num_blocks) == k
  return (path[:3] == ("student", "encoder", f"block_{k}")
          or path[:2] == ("projections", f"block_{k}"))


def _is_student(path: tuple[str, ...]) -> bool:
  return path[0] == "student"


class _Losses:
  """The loss functions of :func:`distill`'s phases for one model shape, teacher and recipe.

  For an elastic envelope one instance serves every student (:func:`_elastic_losses`), and
  otherwise one every run of the same student (:func:`_student_losses`): the functions are the
  same objects, so the jitted steps kept in :attr:`programs` are found again and nothing is
  traced or compiled twice. The student is then data, ``context["elastic"]``
  (:func:`elastic_selection`), its teacher layer per block included. Every loss reads the
  teacher's parameters from ``context["teacher"]``.
  """

  def __init__(self, shape: StudentConfig, attention_shape: Optional[tuple[int, int]],
               teacher_config: BertConfig, recipe: _Recipe, mapping: Optional[tuple[int, ...]],
               relation_heads: int):
    dtype = jnp.dtype(recipe.dtype)
    scan = dict(scan_blocks=recipe.scan_blocks)
    self.elastic = mapping is None
    self.mapping, self.recipe, self.relation_heads = mapping, recipe, relation_heads
    self.teacher_layers, self.num_blocks = teacher_config.num_layers, shape.num_blocks
    self.s_encoder = StudentEncoder(shape, dtype=dtype, attention_shape=attention_shape, **scan)
    self.t_encoder = BertEncoder(teacher_config, dtype=dtype)
    self.s_model = StudentForPreTraining(shape, dtype=dtype, attention_shape=attention_shape,
                                         **scan)
    self.t_model = BertForPreTraining(teacher_config, dtype=dtype)
    self.projections = FeatureProjections(shape.hidden_size, teacher_config.hidden_size,
                                          shape.num_blocks)
    self._per_block: dict[int, tuple[Callable[..., Any], Callable[..., bool]]] = {}
    # Jitted train and evaluation steps of the runs using these functions, by program.
    self.programs: dict[Any, Any] = {}

  def _select(self, selection: Optional[Params]) -> dict[str, Any]:
    return {"arch": selection["arch"]} if self.elastic else {}

  def _attention_loss(self, teacher_probs, student_probs, mask, selection):
    if not self.elastic:
      return losses.attention_kl(teacher_probs, student_probs, mask)
    groups = selection["head_groups"]
    return losses.grouped_attention_kl(teacher_probs, student_probs, mask, groups["teacher"],
                                       groups["student"], groups["groups"])

  def stage_loss(self, params, batch, rng, context, k):
    """Stage k's loss (eqs. 1-2); ``k`` a Python int or, in the shared program, traced."""
    teacher, selection = context["teacher"], context.get("elastic")
    if self.elastic:
      layer = selection["teacher_layers"][k]
    else:
      layer = self.mapping[k] if isinstance(k, int) else jnp.asarray(self.mapping, jnp.int32)[k]
    relation = self.recipe.attention_loss == "relation"
    mutable = ["intermediates"] if relation else False
    ids, segments, mask = batch["input_ids"], batch["segment_ids"], batch["input_mask"]
    t_out = self.t_encoder.apply({"params": teacher["encoder"]}, ids, segments, mask,
                                 mutable=mutable)
    s_out = self.s_encoder.apply({"params": params["student"]["encoder"]}, ids, segments, mask,
                                 deterministic=False, rngs={"dropout": rng}, mutable=mutable,
                                 **self._select(selection))
    if relation:
      (t_out, t_vars), (s_out, s_vars) = t_out, s_out
      t_qkv = [_qkv(t_vars, f"layer_{i}") for i in range(self.teacher_layers)]
      if self.recipe.scan_blocks:  # q, k, v of every block, stacked
        s_block = tuple(x[k] for x in _qkv(s_vars, "blocks"))
      else:
        s_block = _pick([_qkv(s_vars, f"block_{i}") for i in range(self.num_blocks)], k)
      mha = losses.attention_relation_kl(jax.lax.stop_gradient(_pick(t_qkv, layer - 1)),
                                         s_block, mask, self.relation_heads)
    else:
      mha = self._attention_loss(jax.lax.stop_gradient(_pick(t_out.attentions, layer - 1)),
                                 _pick(s_out.attentions, k), mask, selection)
    features = _pick(s_out.hidden_states, k + 1)
    if self.projections.needed:
      # Block k's projection: the stacked kernels indexed by k under the one module's code.
      if self.recipe.scan_blocks:
        block = jax.tree.map(lambda x: x[k], params["projections"]["blocks"])
      else:
        block = _pick([params["projections"][f"block_{i}"] for i in range(self.num_blocks)], k)
      features = self.projections.apply({"params": {"block_0": block}}, features, 0)
    fm = losses.feature_map_mse(jax.lax.stop_gradient(_pick(t_out.hidden_states, layer)),
                                features, mask)
    loss = self.recipe.mha_weight * mha + self.recipe.fm_weight * fm
    return loss, {"mha": mha, "fm": fm}

  def shared_stage_loss(self, params, batch, rng, context):
    return self.stage_loss(params, batch, rng, context, context["stage"])

  def block(self, k: int) -> tuple[Callable[..., Any], Callable[..., bool]]:
    """Stage k's own loss (the per-block program) and trainable predicate, made once."""
    if k not in self._per_block:
      trainable = functools.partial(_trains_block, k, self.num_blocks)
      self._per_block[k] = (functools.partial(_per_block_loss, self.stage_loss, k), trainable)
    return self._per_block[k]

  def _pretraining_forwards(self, params, batch, rng, context):
    """The teacher's and the student's forward with heads, logits at the masked positions."""
    args = (batch["input_ids"], batch["segment_ids"], batch["input_mask"])
    positions = batch["masked_lm_positions"]
    t_out = self.t_model.apply({"params": context["teacher"]}, *args, masked_positions=positions)
    s_out = self.s_model.apply({"params": params["student"]}, *args, masked_positions=positions,
                               deterministic=False, rngs={"dropout": rng},
                               **self._select(context.get("elastic")))
    return t_out, s_out

  def _eq3(self, t_out, s_out, batch):
    return losses.pretraining_distill_loss(
        s_out.mlm_logits, jax.lax.stop_gradient(t_out.mlm_logits), s_out.nsp_logits, batch,
        alpha=self.recipe.alpha, temperature=self.recipe.temperature,
        nsp_weight=self.recipe.nsp_weight)

  def pretraining_loss(self, params, batch, rng, context):
    """Eq. 3 on the masked positions."""
    terms = self._eq3(*self._pretraining_forwards(params, batch, rng, context), batch)
    loss = terms.pop("loss")
    return loss, terms

  def multi_layer_loss(self, params, batch, rng, context):
    """KD-NAS's objective: hidden_weight x L_HS (every block against its teacher layer,
    :func:`losses.multi_layer_hidden_mse`) + logits_weight x eq. 3, in one forward each."""
    selection, mask = context.get("elastic"), batch["input_mask"]
    t_out, s_out = self._pretraining_forwards(params, batch, rng, context)
    if self.elastic:  # the envelope's blocks the student lacks do not count
      layers, on = selection["teacher_layers"], selection["arch"].blocks
    else:
      layers, on = jnp.asarray(self.mapping, jnp.int32), None
    t_states = jax.lax.stop_gradient(jnp.stack(t_out.hidden_states))[layers]
    hidden = losses.multi_layer_hidden_mse(
        t_states, self._project_all(params, jnp.stack(s_out.hidden_states[1:])), mask, on)
    terms = self._eq3(t_out, s_out, batch)
    loss = self.recipe.hidden_weight * hidden + self.recipe.logits_weight * terms.pop("loss")
    return loss, {"hidden": hidden, **terms}

  def _project_all(self, params, states):
    """Every block's states [K, batch, S, student width] in the teacher's width (section 3.3.2's
    projection of each block, stacked)."""
    if not self.projections.needed:
      return states
    if self.recipe.scan_blocks:
      blocks = params["projections"]["blocks"]
    else:
      blocks = jax.tree.map(lambda *xs: jnp.stack(xs), *[
          params["projections"][f"block_{k}"] for k in range(self.num_blocks)])
    return (jnp.einsum("kbsh,khn->kbsn", states, blocks["kernel"].astype(states.dtype))
            + blocks["bias"][:, None, None, :].astype(states.dtype))

  def apply_fn(self, params, ids, segments, mask, positions):
    """The student's forward for held-out evaluation (an elastic student's selection in
    ``params["elastic"]``)."""
    return self.s_model.apply({"params": params["student"]}, ids, segments, mask,
                              masked_positions=positions, **self._select(params.get("elastic")))


# The loss functions, and with them the compiled programs of their runs, are kept for the last
# few students (and envelopes) in this process: a student distilled again (a search's flash trial,
# then finalize's flash and regular runs; a resumed trial) is not traced or compiled again. The
# logical-axis rules are part of the key because the programs' shardings follow them.
@functools.lru_cache(maxsize=4)
def _elastic_losses(envelope: Envelope, teacher_config: BertConfig, recipe: _Recipe,
                    rules: tuple) -> _Losses:
  del rules  # only keys the cache
  shape, attention_shape = _model_shape(envelope.config, envelope)
  return _Losses(shape, attention_shape, teacher_config, recipe, None, 0)


@functools.lru_cache(maxsize=8)
def _student_losses(student: StudentConfig, teacher_config: BertConfig, recipe: _Recipe,
                    mapping: tuple[int, ...], relation_heads: int, rules: tuple) -> _Losses:
  del rules  # only keys the cache
  return _Losses(student, None, teacher_config, recipe, mapping, relation_heads)


def _losses_for(student: StudentConfig, teacher_config: BertConfig, config: DistillConfig,
                envelope: Optional[Envelope],
                rules: Sequence = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> _Losses:
  rules = tuple(tuple(rule) for rule in rules)
  if envelope is not None:
    return _elastic_losses(envelope, teacher_config,
                           _Recipe.of(config, envelope.config.num_blocks), rules)
  relation = config.attention_loss == "relation"
  return _student_losses(student, teacher_config, _Recipe.of(config, student.num_blocks),
                         tuple(layer_mapping(student.num_blocks, teacher_config.num_layers,
                                             config.layer_mapping)),
                         _relation_heads(config, teacher_config, student) if relation else 0,
                         rules)


def distillation_phases(student: StudentConfig, teacher_config: BertConfig, teacher_params: Params,
                        config: DistillConfig, teacher_shardings: Any = None,
                        envelope: Optional[Envelope] = None,
                        loss_fns: Optional[_Losses] = None) -> list[Phase]:
  """The phases of :func:`distill`: K progressive stages, then pre-training distillation.

  With ``envelope``, the student is trained inside the elastic envelope model
  (:mod:`autodistill.models.elastic`): the parameters are the envelope's, and the student is the
  data in each phase's ``context["elastic"]`` (:func:`elastic_selection`), so every student of
  the envelope runs these phases' compiled programs.
  """
  plan = config.plan(student.num_blocks)
  fns = loss_fns or _losses_for(student, teacher_config, config, envelope)
  context = {"teacher": teacher_params}
  context_sh = None if teacher_shardings is None else {"teacher": teacher_shardings}
  if envelope is not None:
    context["elastic"] = elastic_selection(envelope, student, teacher_config, config)
    if context_sh is not None:
      rep = _replicated_like(teacher_shardings)
      context_sh["elastic"] = jax.tree.map(lambda _: rep, context["elastic"])
  phases = []
  if config.objective == "multi_layer":
    # One joint phase of the recipe's whole budget; the projections train with the student.
    return [Phase("multi_layer_distillation", plan.total_steps, fns.multi_layer_loss,
                  config.optimizer.replace(warmup_steps=plan.warmup_steps), None,
                  context=context, context_shardings=context_sh)]
  if config.progressive:
    stage_opt = config.optimizer.replace(warmup_steps=plan.steps_per_block // 10)
    for k in range(student.num_blocks):
      # Held-out accuracy is measured after the last stage (if asked), not after every block.
      last = config.evaluate_stages and k == student.num_blocks - 1
      name = f"progressive/block_{k}"
      block_loss, block_trainable = fns.block(k)
      if config.progressive_program == "shared":
        # One program for all stages: every block's parameters are trainable, the stage's mask
        # (data) picks block k, and the stage index is data in the context.
        phases.append(Phase(
            name, plan.steps_per_block, fns.shared_stage_loss, stage_opt, _any_block,
            context={**context, "stage": np.int32(k)},
            context_shardings=None if context_sh is None else {
                **context_sh, "stage": _replicated_like(teacher_shardings)},
            evaluate=last, mask=block_trainable))
      else:
        phases.append(Phase(
            name, plan.steps_per_block, block_loss, stage_opt, block_trainable,
            context=context, context_shardings=context_sh, evaluate=last))
  phases.append(Phase("pretraining_distillation", plan.pretrain_steps, fns.pretraining_loss,
                      config.optimizer.replace(warmup_steps=plan.warmup_steps), _is_student,
                      context=context, context_shardings=context_sh))
  return phases


def _replicated_like(shardings: Any) -> jax.sharding.NamedSharding:
  """Replicated over the mesh of ``shardings`` (NamedShardings)."""
  mesh = jax.tree.leaves(shardings)[0].mesh
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _per_block_loss(stage_loss: Callable[..., Any], k: int, params: Params, batch: Any,
                    rng: jax.Array, teacher: Params) -> Any:
  return stage_loss(params, batch, rng, teacher, k)


def initial_params(student: StudentConfig, teacher_config: BertConfig, teacher_params: Params,
                   config: DistillConfig, envelope: Optional[Envelope] = None,
                   start: Optional[Params] = None) -> Params:
  """``{"student": ..., "projections": ...}`` initialised from the teacher (section 3.3.2).

  With ``envelope``, the same values sit in the envelope's parameters (zero elsewhere), and
  the student's own parameters are :meth:`Envelope.extract` of them. With ``start`` (the
  student's own parameters, e.g. a subnet cut out of an AutoDistil SuperLM), the student starts
  from those instead; the feature projections are initialised from the teacher as always.
  """
  rng = jax.random.PRNGKey(config.seed)
  student_params = hf.init_params(student, jax.random.fold_in(rng, 0))
  student_params, m_h = init_student_from_teacher(student, student_params, teacher_config,
                                                  teacher_params, config.embedding_init)
  if start is not None:
    expected = jax.tree.map(lambda x: tuple(x.shape), hf.abstract_params(student))
    given = jax.tree.map(lambda x: tuple(np.shape(x)), dict(start))
    if given != expected:
      raise ValueError(f"the starting parameters do not fit {student.name}: pass the "
                       "parameters of that very architecture (load_distilled of its directory).")
    student_params = jax.device_get(start)
  projections = FeatureProjections(student.hidden_size, teacher_config.hidden_size,
                                   student.num_blocks)
  params = {"student": student_params,
            "projections": init_projections(projections, jax.random.fold_in(rng, 1), m_h)}
  if envelope is not None:
    check_envelope(envelope, student, teacher_config, config)
    wide = FeatureProjections(envelope.config.hidden_size, teacher_config.hidden_size,
                              envelope.config.num_blocks)
    params = {"student": envelope.embed(student, params["student"]),
              "projections": pad_tree(params["projections"], wide.abstract_params())}
  if config.scans(_model_shape(student, envelope)[0].num_blocks):
    params["student"] = stack_blocks(params["student"])
    if params["projections"]:  # block_k -> blocks, as the student's
      blocks = [params["projections"][f"block_{k}"] for k in range(len(params["projections"]))]
      params["projections"] = {"blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}
  return params


def _model_shape(student: StudentConfig, envelope: Optional[Envelope]
                 ) -> tuple[StudentConfig, Optional[tuple[int, int]]]:
  """The architecture the modules are built with, and its attention shape override."""
  if envelope is None:
    return student, None
  return envelope.config, (envelope.num_heads, envelope.head_size)


def check_envelope(envelope: Envelope, student: StudentConfig, teacher_config: BertConfig,
                   config: DistillConfig) -> None:
  """Raises ValueError, naming the reason, if ``student`` cannot be distilled in ``envelope``."""
  envelope.check(student)
  if config.attention_loss != "kl":
    raise ValueError(f"the elastic student distils with attention_loss='kl' (eq. 1) only, not "
                     f"{config.attention_loss!r}; distil without an envelope.")
  width = teacher_config.hidden_size
  if (student.hidden_size == width) != (envelope.config.hidden_size == width):
    raise ValueError(
        f"student {student.name} {'has' if student.hidden_size == width else 'lacks'} the "
        f"teacher's width {width}, so it {'has no' if student.hidden_size == width else 'needs'} "
        "feature projection (section 3.3.2) and the envelope disagrees; distil it without an "
        "envelope.")


def elastic_envelope(students: Sequence[StudentConfig], teacher_config: BertConfig,
                     config: DistillConfig) -> tuple[Optional[Envelope], str]:
  """The envelope all of ``students`` distil in, or (None, why not)."""
  try:
    envelope = Envelope.of(students)
    for student in students:
      check_envelope(envelope, student, teacher_config, config)
  except ValueError as error:
    return None, str(error)
  return envelope, ""


def elastic_selection(envelope: Envelope, student: StudentConfig, teacher_config: BertConfig,
                      config: DistillConfig) -> Params:
  """The data that picks ``student`` out of ``envelope`` in the distillation losses.

  ``arch``: the model's masks (:meth:`Envelope.arch`); ``head_groups``: eq. 1's head matching
  for this student's heads against the teacher's (:func:`losses.head_groups`);
  ``teacher_layers``: the teacher layer each block learns from in progressive transfer
  (:func:`layer_mapping`, padded with the last for blocks the student lacks).
  """
  max_groups = min(teacher_config.num_heads, envelope.num_heads)
  teacher, student_groups, groups = losses.head_groups(
      teacher_config.num_heads, student.num_heads, envelope.num_heads, max_groups)
  mapping = layer_mapping(student.num_blocks, teacher_config.num_layers, config.layer_mapping)
  padded = list(mapping) + [mapping[-1]] * (envelope.config.num_blocks - len(mapping))
  return {"arch": envelope.arch(student),
          "head_groups": {"teacher": teacher, "student": student_groups, "groups": groups},
          "teacher_layers": np.asarray(padded, np.int32)}


def distill(student: StudentConfig | str, teacher: Any, train_data: Any, eval_data: Any,
            workdir: str | os.PathLike, config: DistillConfig = DistillConfig(), *,
            mesh: Optional[jax.sharding.Mesh] = None,
            rules: Sequence = sharding.DEFAULT_LOGICAL_AXIS_RULES,
            log: Callable[[str], None] = print,
            envelope: Optional[Envelope] = None,
            start: Optional[Params] = None) -> DistillResult:
  """Distils ``student`` from ``teacher`` by the paper's recipe; resumes from ``workdir``.

  Args:
    student: the architecture (a :class:`StudentConfig` or a name like
      ``"Model_512_128_4_512_4"``).
    teacher: anything with ``.config`` (:class:`BertConfig`) and ``.params`` with MLM and NSP
      heads, e.g. the :class:`~autodistill.models.hf.Checkpoint` from
      :func:`~autodistill.distill.prepare_teacher`.
    train_data, eval_data: :class:`~autodistill.data.PretrainingData` pipelines (the batch size is
      the pipeline's; the presets' 2048 is the paper's).
    workdir: checkpoints, metrics, ``result.json`` and the final ``student/`` parameters.
    config: the recipe (``nsp_weight=None`` is decided for the teacher:
      :meth:`DistillConfig.for_teacher`).
    mesh: device mesh (default: ``config.mesh_shape`` over all devices).
    rules: logical-axis rules mapping parameters onto the mesh.
    log: progress messages.
    envelope: train the student inside this elastic envelope
      (:mod:`autodistill.models.elastic`), so every student of the envelope shares the compiled
      programs (a search passes its space's envelope). The result is the same student, to float
      rounding, except that dropout draws its masks over the envelope's shape. None: the
      student's own shapes.
    start: the student's starting parameters (say, a subnet extracted from a SuperLM) instead of
      the teacher-grown initialisation (:func:`initial_params`).

  Returns:
    A :class:`DistillResult` with held-out MLM/NSP accuracy at step 0 (``"init"``), after
    progressive transfer and after pre-training distillation.

  Raises:
    ValueError: the teacher has no heads, the student's vocabulary differs from the teacher's,
      or the student cannot run in ``envelope`` (:func:`check_envelope`).
    NonFiniteLossError: a loss became NaN/inf (the search marks such a trial infeasible).
  """
  if isinstance(student, str):
    student = StudentConfig.from_name(student)
  _check_teacher(teacher)
  config = config.for_teacher(teacher)
  workdir = pathlib.Path(workdir)
  watch = Stopwatch()
  with watch("setup"):
    result = _run(student, teacher, train_data, eval_data, workdir, config, mesh, rules, log,
                  watch, envelope, start)
  with watch("checkpoint"):
    student_params = result.params["student"]
    if config.scans(_model_shape(student, envelope)[0].num_blocks):
      student_params = unstack_blocks(jax.device_get(student_params))
    if envelope is not None:
      student_params = envelope.extract(student, jax.device_get(student_params))
    save_params(workdir / "student", student_params)
  plan = config.plan(student.num_blocks)
  timings = watch.rounded()
  _write_summary(workdir, student, result, plan, config, timings, envelope)
  log(f"{student.name}: time by part: {describe(timings)}")
  return DistillResult(student=student, params=student_params, evals=result.evals, plan=plan,
                       workdir=workdir, seconds=result.seconds, resumed_from=result.resumed_from,
                       timings=timings)


def _run(student: StudentConfig, teacher: Any, train_data: Any, eval_data: Any,
         workdir: pathlib.Path, config: DistillConfig, mesh: Optional[jax.sharding.Mesh],
         rules: Sequence, log: Callable[[str], None], watch: Stopwatch,
         envelope: Optional[Envelope], start: Optional[Params] = None) -> RunResult:
  """:func:`distill`'s set-up and training."""
  mesh = mesh or sharding.make_mesh(config.mesh_shape)
  plan = config.plan(student.num_blocks)
  steps = (f"{plan.total_steps} multi-layer hidden-state distillation steps"
           if config.objective == "multi_layer" else
           f"{plan.num_blocks} x {plan.steps_per_block} progressive + {plan.pretrain_steps} "
           "pre-training-distillation steps")
  log(f"distilling {student.name} from a {teacher.config.num_layers}-layer teacher: "
      f"{steps} ({config.preset}, scale {config.scale}), batch "
      f"{train_data.global_batch_size}, mesh {dict(mesh.shape)}"
      + ("" if config.nsp_weight else "; next-sentence prediction dropped (nsp_weight 0)"))
  if envelope is not None:
    log(f"in the elastic envelope ({envelope.describe()}): one set of compiled programs for "
        "all its students; the parameter counts below are the envelope's")

  teacher_sh = sharding.model_shardings(BertForPreTraining(teacher.config), mesh, rules)
  teacher_params = place(teacher.params, teacher_sh)
  shape, attention_shape = _model_shape(student, envelope)
  params = initial_params(student, teacher.config, teacher.params, config, envelope, start)
  rep = sharding.replicated(mesh)
  param_sh = {"student": sharding.model_shardings(
                  StudentForPreTraining(shape, attention_shape=attention_shape,
                                        scan_blocks=config.scans(shape.num_blocks)),
                  mesh, rules),
              "projections": jax.tree.map(lambda _: rep, params["projections"])}
  fns = _losses_for(student, teacher.config, config, envelope, rules)
  phases = distillation_phases(student, teacher.config, teacher_params, config, teacher_sh,
                               envelope, fns)
  eval_sh, selection = param_sh, None
  if envelope is not None:
    # The evaluation reads the student's selection beside the parameters it is given.
    eval_sh = {**param_sh, "elastic": jax.tree.map(lambda _: rep, phases[-1].context["elastic"])}
    selection = place(phases[-1].context["elastic"], eval_sh["elastic"])
  evaluate = make_pretraining_evaluator(fns.apply_fn, eval_data, mesh, eval_sh,
                                        programs=fns.programs)
  evaluator = evaluate if selection is None else (
      lambda p: evaluate({**p, "elastic": selection}))
  return run_phases(
      phases, params, param_shardings=param_sh, mesh=mesh, train_data=train_data,
      workdir=workdir, seed=config.seed, eval_fn=evaluator, log=log, stopwatch=watch,
      options=RunOptions(checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                         eval_at_start=config.eval_at_start,
                         keep_checkpoints=config.keep_checkpoints, progress=config.progress),
      programs=fns.programs)


def save_params(target: pathlib.Path, params: Params) -> None:
  """Saves student parameters as an Orbax checkpoint at ``target`` (kept if it exists)."""
  if not target.exists():
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(target.absolute(), params)


def _write_summary(workdir: pathlib.Path, student: StudentConfig, result: RunResult,
                   plan: StepPlan, config: DistillConfig, timings: dict[str, float],
                   envelope: Optional[Envelope]) -> None:
  summary = {
      "student": student.name, "student_config": dataclasses.asdict(student),
      "evals": result.evals, "plan": dataclasses.asdict(plan), "seconds": result.seconds,
      "timings": timings, "global_step": result.global_step, "preset": config.preset,
      "scale": config.scale, "nsp_weight": config.nsp_weight,
      "envelope": None if envelope is None else {
          "config": dataclasses.asdict(envelope.config), "num_heads": envelope.num_heads,
          "head_size": envelope.head_size},
  }
  files.write_json(workdir / "result.json", summary)


_REDISTIL = ("delete {workdir} and run the command that wrote it (distill, finalize or search) "
             "again: the student is distilled anew")


def load_distilled(workdir: str | os.PathLike) -> tuple[StudentConfig, Params, dict[str, Any]]:
  """(config, parameters, result summary) of a finished :func:`distill` run's workdir.

  Raises:
    CorruptFileError: ``result.json`` or the ``student/`` checkpoint cannot be read.
  """
  workdir = pathlib.Path(workdir)
  summary = files.read_json(workdir / "result.json", fix=_REDISTIL.format(workdir=workdir))
  config = StudentConfig.from_dict(summary["student_config"])
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      params = checkpointer.restore((workdir / "student").absolute())
  except Exception as error:  # pylint: disable=broad-except
    # Orbax and TensorStore raise many types for a truncated or emptied checkpoint file.
    raise damaged(workdir / "student", error, _REDISTIL.format(workdir=workdir),
                  what="an Orbax checkpoint") from error
  return config, params, summary


PREDICTIONS_FILE = "held_out_predictions.npz"


def distilled_predictions(workdir: str | os.PathLike, eval_data: Any,
                          mesh: Optional[jax.sharding.Mesh] = None) -> dict[str, np.ndarray]:
  """Per held-out masked prediction, the loss and correctness of a finished run's student
  (:func:`~autodistill.distill.evaluation.held_out_predictions`), cached in the run's
  ``held_out_predictions.npz``. Two students' arrays over the same split line up, so their
  difference can be judged paired (:func:`autodistill.search.fidelity.paired_standard_error`).

  The cache is the caller's to keep consistent: it is read back whatever ``eval_data`` is.
  """
  cache = pathlib.Path(workdir) / PREDICTIONS_FILE
  if cache.exists():
    with np.load(cache) as saved:
      return dict(saved)
  config, params, _ = load_distilled(workdir)
  model = StudentForPreTraining(config)
  out = held_out_predictions(
      lambda p, ids, seg, mask, pos: model.apply({"params": p}, ids, seg, mask,
                                                 masked_positions=pos),
      params, eval_data, mesh or sharding.make_mesh())
  np.savez(cache, **out)
  return out


def flash_distill(student: StudentConfig | str, teacher: Any, train_data: Any, eval_data: Any,
                  workdir: str | os.PathLike, scale: float = 1.0, **overrides) -> DistillResult:
  """:func:`distill` with the ``flash`` preset (12k + 25k steps at scale 1 for 24 blocks)."""
  config = DistillConfig(preset="flash", scale=scale, **overrides)
  return distill(student, teacher, train_data, eval_data, workdir, config)


def regular_distill(student: StudentConfig | str, teacher: Any, train_data: Any, eval_data: Any,
                    workdir: str | os.PathLike, scale: float = 1.0, **overrides) -> DistillResult:
  """:func:`distill` with the ``regular`` preset (240k + 500k steps at scale 1 for 24 blocks)."""
  config = DistillConfig(preset="regular", scale=scale, **overrides)
  return distill(student, teacher, train_data, eval_data, workdir, config)
