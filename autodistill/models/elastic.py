"""The elastic student: one max-shape, masked model that runs every student of a space.

A search trains many students of one space (paper section 3.2). Trained one by one, each student
is a new set of array shapes, so JAX traces and XLA compiles every program (initialisation,
progressive stage, pre-training distillation, evaluation) again for each of them. The elastic
student instead has the *envelope* shape of the space, the largest value of every factor, and a
student is data: an :class:`~autodistill.models.layers.ElasticArch` of masks and scalars passed
beside the batch. Every student of the space then runs the same compiled programs.

How a student sits in the envelope (:meth:`Envelope.embed`): each of its parameters fills the
leading corner of the envelope's parameter of the same name (query/key/value kernels
``[in, heads, head size]`` included), and everything else is zero, blocks and FFNs it lacks
included. The masked forward then equals the student's own forward:

* a dense layer reading zero-padded features through zero-padded rows adds nothing;
* norms run over the masked-in features only (:class:`~autodistill.models.layers.MaskedNorm`)
  and write zeros elsewhere;
* padded heads and head features are masked out of queries, keys and values, and the score scale
  is the student's ``head_size ** -0.5``;
* a block or FFN the student lacks passes its input through.

The gradients of the padding are exactly zero (every padded feature is multiplied by a zero mask
before it is read), and LAMB leaves a zero parameter with a zero gradient at zero; its trust
ratio takes norms that the zero padding does not change. So training the envelope trains the
student, step for step: ``tests/models/test_elastic.py`` checks the forward, and the distillation
tests check parameters after training.

What is not the same: dropout draws its random mask over the envelope's shape, so with dropout
on, a student sees a different (equally distributed) dropout stream in the elastic model.

The same weight-sharing model is what AutoDistil's SuperLM is (Xu et al. 2022); there a student
reads its weights from a *trained* envelope instead of a zero-padded one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from autodistill.models import hf
from autodistill.models.configs import FACTORS, StudentConfig
from autodistill.models.layers import ElasticArch
from autodistill.models.student import StudentForPreTraining

Params = Any

# The factors a student of an envelope may vary; every other field must be the envelope's. The
# embedding width may vary only where it is the hidden width (no embedding transformation), as
# in AutoDistil's spaces: then a student's embedding is the table's leading columns.
ELASTIC_FIELDS = (*FACTORS, "num_blocks", "attention_head_size", "embedding_size")


@dataclasses.dataclass(frozen=True)
class Envelope:
  """The max shape of a set of students, and how to run one of them in it.

  Attributes:
    config: the envelope architecture: the largest ``hidden_size``, ``bottleneck_size``,
      ``intermediate_size``, ``num_ffn`` and ``num_blocks`` of the students, their shared other
      fields. Its ``num_heads`` is 1 (a placeholder, so any bottleneck validates); the attention
      shape is ``num_heads`` x ``head_size`` below.
    num_heads: the most heads of any student.
    head_size: the widest head of any student (:attr:`StudentConfig.head_size`).
  """

  config: StudentConfig
  num_heads: int
  head_size: int

  @classmethod
  def of(cls, students: Iterable[StudentConfig]) -> "Envelope":
    """The envelope of ``students``.

    Raises:
      ValueError: the students differ in a field other than the searched factors and
        ``num_blocks`` (say, normalisation), or in whether they have an embedding
        transformation; such students cannot share one program.
    """
    students = list(students)
    if not students:
      raise ValueError("an envelope needs at least one student.")
    first = students[0]
    for student in students[1:]:
      _check_same_fixed_fields(first, student)
    config = first.replace(
        num_heads=1, attention_head_size=0,
        **{f: max(getattr(s, f) for s in students)
           for f in ELASTIC_FIELDS if f not in ("num_heads", "attention_head_size")})
    envelope = cls(config, max(s.num_heads for s in students),
                   max(s.head_size for s in students))
    for student in students:
      envelope.check(student)
    return envelope

  def check(self, student: StudentConfig) -> None:
    """Raises ValueError, naming the reason, if ``student`` cannot run in this envelope."""
    _check_same_fixed_fields(self.config, student)
    limits = {"num_heads": self.num_heads, "head_size": self.head_size,
              **{f: getattr(self.config, f) for f in ELASTIC_FIELDS
                 if f not in ("num_heads", "attention_head_size")}}
    over = {f: getattr(student, f) for f, top in limits.items() if getattr(student, f) > top}
    if over:
      raise ValueError(f"student {student.name} exceeds the envelope in {over}; build the "
                       "envelope from every student it must run (Envelope.of).")
    if _has_transformation(student) != _has_transformation(self.config):
      raise ValueError(
          f"student {student.name} {'has' if _has_transformation(student) else 'lacks'} the "
          "embedding transformation and the envelope does not agree (hidden_size equal to "
          "embedding_size without trigram input); train such students one by one.")
    if _has_transformation(student) and student.embedding_size != self.config.embedding_size:
      raise ValueError(
          f"student {student.name} has embedding_size {student.embedding_size} and an embedding "
          f"transformation, the envelope {self.config.embedding_size}; students of one envelope "
          "vary the embedding width only where it equals their hidden width.")

  def describe(self) -> str:
    """One line, e.g. ``hidden 128, bottleneck 64, 4 heads of 32, intermediate 256, 4 FFNs,
    2 blocks``."""
    c = self.config
    return (f"hidden {c.hidden_size}, bottleneck {c.bottleneck_size}, {self.num_heads} heads of "
            f"{self.head_size}, intermediate {c.intermediate_size}, {c.num_ffn} FFNs, "
            f"{c.num_blocks} blocks")

  def model(self, **kwargs: Any) -> StudentForPreTraining:
    """The envelope model; call it with ``arch=self.arch(student)`` to run a student."""
    return StudentForPreTraining(self.config, attention_shape=(self.num_heads, self.head_size),
                                 **kwargs)

  def arch(self, student: StudentConfig) -> ElasticArch:
    """The masks and scalars that select ``student`` (host NumPy arrays)."""
    self.check(student)
    c = self.config

    def first(n: int, size: int) -> np.ndarray:
      return (np.arange(size) < n).astype(np.float32)

    return ElasticArch(
        hidden=first(student.hidden_size, c.hidden_size),
        bottleneck=first(student.bottleneck_size, c.bottleneck_size),
        heads=first(student.num_heads, self.num_heads),
        head_dims=first(student.head_size, self.head_size),
        head_scale=np.float32(student.head_size ** -0.5),
        intermediate=first(student.intermediate_size, c.intermediate_size),
        ffns=first(student.num_ffn, c.num_ffn),
        last_ffn=(np.arange(c.num_ffn) == student.num_ffn - 1).astype(np.float32),
        blocks=first(student.num_blocks, c.num_blocks))

  def abstract_params(self) -> Params:
    """The envelope's parameter shapes (``jax.ShapeDtypeStruct``s), without initialising."""
    return _abstract_params(self.config, (self.num_heads, self.head_size))

  def embed(self, student: StudentConfig, params: Params) -> Params:
    """The envelope parameters that run ``student`` with ``params``: its values, zero elsewhere."""
    self.check(student)
    return pad_tree(params, self.abstract_params())

  def extract(self, student: StudentConfig, params: Params) -> Params:
    """``student``'s own parameters, cut out of envelope parameters (inverse of :meth:`embed`)."""
    self.check(student)
    return slice_tree(params, hf.abstract_params(student))


