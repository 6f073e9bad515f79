"""AutoDistil's SuperLM (Xu et al. 2022): one weight-sharing model per sub-space, trained once.

AutoDistil splits the Transformer space into K compact sub-spaces and trains one *SuperLM* per
sub-space, task-agnostically, with MiniLM-v2's self-attention relation distillation
(``autodistil-2022-slides.txt``: "(2) Task-agnostic super language model training", "(3)
Self-attention relation distillation"). Every subnet shares the SuperLM's weights, so the
search afterwards scores students without training any of them (:mod:`.search`).

The SuperLM here is the elastic student of :mod:`autodistill.models.elastic` at the sub-space's
largest shape. A subnet is its leading slices (the first L blocks, the first d channels, the
first h heads of the first ``attention_head_size`` features, the first ``mlp_ratio * d`` FFN
units), with LayerNorm over the active channels only; it is data (an
:class:`~autodistill.models.layers.ElasticArch`), so training and scoring every subnet run one
compiled program.

One training step (:meth:`SuperLMLoss.__call__`):

1. the teacher's queries, keys and values at ``teacher_layer`` (its last by default, MiniLM-v2's
   choice for base-size teachers) on the batch;
2. ``subnets_per_step`` subnets drawn from the table: ``"uniform"`` at random, or the sandwich
   rule (largest + smallest + random ones; Yu & Huang 2019, used by weight-sharing NAS);
3. each subnet's loss: the sum over Q, K and V of KL(teacher relation || subnet relation) with
   ``relation_heads`` relation heads (:func:`~autodistill.distill.losses.assigned_relation_kl`),
   between the teacher layer and the subnet's *last* block;
4. the mean over the drawn subnets; LAMB on the shared encoder weights.

The relations are those of the last block's attention, which comes before that block's FFN (as
in MiniLM), so the last block's FFN gets no gradient and no say in a subnet's score: subnets
that differ only in it (in a 1-block subnet, its only FFN) score the same.

The draw is a function of the step's key (``fold_in(fold_in(seed, phase), step)``), so a run
killed and resumed draws the same subnets and reproduces the uninterrupted run. The trainer is
the project's one trainer (:func:`~autodistill.train.loop.run_phases`): Orbax checkpoints,
metrics, progress and held-out evaluation like every other phase.

What is our reading, not the seed's: the sandwich rule as the default sampler (AutoDistil's
slides do not say how subnets are drawn), dropout as the students' own rates, near-equal
relation-head chunks where R does not divide a subnet's attention width, and no MLM head
training (the SuperLM's objective is the relation loss alone).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from autodistill.distill import losses
from autodistill.models.configs import BertConfig, StudentConfig
from autodistill.models.elastic import Envelope
from autodistill.models.params import analytic_param_count
from autodistill.models.student import StudentEncoder
from autodistill.models.teacher import BertEncoder
from autodistill.progress import progress_bar
from autodistill.train.optimizers import OptimizerConfig

Params = Any

SAMPLINGS = ("sandwich", "uniform")
# Subnets scored together in one vmapped call (the last group is padded by repetition).
CHUNK = 16


@dataclasses.dataclass(frozen=True)
class SuperLMConfig:
  """How a SuperLM is trained and its subnets scored.

  Attributes:
    steps: optimizer steps of SuperLM training.
    sampling: ``"sandwich"`` (largest + smallest + random subnets every step) or ``"uniform"``.
    subnets_per_step: subnets drawn per step (the sandwich rule needs at least 2).
    relation_heads: R of MiniLM-v2's relations; 0 takes the teacher's attention-head count.
    teacher_layer: the teacher layer (1-based) whose relations every subnet's last block
      learns; 0 is the last.
    optimizer: LAMB and its schedule (warm-up from ``warmup_steps``).
    warmup_steps: linear warm-up steps.
    seed: initialisation and sampling seed.
    eval_batches: held-out batches each subnet is scored on (0: the whole held-out split).
    checkpoint_every, log_every, progress: the trainer's cadence and progress bar.
    mesh_shape: (data, model) mesh; -1 takes the remaining devices.
  """

  steps: int = 300
  sampling: str = "sandwich"
  subnets_per_step: int = 3
  relation_heads: int = 0
  teacher_layer: int = 0
  optimizer: OptimizerConfig = OptimizerConfig(learning_rate=1e-3, weight_decay=0.01)
  warmup_steps: int = 30
  seed: int = 0
  eval_batches: int = 4
  checkpoint_every: int = 100
  log_every: int = 25
  progress: bool = True
  mesh_shape: tuple[int, int] = (-1, 1)

  def __post_init__(self):
    if self.sampling not in SAMPLINGS:
      raise ValueError(f"supernet.sampling={self.sampling!r} is not one of {SAMPLINGS}.")
    minimum = 2 if self.sampling == "sandwich" else 1
    if self.subnets_per_step < minimum:
      raise ValueError(f"supernet.subnets_per_step={self.subnets_per_step}: the "
                       f"{self.sampling} rule needs at least {minimum}.")
    for name in ("steps", "checkpoint_every", "log_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"supernet.{name} must be positive, got {getattr(self, name)}.")
    for name in ("relation_heads", "teacher_layer", "warmup_steps", "eval_batches"):
      if getattr(self, name) < 0:
        raise ValueError(f"supernet.{name} must be >= 0, got {getattr(self, name)}.")

  def relation_heads_for(self, teacher: BertConfig) -> int:
    return self.relation_heads or teacher.num_heads

  def teacher_layer_for(self, teacher: BertConfig) -> int:
    """The teacher layer (1-based) the subnets learn from."""
    layer = self.teacher_layer or teacher.num_layers
    if layer > teacher.num_layers:
      raise ValueError(f"supernet.teacher_layer={layer} exceeds the teacher's "
                       f"{teacher.num_layers} layers; use 1..{teacher.num_layers} or 0 (last).")
    return layer


@dataclasses.dataclass(frozen=True)
class SubnetTable:
  """Every subnet of a sub-space as stacked arrays: what the compiled programs take as data.

  Attributes:
    students: the subnets' architectures, in the space's point order.
    envelope: the SuperLM's shape (the largest subnet).
    arrays: ``arch`` (an :class:`~autodistill.models.layers.ElasticArch` whose leaves have a
      leading subnet axis), ``assignment`` [N, A, R] and ``widths`` [N, R] (each subnet's
      relation heads, :func:`~autodistill.distill.losses.relation_assignment`) and ``last``
      [N] (the index of its last block).
    largest, smallest: the indices of the subnets with the most and the fewest parameters.
  """

  students: tuple[StudentConfig, ...]
  envelope: Envelope
  arrays: dict[str, Any]
  largest: int
  smallest: int

  @classmethod
  def build(cls, students: Sequence[StudentConfig], relation_heads: int,
            envelope: Optional[Envelope] = None) -> "SubnetTable":
    """The table of ``students`` in ``envelope`` (default: their own envelope).

    Raises:
      ValueError: the students cannot share an envelope (say, they differ in normalisation), or
        a subnet's attention width is narrower than ``relation_heads``.
    """
    students = tuple(students)
    envelope = envelope or Envelope.of(students)
    archs, assignments, widths = [], [], []
    for s in students:
      archs.append(envelope.arch(s))
      a, w = losses.relation_assignment(s.num_heads, s.head_size, relation_heads,
                                        envelope.num_heads, envelope.head_size)
      assignments.append(a)
      widths.append(w)
    arrays = {"arch": jax.tree.map(lambda *xs: np.stack(xs), *archs),
              "assignment": np.stack(assignments), "widths": np.stack(widths),
              "last": np.asarray([s.num_blocks - 1 for s in students], np.int32)}
    sizes = [analytic_param_count(s, heads=False) for s in students]
    return cls(students, envelope, arrays, int(np.argmax(sizes)), int(np.argmin(sizes)))

  def __len__(self) -> int:
    return len(self.students)

  def rows(self, indices: np.ndarray) -> dict[str, Any]:
    """The arrays of the subnets at ``indices`` (host NumPy)."""
    return jax.tree.map(lambda x: x[indices], self.arrays)


def _stacked_qkv(variables: Params, num_blocks: int, scan: bool) -> tuple[jax.Array, ...]:
  """q, k, v of every block, each [blocks, batch, S, heads, head size]."""
  inter = variables["intermediates"]
  if scan:
    return inter["blocks"]["attention"]["qkv"][0]
  per_block = [inter[f"block_{i}"]["attention"]["qkv"][0] for i in range(num_blocks)]
  return tuple(jnp.stack(xs) for xs in zip(*per_block))


def _teacher_qkv(encoder: BertEncoder, teacher_params: Params, batch: dict[str, jax.Array],
                layer: int) -> tuple[jax.Array, ...]:
  """The teacher's q, k, v at ``layer`` (1-based) on ``batch``, gradients stopped."""
  _, variables = encoder.apply({"params": teacher_params["encoder"]}, batch["input_ids"],
                               batch["segment_ids"], batch["input_mask"],
                               mutable=["intermediates"])
  qkv = variables["intermediates"][f"layer_{layer - 1}"]["attention"]["qkv"][0]
  return tuple(jax.lax.stop_gradient(x) for x in qkv)


