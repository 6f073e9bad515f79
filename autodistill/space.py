"""Design spaces of student architectures (paper section 3.2, Table 1) and their presets.

A :class:`Space` is declarative: each searched *factor* maps to its allowed values, every other
:class:`~autodistill.models.StudentConfig` field can be *fixed*, and a field can be *tied* to
another (AutoDistil's BERT-like students have ``bottleneck_size == hidden_size``). Any
``StudentConfig`` field can be a factor (``num_blocks``, ``embedding_size``, ``hidden_act``, ...)
without code changes; one derived factor exists for spaces defined by ratios:

* ``mlp_ratio``: ``intermediate_size = round(mlp_ratio * bottleneck_size)`` (the FFN runs at the
  bottleneck width; for BERT-like students that is the hidden size).

**Validity.** A point is valid when its ``StudentConfig`` constructs (e.g. ``num_heads`` divides
the attention width ``bottleneck_size``). The search never distils an invalid point: Vizier sees
the factors as a product of discrete parameters, and a suggested point that is invalid, or that
violates a constraint known before training (parameter count, cached latency), is completed as
*infeasible* with its reason at once, at no distillation cost (see
:mod:`autodistill.search.loop`). :meth:`Space.architectures` enumerates only the valid points.

Presets (:data:`SPACES`):

* ``table1``: the paper's Table 1 with 24 blocks: 4 x 4 x 4 x 3 x 3 = 576 architectures, all
  valid. The paper prints ``246`` as the second hidden size; it is a typo for 256 (the other
  values are multiples of 128, and Table 2's students use 512).
* ``mobilebert_centred``: MobileBERT (``Model_512_128_4_512_4``) and one step either side of
  each factor (3^5 = 243).
* ``autodistil_tiny`` / ``autodistil_small`` / ``autodistil_base``: AutoDistil's sub-spaces
  (Xu et al. 2022; layers, hidden, MLP ratio, heads; 4^4 = 256 points each, all valid) on BERT's
  block (``use_bottleneck=False``, LayerNorm, one FFN, GELU). AutoDistil's heads do not divide
  its hidden sizes (352 hidden, 10 heads), so the attention width is decoupled: each head is
  ``ceil(hidden / 12)`` wide (``head_size_divisor``; our reading, chosen because it reproduces
  the published winners' sizes).
* ``autodistil_cpu``: a CPU-sized sub-space of the same kind (256 points, 1-4 layers, hidden
  64-160) for the SuperLM on a 2-core machine (:mod:`autodistill.supernet`).
* ``cpu_demo``: a 2-block space that flash-distils in about a minute per student on a 2-core CPU,
  48 points around a MobileBERT-proportioned baseline (``Model_128_32_4_128_4``).
* ``cpu_wide``: ``cpu_demo`` widened with depth (1-3 blocks) and a single FFN (216 points, all
  valid, the same baseline), the space of the search-efficiency table (paper Figure 3 in kind,
  ``bench/search_efficiency.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Iterator, Mapping, Optional

from autodistill.errors import UserError
from autodistill.models.configs import StudentConfig

# Factors that are not StudentConfig fields but determine one.
DERIVED_FACTORS = ("mlp_ratio",)

Point = dict[str, Any]


class InvalidArchitecture(UserError, ValueError):
  """A point of a space that is not a valid student (the message says why)."""


def _config_fields() -> set[str]:
  return {f.name for f in dataclasses.fields(StudentConfig)}


@dataclasses.dataclass(frozen=True)
class Space:
  """A design space: factors with allowed values, fixed fields, ties and a baseline.

  Attributes:
    name: preset or user name.
    factors: factor -> allowed values, in search order. Values are ints, floats, strings or
      bools; a ``StudentConfig`` field or one of :data:`DERIVED_FACTORS`.
    fixed: ``StudentConfig`` fields held constant (e.g. ``num_blocks``).
    tied: field -> field or factor it copies (e.g. ``{"bottleneck_size": "hidden_size"}``).
    baseline: the reference point (factor -> value) whose domination the search reports, e.g.
      MobileBERT for the paper's space; None for no baseline.
    description: one line for reports.
    head_size_divisor: when set, every student's ``attention_head_size`` is
      ``ceil(hidden_size / head_size_divisor)``: the head width grows with the block width, as
      BERT-base's 64 = 768 / 12 does, whatever the head count (AutoDistil's spaces: 12). None:
      heads split the attention width evenly.
  """

  name: str
  factors: Mapping[str, tuple[Any, ...]]
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  tied: Mapping[str, str] = dataclasses.field(default_factory=dict)
  baseline: Optional[Mapping[str, Any]] = None
  description: str = ""
  head_size_divisor: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, "factors", {k: tuple(v) for k, v in dict(self.factors).items()})
    object.__setattr__(self, "fixed", dict(self.fixed))
    object.__setattr__(self, "tied", dict(self.tied))
    if self.baseline is not None:
      object.__setattr__(self, "baseline", dict(self.baseline))
    fields = _config_fields()
    if not self.factors:
      raise ValueError(f"space {self.name!r}: no factors; give at least one factor with values.")
    for factor, values in self.factors.items():
      if factor not in fields and factor not in DERIVED_FACTORS:
        raise ValueError(
            f"space {self.name!r}: unknown factor {factor!r}; factors are StudentConfig fields "
            f"({sorted(fields)}) or derived factors {list(DERIVED_FACTORS)}.")
      if not values:
        raise ValueError(f"space {self.name!r}: factor {factor!r} has no values.")
      if len(set(values)) != len(values):
        raise ValueError(f"space {self.name!r}: factor {factor!r} repeats values {values}.")
      kinds = {type(v) for v in values}
      if len(kinds) > 1 and kinds != {int, float}:
        raise ValueError(f"space {self.name!r}: factor {factor!r} mixes value types {values}.")
    for field in list(self.fixed) + list(self.tied):
      if field not in fields:
        raise ValueError(f"space {self.name!r}: {field!r} is not a StudentConfig field; known "
                         f"fields are {sorted(fields)}.")
    overlap = (set(self.fixed) & set(self.factors)) | (set(self.tied) & set(self.factors))
    if overlap:
      raise ValueError(f"space {self.name!r}: {sorted(overlap)} are both searched and "
                       "fixed/tied; give each field one role.")
    for field, source in self.tied.items():
      if source not in fields and source not in self.factors:
        raise ValueError(f"space {self.name!r}: {field!r} is tied to unknown {source!r}.")
    if "mlp_ratio" in self.factors and ("intermediate_size" in self.factors or
                                        "intermediate_size" in self.fixed):
      raise ValueError(f"space {self.name!r}: mlp_ratio sets intermediate_size; do not also "
                       "search or fix intermediate_size.")
    if self.head_size_divisor is not None and (
        isinstance(self.head_size_divisor, bool) or not isinstance(self.head_size_divisor, int)
        or self.head_size_divisor < 1 or "attention_head_size" in {
            *self.factors, *self.fixed, *self.tied}):
      raise ValueError(f"space {self.name!r}: head_size_divisor must be a positive integer and "
                       "leaves attention_head_size to be set by it, not searched, fixed or tied; "
                       f"got {self.head_size_divisor!r}.")
    if self.baseline is not None:
      self.check_point(self.baseline)

  @property
  def size(self) -> int:
    """Number of points, valid or not (the product of the factor sizes)."""
    return math.prod(len(v) for v in self.factors.values())

  def points(self) -> Iterator[Point]:
    """Every point of the product, in lexicographic factor order."""
    names = list(self.factors)
    for values in itertools.product(*self.factors.values()):
      yield dict(zip(names, values))

  def check_point(self, point: Mapping[str, Any]) -> None:
    """Raises ValueError if ``point`` is not a point of the product (missing, extra, off-grid)."""
    missing = sorted(set(self.factors) - set(point))
    extra = sorted(set(point) - set(self.factors))
    if missing or extra:
      raise ValueError(f"space {self.name!r}: point {dict(point)} has missing factors {missing} "
                       f"and unknown factors {extra}; expected {list(self.factors)}.")
    for factor, value in point.items():
      if value not in self.factors[factor]:
        raise ValueError(f"space {self.name!r}: {factor}={value!r} is not one of the allowed "
                         f"values {self.factors[factor]}.")

  def config(self, point: Mapping[str, Any], **overrides: Any) -> StudentConfig:
    """The student at ``point``; ``overrides`` set other fields (e.g. the teacher's vocab_size).

    Raises:
      InvalidArchitecture: the point does not make a valid student (message says why).
      ValueError: the point is not in the space.
    """
    self.check_point(point)
    values: dict[str, Any] = {**self.fixed, **overrides}
    values.update({k: v for k, v in point.items() if k not in DERIVED_FACTORS})
    for field, source in self.tied.items():
      values[field] = point[source] if source in point else values.get(
          source, getattr(StudentConfig(), source))
    if "mlp_ratio" in point:
      width = values.get("bottleneck_size", StudentConfig().bottleneck_size)
      values["intermediate_size"] = int(round(point["mlp_ratio"] * width))
    if self.head_size_divisor is not None:
      hidden = values.get("hidden_size", StudentConfig().hidden_size)
      values["attention_head_size"] = -(-hidden // self.head_size_divisor)
    try:
      return StudentConfig.from_dict(values)
    except ValueError as error:
      raise InvalidArchitecture(str(error)) from None

  def invalid_reason(self, point: Mapping[str, Any]) -> Optional[str]:
    """Why ``point`` is not a valid student, or None when it is."""
    try:
      self.config(point)
    except InvalidArchitecture as error:
      return str(error)
    return None

  def valid_points(self) -> list[Point]:
    return [p for p in self.points() if self.invalid_reason(p) is None]

  @property
  def num_valid(self) -> int:
    return len(self.valid_points())

  def architectures(self, **overrides: Any) -> list[StudentConfig]:
    """Every valid student of the space, in point order."""
    return [self.config(p, **overrides) for p in self.valid_points()]

  def point_of(self, config: StudentConfig) -> Point:
    """The point whose student is ``config`` (its factors' values).

    Raises:
      ValueError: ``config`` is not in this space.
    """
    point: Point = {}
    for factor in self.factors:
      if factor == "mlp_ratio":
        point[factor] = min(self.factors[factor],
                            key=lambda r: abs(r * config.bottleneck_size - config.intermediate_size))
      else:
        point[factor] = getattr(config, factor)
    self.check_point(point)
    mine = self.config(point, vocab_size=config.vocab_size,
                       max_position_embeddings=config.max_position_embeddings,
                       type_vocab_size=config.type_vocab_size)
    if mine.name != config.name:
      raise ValueError(f"{config.name} is not in space {self.name!r} (its nearest point is "
                       f"{mine.name}).")
    return point

  def baseline_config(self, **overrides: Any) -> Optional[StudentConfig]:
    return None if self.baseline is None else self.config(self.baseline, **overrides)

  def to_dict(self) -> dict[str, Any]:
    values = {"name": self.name, "factors": {k: list(v) for k, v in self.factors.items()},
              "fixed": dict(self.fixed), "tied": dict(self.tied),
              "baseline": None if self.baseline is None else dict(self.baseline),
              "description": self.description}
    if self.head_size_divisor is not None:  # only then, so older studies' records still match
      values["head_size_divisor"] = self.head_size_divisor
    return values

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "Space":
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"Space: unknown keys {unknown}; expected name, factors, fixed, tied, "
                       "baseline, description, head_size_divisor.")
    return cls(**dict(values))

  def describe(self) -> str:
    valid = self.num_valid
    text = (f"space {self.name!r}: {self.size} points ({valid} valid) over "
            + ", ".join(f"{k} {list(v)}" for k, v in self.factors.items()))
    if self.fixed:
      text += "; fixed " + ", ".join(f"{k}={v}" for k, v in self.fixed.items())
    if self.baseline is not None:
      text += f"; baseline {self.baseline_config().name}"
    return text


_MOBILEBERT = {"hidden_size": 512, "bottleneck_size": 128, "num_heads": 4,
               "intermediate_size": 512, "num_ffn": 4}

# BERT-like students for AutoDistil's sub-spaces: BERT's block (no bottleneck), one FFN per
# block, post-LayerNorm, GELU, no trigram input, embedding at the hidden width; each head
# ceil(hidden / 12) wide (head_size_divisor), which puts the four published winners' parameters
# and FLOPs within 3.1% of the slides' table (tests/models/test_autodistil_counts.py).
_BERT_LIKE = {"num_ffn": 1, "normalization": "layer_norm", "key_query_shared_bottleneck": False,
              "use_bottleneck_attention": False, "use_bottleneck": False,
              "trigram_input": False, "hidden_act": "gelu"}


def _autodistil(name: str, layers: range, hidden: range, ratios: tuple[float, ...],
                heads: range, baseline: Mapping[str, Any], description: str = "") -> Space:
  return Space(
      name=name,
      factors={"num_blocks": tuple(layers), "hidden_size": tuple(hidden),
               "mlp_ratio": ratios, "num_heads": tuple(heads)},
      fixed=dict(_BERT_LIKE),
      tied={"bottleneck_size": "hidden_size", "embedding_size": "hidden_size"},
      baseline=baseline,
      description=description or (f"AutoDistil {name.split('_')[1]} sub-space (Xu et al. "
                                  "2022), BERT blocks"),
      head_size_divisor=12)


def _ratios(start: float, stop: float, step: float) -> tuple[float, ...]:
  return tuple(round(start + i * step, 3) for i in range(int(round((stop - start) / step)) + 1))


SPACES: dict[str, Space] = {
    "table1": Space(
        name="table1",
        factors={"hidden_size": (128, 256, 384, 512), "bottleneck_size": (64, 96, 128, 160),
                 "num_heads": (1, 2, 4, 8), "intermediate_size": (384, 512, 640),
                 "num_ffn": (2, 4, 6)},
        fixed={"num_blocks": 24},
        baseline=_MOBILEBERT,
        description="the paper's Table 1 (24 MobileBERT-style blocks; 246 read as 256)"),
    "mobilebert_centred": Space(
        name="mobilebert_centred",
        factors={"hidden_size": (384, 512, 640), "bottleneck_size": (96, 128, 160),
                 "num_heads": (2, 4, 8), "intermediate_size": (384, 512, 640),
                 "num_ffn": (2, 4, 6)},
        fixed={"num_blocks": 24},
        baseline=_MOBILEBERT,
        description="MobileBERT and one step either side of each factor (24 blocks)"),
    "autodistil_tiny": _autodistil(
        "autodistil_tiny", range(4, 8), range(128, 225, 32), _ratios(2.0, 3.5, 0.5),
        range(7, 11), baseline={"num_blocks": 4, "hidden_size": 128, "mlp_ratio": 2.0,
                                "num_heads": 8}),
    "autodistil_small": _autodistil(
        "autodistil_small", range(9, 13), range(256, 353, 32), _ratios(2.5, 4.0, 0.5),
        range(7, 11), baseline={"num_blocks": 12, "hidden_size": 256, "mlp_ratio": 4.0,
                                "num_heads": 8}),
    "autodistil_base": _autodistil(
        "autodistil_base", range(9, 13), range(544, 641, 32), _ratios(2.5, 4.0, 0.5),
        range(9, 13), baseline={"num_blocks": 12, "hidden_size": 576, "mlp_ratio": 4.0,
                                "num_heads": 12}),
    # AutoDistil's kind of sub-space sized for a 2-core CPU: a SuperLM of 4 blocks of 160 trains
    # in minutes. Heads are hidden / 4 wide, so 2-5 heads span half to 1.25x the block width.
    "autodistil_cpu": dataclasses.replace(
        _autodistil("autodistil_cpu", range(1, 5), range(64, 161, 32), _ratios(2.0, 3.5, 0.5),
                    range(2, 6), baseline={"num_blocks": 2, "hidden_size": 128,
                                           "mlp_ratio": 2.0, "num_heads": 4},
                    description="AutoDistil-style sub-space for a 2-core CPU (1-4 BERT blocks, "
                                "hidden 64-160)"),
        head_size_divisor=4),
    "cpu_demo": Space(
        name="cpu_demo",
        factors={"hidden_size": (64, 128), "bottleneck_size": (32, 64), "num_heads": (2, 4),
                 "intermediate_size": (64, 128, 256), "num_ffn": (2, 4)},
        fixed={"num_blocks": 2, "embedding_size": 64},
        baseline={"hidden_size": 128, "bottleneck_size": 32, "num_heads": 4,
                  "intermediate_size": 128, "num_ffn": 4},
        description="2-block students for a 2-core CPU; baseline has MobileBERT's proportions"),
    "cpu_wide": Space(
        name="cpu_wide",
        factors={"num_blocks": (1, 2, 3), "hidden_size": (64, 128), "bottleneck_size": (32, 64),
                 "num_heads": (2, 4), "intermediate_size": (64, 128, 256),
                 "num_ffn": (1, 2, 4)},
        fixed={"embedding_size": 64},
        baseline={"num_blocks": 2, "hidden_size": 128, "bottleneck_size": 32, "num_heads": 4,
                  "intermediate_size": 128, "num_ffn": 4},
        description="cpu_demo widened with depth (1-3 blocks) and one FFN: 216 students, for "
                    "search-efficiency tables"),
}


def get_space(space: str | Space | Mapping[str, Any]) -> Space:
  """A preset by name, a Space, or a Space from its dict form.

  Raises:
    ValueError: unknown preset name (the message lists them).
  """
  if isinstance(space, Space):
    return space
  if isinstance(space, str):
    if space not in SPACES:
      raise ValueError(f"unknown design space {space!r}; presets are {sorted(SPACES)}, or pass "
                       "a Space / dict with factors.")
    return SPACES[space]
  return Space.from_dict(space)
