"""Growing a student from a teacher: embedding transfer, layer mapping, feature projections.

Paper section 3.3.2: the student's embedding layer is copied from the teacher and "down- or
up-sampled" to the student's width, and a learned dense layer maps a student block's output to the
teacher's width wherever the two differ.

How we resample (``embedding_init``):

* ``"pca"`` (default): project the teacher's word-embedding rows onto their top principal
  directions. For a target width w < teacher width this is the best rank-w linear approximation of
  the table (Eckart-Young), so as much of the teacher's embedding geometry as fits is kept; for
  w > teacher width the extra coordinates are zero. The position and token-type tables (which the
  teacher adds to the word embeddings in the same space) are projected onto the same directions,
  so the sum stays consistent.
* ``"linear"``: linear interpolation along the feature axis (a literal "resampling").
* ``"truncate"``: the first w features, zero-padded when w is larger.

Every method is a linear map ``M_w`` [teacher width, w]. The student's embedding transformation
(word-embedding width E -> hidden size H) is initialised to the least-squares map from the
E-coordinates to the H-coordinates, ``pinv(M_E) @ M_H`` (for "pca" and "truncate" simply
``[I, 0]``), so at step 0 the student's embedding output is the best the E-wide table can give:
the teacher's embedding in the first E of the student's H coordinates (all of them when E >= H).
The feature projections of each block start as ``pinv(M_H)``, the map back to the teacher's
coordinates.
"""

from __future__ import annotations

import collections
import hashlib
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from autodistill.models import layers
from autodistill.models.configs import BertConfig, StudentConfig

Params = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Resampling the feature axis


# Principal directions by table digest: every student of a search resamples the same teacher
# table twice (word embeddings, then the E->H map), and its float64 SVD takes ~20 s on 2 cores for
# a 30522 x 384 table. The cached basis is the very array the SVD returns.
_PCA_CACHE: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()
_PCA_CACHE_SIZE = 4


def _pca_basis(table: np.ndarray) -> np.ndarray:
  """Principal directions (columns, by decreasing variance) of the rows of ``table``."""
  table = np.ascontiguousarray(table)
  key = (table.shape, table.dtype.str, hashlib.sha1(table.tobytes()).hexdigest())
  if key in _PCA_CACHE:
    _PCA_CACHE.move_to_end(key)
    return _PCA_CACHE[key]
  centred = table - table.mean(axis=0, keepdims=True)
  _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
  basis = vt.T
  basis.setflags(write=False)
  _PCA_CACHE[key] = basis
  if len(_PCA_CACHE) > _PCA_CACHE_SIZE:
    _PCA_CACHE.popitem(last=False)
  return basis


def _pca(table: np.ndarray, width: int) -> np.ndarray:
  basis = _pca_basis(table)
  out = np.zeros((table.shape[1], width))
  k = min(width, basis.shape[1])
  out[:, :k] = basis[:, :k]
  return out


def _linear(table: np.ndarray, width: int) -> np.ndarray:
  n = table.shape[1]
  src = np.linspace(0.0, n - 1.0, width) if width > 1 else np.zeros(1)
  out = np.zeros((n, width))
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n - 1)
  frac = src - lo
  out[lo, np.arange(width)] += 1.0 - frac
  out[hi, np.arange(width)] += frac
  return out


def _truncate(table: np.ndarray, width: int) -> np.ndarray:
  return np.eye(table.shape[1], width)


# Resampling maps by name: f(teacher word-embedding table [V, Ht], width) -> M [Ht, width].
RESAMPLERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "pca": _pca, "linear": _linear, "truncate": _truncate}


def resampling_map(teacher_embeddings: np.ndarray, width: int, method: str = "pca") -> np.ndarray:
  """The linear map M [teacher width, width] that resamples teacher features to ``width``."""
  if method not in RESAMPLERS:
    raise ValueError(f"unknown embedding_init {method!r}; choose one of {sorted(RESAMPLERS)}.")
  return RESAMPLERS[method](np.asarray(teacher_embeddings, np.float64), width)


# ---------------------------------------------------------------------------------------------
# Depth mismatch


def layer_mapping(num_blocks: int, num_layers: int,
                  mapping: Optional[Sequence[int]] = None) -> tuple[int, ...]:
  """The teacher layer (1-based, an index into ``hidden_states``) each student block learns from.

  Default (uniform): block k (0-based) learns from layer ceil((k + 1) · L / K), so the last block
  always maps to the last layer; a deeper student repeats layers (24 blocks from a 6-layer
  teacher: layers 1,1,1,1,2,2,2,2,...), a shallower one skips them (4 blocks from 12 layers:
  3, 6, 9, 12). An explicit ``mapping`` is validated and returned.

  Raises:
    ValueError: the mapping has the wrong length or names a layer that does not exist.
  """
  if mapping is None:
    return tuple(math.ceil((k + 1) * num_layers / num_blocks) for k in range(num_blocks))
  mapping = tuple(int(m) for m in mapping)
  if len(mapping) != num_blocks or not all(1 <= m <= num_layers for m in mapping):
    raise ValueError(f"layer_mapping {mapping} must give, for each of the {num_blocks} student "
                     f"blocks, a teacher layer in 1..{num_layers}.")
  return mapping


# ---------------------------------------------------------------------------------------------
# Width mismatch