def _has_transformation(config: StudentConfig) -> bool:
  return config.trigram_input or config.embedding_size != config.hidden_size


def _check_same_fixed_fields(a: StudentConfig, b: StudentConfig) -> None:
  differ = {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
            if f.name not in ELASTIC_FIELDS and getattr(a, f.name) != getattr(b, f.name)}
  if differ:
    raise ValueError(f"students {a.name} and {b.name} differ in {differ}; an elastic student "
                     f"can vary only {list(ELASTIC_FIELDS)}.")


@functools.lru_cache(maxsize=64)
def _abstract_params(config: StudentConfig, attention_shape: tuple[int, int]) -> Params:
  """hf.abstract_params with the attention shape overridden (the envelope's heads x size)."""
  model = StudentForPreTraining(config, attention_shape=attention_shape)
  ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids)
  return flax.core.unfreeze(flax.linen.unbox(variables["params"]))


def pad_tree(params: Params, like: Params) -> Params:
  """``params`` zero-padded to the shapes of ``like``; entries only ``like`` has are zeros.

  Every leaf of ``params`` must fit in the leading corner of ``like``'s leaf of the same path.
  """
  if isinstance(like, Mapping):
    unknown = sorted(set(params) - set(like))
    if unknown:
      raise ValueError(f"parameters {unknown} have no place in the envelope.")
    return {k: pad_tree(params.get(k, {}) if isinstance(v, Mapping) else params.get(k), v)
            for k, v in like.items()}
  out = np.zeros(like.shape, like.dtype)
  if params is not None:
    value = np.asarray(params)
    if value.ndim != out.ndim or any(a > b for a, b in zip(value.shape, out.shape)):
      raise ValueError(f"a parameter of shape {value.shape} does not fit the envelope's "
                       f"{out.shape}.")
    out[tuple(slice(0, n) for n in value.shape)] = value
  return out


def slice_tree(params: Params, like: Params) -> Params:
  """The leading corner of every leaf of ``params`` with the shape of ``like``'s leaf."""
  if isinstance(like, Mapping):
    return {k: slice_tree(params[k], v) for k, v in like.items()}
  return params[tuple(slice(0, n) for n in like.shape)]