class SuperLMLoss:
  """The SuperLM's training loss and held-out score for one envelope, teacher and recipe.

  One instance per (envelope, teacher, recipe) in a process (:func:`superlm_loss`), so the
  jitted programs kept in :attr:`programs` are found again by a resumed or repeated run.
  """

  def __init__(self, envelope: Envelope, teacher_config: BertConfig, relation_heads: int,
               teacher_layer: int, sampling: str, subnets_per_step: int,
               scan_blocks: bool = False):
    self.envelope, self.teacher_config = envelope, teacher_config
    self.sampling, self.subnets_per_step = sampling, subnets_per_step
    self.teacher_layer, self.scan = teacher_layer, scan_blocks
    self.encoder = StudentEncoder(envelope.config, scan_blocks=scan_blocks,
                                  attention_shape=(envelope.num_heads, envelope.head_size))
    self.t_encoder = BertEncoder(teacher_config)
    assignment, widths = losses.relation_assignment(
        teacher_config.num_heads, teacher_config.head_size, relation_heads)
    self.teacher_heads = (assignment, widths)
    self.programs: dict[Any, Any] = {}

  def draw(self, rng: jax.Array, table: dict[str, Any]) -> jax.Array:
    """The indices of this step's subnets (``table["largest"]`` and ``["smallest"]`` first
    under the sandwich rule)."""
    count = table["last"].shape[0]
    randoms = self.subnets_per_step - (2 if self.sampling == "sandwich" else 0)
    drawn = jax.random.randint(rng, (randoms,), 0, count)
    if self.sampling == "uniform":
      return drawn
    return jnp.concatenate([jnp.stack([table["largest"], table["smallest"]]), drawn])

  def subnet_losses(self, encoder_params: Params, batch: dict[str, jax.Array],
                    t_qkv: tuple[jax.Array, ...], rows: dict[str, Any],
                    rng: Optional[jax.Array]) -> jax.Array:
    """The relation loss of each subnet in ``rows`` (leading axis: subnet) on ``batch``."""
    mask = batch["input_mask"]
    count = rows["last"].shape[0]
    keys = (jax.random.split(rng, count) if rng is not None
            else jnp.zeros((count, 2), jnp.uint32))

    def one(row, key):
      _, variables = self.encoder.apply(
          {"params": encoder_params}, batch["input_ids"], batch["segment_ids"], mask,
          deterministic=rng is None, rngs={"dropout": key}, mutable=["intermediates"],
          arch=row["arch"])
      qkv = _stacked_qkv(variables, self.envelope.config.num_blocks, self.scan)
      last = tuple(x[row["last"]] for x in qkv)
      return losses.assigned_relation_kl(t_qkv, last, mask, self.teacher_heads,
                                         (row["assignment"], row["widths"]))

    return jax.vmap(one)(rows, keys)

  def __call__(self, params: Params, batch: dict[str, jax.Array], rng: jax.Array,
               context: dict[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One step's loss (the trainer's ``loss_fn``): the mean over the drawn subnets."""
    draw_key, dropout_key = jax.random.split(rng)
    table = context["subnets"]
    picked = self.draw(draw_key, table)
    rows = {k: jax.tree.map(lambda x: x[picked], table[k])
            for k in ("arch", "assignment", "widths", "last")}
    t_qkv = self.teacher_qkv(context["teacher"], batch)
    per_subnet = self.subnet_losses(params["encoder"], batch, t_qkv, rows, dropout_key)
    metrics = {"relation": jnp.mean(per_subnet)}
    if self.sampling == "sandwich":
      metrics.update(largest=per_subnet[0], smallest=per_subnet[1])
    return jnp.mean(per_subnet), metrics

  def teacher_qkv(self, teacher_params: Params, batch: dict[str, jax.Array]
                  ) -> tuple[jax.Array, ...]:
    """The teacher's q, k, v at the distilled layer on ``batch``, gradients stopped."""
    return _teacher_qkv(self.t_encoder, teacher_params, batch, self.teacher_layer)


@functools.lru_cache(maxsize=4)
def superlm_loss(envelope: Envelope, teacher_config: BertConfig, relation_heads: int,
                 teacher_layer: int, sampling: str, subnets_per_step: int) -> SuperLMLoss:
  """The :class:`SuperLMLoss` of these settings, made once per process."""
  return SuperLMLoss(envelope, teacher_config, relation_heads, teacher_layer, sampling,
                     subnets_per_step)


def context_table(table: SubnetTable) -> dict[str, Any]:
  """The table as the step's context data (with the sandwich rule's two indices)."""
  return {**{k: table.arrays[k] for k in ("arch", "assignment", "widths", "last")},
          "largest": np.int32(table.largest), "smallest": np.int32(table.smallest)}


def held_out_scores(loss: Any, params: Params, teacher_params: Params, table: SubnetTable,
                    indices: np.ndarray, eval_data: Any, mesh: Any, max_batches: int,
                    progress: bool = False) -> np.ndarray:
  """The mean held-out relation loss of the subnets at ``indices`` over the first
  ``max_batches`` held-out batches (0: all): one teacher forward per batch, the subnets
  ``CHUNK`` at a time through one compiled program."""
  if "score" not in loss.programs:
    loss.programs["score"] = (
        jax.jit(lambda tp, batch: loss.teacher_qkv(tp, batch)),
        jax.jit(lambda p, batch, t, rows: loss.subnet_losses(p["encoder"], batch, t, rows,
                                                             None)))
  teacher_fn, subnet_fn = loss.programs["score"]
  params, teacher_params = jax.device_put((params, teacher_params))
  indices = np.asarray(indices)
  padded = np.concatenate([indices, np.repeat(indices[-1:], -len(indices) % CHUNK)])
  groups = [table.rows(padded[i:i + CHUNK]) for i in range(0, len(padded), CHUNK)]
  eval_data.reset()
  stream = eval_data.device_batches(mesh)
  batches = list(itertools.islice(stream, max_batches) if max_batches else stream)
  stream.close()  # stops the pipeline's prefetch thread now, not at garbage collection
  totals = np.zeros(len(padded))
  steps = [(b, g) for b in range(len(batches)) for g in range(len(groups))]
  bar = progress_bar(total=len(steps), desc="scoring subnets", unit="call", enabled=progress)
  t_qkv = None
  for b, g in steps:
    if g == 0:
      t_qkv = teacher_fn(teacher_params, batches[b])
    scores = subnet_fn(params, batches[b], t_qkv, groups[g])
    totals[g * CHUNK:(g + 1) * CHUNK] += np.asarray(scores)
    bar.update(1)
  bar.close()
  return totals[:len(indices)] / max(len(batches), 1)