class FeatureProjections(nn.Module):
  """Per-block dense maps from the student's hidden size to the teacher's (section 3.3.2).

  Parameters exist only for blocks whose width differs from the teacher's; ``__call__`` returns
  the feature map of block k in the teacher's width.
  """

  student_width: int
  teacher_width: int
  num_blocks: int

  @property
  def needed(self) -> bool:
    return self.student_width != self.teacher_width

  @nn.compact
  def __call__(self, features: jax.Array, block: int) -> jax.Array:
    if not self.needed:
      return features
    return layers.dense(self.teacher_width, ("embed", "embed_out"),
                        name=f"block_{block}")(features)

  def init_all(self, rng: jax.Array) -> Params:
    """Parameters of every block's projection ({} when no widths differ), drawn on the host."""
    if not self.needed:
      return {}
    return layers.host_init(self.abstract_params(), rng)

  def abstract_params(self) -> Params:
    """The shapes of :meth:`init_all`'s parameters."""
    if not self.needed:
      return {}
    return {f"block_{k}": {"kernel": jax.ShapeDtypeStruct((self.student_width,
                                                           self.teacher_width), jnp.float32),
                           "bias": jax.ShapeDtypeStruct((self.teacher_width,), jnp.float32)}
            for k in range(self.num_blocks)}


def _assign(tree: Params, path: Sequence[str], value: np.ndarray) -> None:
  node = tree
  for key in path[:-1]:
    node = node[key]
  old = node[path[-1]]
  if tuple(old.shape) != tuple(value.shape):
    raise ValueError(f"shape mismatch at {'/'.join(path)}: {old.shape} vs {value.shape}")
  node[path[-1]] = jnp.asarray(value, old.dtype)


def init_student_from_teacher(student_config: StudentConfig, student_params: Params,
                              teacher_config: BertConfig, teacher_params: Params,
                              method: str = "pca") -> tuple[Params, np.ndarray]:
  """Copies the teacher's embedding layer into freshly initialised student parameters.

  Word, position and token-type tables, the embedding norm's affine parameters and the MLM output
  bias come from the teacher, resampled to the student's widths (module docstring); the embedding
  transformation is set to the consistent E -> H map. Blocks and heads keep their random init.

  Args:
    student_config, student_params: the student and its random parameters (not modified).
    teacher_config, teacher_params: the teacher (``BertForPreTraining`` parameters).
    method: resampling method, a key of :data:`RESAMPLERS`.

  Returns:
    (new student parameters, M_H) where M_H [teacher hidden, student hidden] is the resampling
    map into the student's hidden coordinates (used to initialise feature projections).

  Raises:
    ValueError: the vocabularies differ (the student must share the teacher's tokenizer).
  """
  s, t = student_config, teacher_config
  if s.vocab_size != t.vocab_size:
    raise ValueError(f"the student's vocab_size ({s.vocab_size}) differs from the teacher's "
                     f"({t.vocab_size}); distillation needs the teacher's tokenizer, so set "
                     f"vocab_size={t.vocab_size} in the student config.")
  params = jax.tree.map(lambda x: x, student_params)  # a copy of the containers
  te, se = teacher_params["encoder"], ["encoder"]
  words = np.asarray(te["word_embeddings"]["embedding"], np.float64)
  m_e = resampling_map(words, s.embedding_size, method)
  m_h = resampling_map(words, s.hidden_size, method)
  _assign(params, se + ["word_embeddings", "embedding"], words @ m_e)
  for table in ("position_embeddings", "token_type_embeddings"):
    source = np.asarray(te[table]["embedding"], np.float64) @ m_h
    if table == "position_embeddings":
      # The student counts positions from 0; a RoBERTa teacher's first token is at row
      # pad_token_id + 1 (``BertConfig.position_offset``).
      source = source[t.position_offset:]
    target = np.asarray(params["encoder"][table]["embedding"]).copy()
    rows = min(len(source), len(target))
    target[:rows] = source[:rows]
    _assign(params, se + [table, "embedding"], target)
  for name in ("scale", "bias"):
    # An affine map either way (LayerNorm or NoNorm): resample its per-feature parameters. The
    # teacher's unit scale resamples to ~1 under "linear"/"truncate"; under "pca" we keep the
    # student's own init for the scale, since a rotated scale vector has no meaning.
    if name == "scale" and method == "pca":
      continue
    value = np.asarray(te["embeddings_norm"][name], np.float64) @ m_h
    _assign(params, se + ["embeddings_norm", name], value)
  if "embedding_transformation" in params["encoder"] and not s.trigram_input:
    _assign(params, se + ["embedding_transformation", "kernel"], np.linalg.pinv(m_e) @ m_h)
    _assign(params, se + ["embedding_transformation", "bias"], np.zeros(s.hidden_size))
  elif "embedding_transformation" in params["encoder"]:
    # Trigram input [next, token, previous]: the middle E rows carry the current token.
    kernel = np.asarray(params["encoder"]["embedding_transformation"]["kernel"]).copy()
    kernel[s.embedding_size:2 * s.embedding_size] = np.linalg.pinv(m_e) @ m_h
    _assign(params, se + ["embedding_transformation", "kernel"], kernel)
  if "mlm_head" in teacher_params and "mlm_head" in params:
    _assign(params, ["mlm_head", "bias"], np.asarray(teacher_params["mlm_head"]["bias"]))
  return params, m_h


def init_projections(projections: FeatureProjections, rng: jax.Array,
                     m_h: Optional[np.ndarray] = None) -> Params:
  """Feature-projection parameters; kernels start at pinv(M_H) when ``m_h`` is given."""
  params = projections.init_all(rng)
  if m_h is not None:
    back = np.linalg.pinv(m_h)  # [student hidden, teacher hidden]
    for block in params.values():
      block["kernel"] = jnp.asarray(back, block["kernel"].dtype)
  return params
