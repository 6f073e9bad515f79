"""Student-from-teacher initialisation (paper section 3.3.2): layer mapping, resampling maps,
embedding transfer and feature projections, checked against NumPy linear algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill.distill import initialization as init
from autodistill.models import hf
from autodistill.models.configs import BertConfig, StudentConfig

TEACHER = BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
STUDENT = StudentConfig(hidden_size=24, bottleneck_size=16, num_heads=2, intermediate_size=32,
                        num_ffn=2, num_blocks=2, embedding_size=16, vocab_size=50,
                        max_position_embeddings=64)
FLAT_STUDENT = STUDENT.replace(trigram_input=False)  # embedding 16 -> hidden 24, no trigram
E, H, HT = 16, 24, 32


def _flat(tree):
  return {"/".join(k.key for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def teacher_params():
  # A "trained" teacher: noise on every leaf, so that biases and norm scales are not the 0 and 1
  # a student starts from and every copy is observable.
  params = hf.init_params(TEACHER, jax.random.PRNGKey(0))
  rng = np.random.RandomState(0)
  return jax.tree.map(lambda x: jnp.asarray(x + 0.1 * rng.normal(size=x.shape), jnp.float32),
                      params)


@pytest.fixture(scope="module")
def student_params():
  return hf.init_params(STUDENT, jax.random.PRNGKey(1))


@pytest.fixture(scope="module")
def flat_student_params():
  return hf.init_params(FLAT_STUDENT, jax.random.PRNGKey(2))


def _table(seed=0, rows=50, width=HT):
  """Rows with clearly separated variances per direction, so principal directions are unique."""
  rng = np.random.RandomState(seed)
  rotation, _ = np.linalg.qr(rng.normal(size=(width, width)))
  return (rng.normal(size=(rows, width)) * np.linspace(3.0, 0.1, width)) @ rotation.T + 0.5


# ---------------------------------------------------------------------------------------------
# Layer mapping


@pytest.mark.parametrize("blocks,layers,expected", [
    (4, 12, (3, 6, 9, 12)),
    (24, 6, (1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6)),
    (5, 12, (3, 5, 8, 10, 12)),  # ceil(2.4), ceil(4.8), ceil(7.2), ceil(9.6), 12
    (3, 3, (1, 2, 3)),
    (1, 12, (12,)),
])
def test_layer_mapping_uniform(blocks, layers, expected):
  assert init.layer_mapping(blocks, layers) == expected


def test_layer_mapping_explicit():
  assert init.layer_mapping(3, 12, [2, 2, 12]) == (2, 2, 12)
  for bad in ([1, 2], [1, 2, 3, 4], [0, 1, 2], [1, 2, 13]):
    with pytest.raises(ValueError, match="layer_mapping"):
      init.layer_mapping(3, 12, bad)


# ---------------------------------------------------------------------------------------------
# Resampling maps


def test_pca_map_is_eckart_young_optimal():
  table = _table()
  m = init.resampling_map(table, 8, "pca")
  assert m.shape == (HT, 8)
  np.testing.assert_allclose(m.T @ m, np.eye(8), atol=1e-10)
  centred = table - table.mean(0)
  sigma = np.linalg.svd(centred, compute_uv=False)
  # Projecting onto the 8 columns keeps the top-8 variance: the residual is the discarded part.
  residual = np.sum((centred - centred @ m @ m.T) ** 2)
  np.testing.assert_allclose(residual, np.sum(sigma[8:] ** 2), rtol=1e-8)
  # Columns in order of decreasing variance, each equal to its singular value squared.
  np.testing.assert_allclose(np.sum((centred @ m) ** 2, axis=0), sigma[:8] ** 2, rtol=1e-8)


def test_pca_map_zero_pads_beyond_teacher_width():
  table = _table()
  m = init.resampling_map(table, HT + 8, "pca")
  assert m.shape == (HT, HT + 8)
  np.testing.assert_allclose(m[:, :HT] @ m[:, :HT].T, np.eye(HT), atol=1e-10)  # a rotation
  np.testing.assert_array_equal(m[:, HT:], 0.0)


def test_linear_map_interpolates_features():
  table = _table(rows=6)
  assert init.resampling_map(table, HT, "linear") == pytest.approx(np.eye(HT))
  for width in (7, 20, 45):
    m = init.resampling_map(table, width, "linear")
    targets = np.linspace(0, HT - 1, width)
    expected = np.stack([np.interp(targets, np.arange(HT), row) for row in table])
    np.testing.assert_allclose(table @ m, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(table @ m[:, [0, -1]], table[:, [0, HT - 1]], atol=1e-12)


def test_truncate_map():
  table = _table(rows=4)
  np.testing.assert_array_equal(table @ init.resampling_map(table, 10, "truncate"),
                                table[:, :10])
  wide = table @ init.resampling_map(table, HT + 3, "truncate")
  np.testing.assert_array_equal(wide[:, :HT], table)
  np.testing.assert_array_equal(wide[:, HT:], 0.0)


def test_unknown_resampling_method():
  with pytest.raises(ValueError, match="embedding_init"):
    init.resampling_map(_table(rows=4), 8, "nearest")


# ---------------------------------------------------------------------------------------------
# Embedding transfer


@pytest.mark.parametrize("method", ["pca", "linear", "truncate"])
def test_embedding_tables_are_resampled_teacher_tables(teacher_params, student_params, method):
  new, m_h = init.init_student_from_teacher(STUDENT, student_params, TEACHER, teacher_params,
                                            method)
  te, se = _flat(teacher_params), _flat(new)
  words = te["encoder/word_embeddings/embedding"].astype(np.float64)
  m_e = init.resampling_map(words, E, method)
  assert m_h.shape == (HT, H)
  np.testing.assert_allclose(m_h, init.resampling_map(words, H, method), atol=1e-12)
  np.testing.assert_allclose(se["encoder/word_embeddings/embedding"], words @ m_e,
                             rtol=1e-5, atol=1e-6)
  for table in ("position_embeddings", "token_type_embeddings"):
    np.testing.assert_allclose(se[f"encoder/{table}/embedding"],
                               te[f"encoder/{table}/embedding"] @ m_h, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(se["mlm_head/bias"], te["mlm_head/bias"])
  # Trigram input [next, token, previous]: the middle E rows map the current token's E-coordinates
  # to its H-coordinates by least squares (normal equations M_E^T (M_E K - M_H) = 0).
  kernel = se["encoder/embedding_transformation/kernel"].astype(np.float64)
  np.testing.assert_allclose(m_e.T @ (m_e @ kernel[E:2 * E] - m_h), 0.0, atol=1e-5)
  if method != "linear":  # orthonormal maps: K = [I, 0]
    np.testing.assert_allclose(kernel[E:2 * E], np.eye(E, H), atol=1e-6)
  # The rows of the neighbouring tokens keep their random init.
  old_kernel = np.asarray(student_params["encoder"]["embedding_transformation"]["kernel"])
  np.testing.assert_array_equal(kernel[:E], old_kernel[:E])
  np.testing.assert_array_equal(kernel[2 * E:], old_kernel[2 * E:])


def test_truncate_copies_leading_teacher_features(teacher_params, student_params):
  new, _ = init.init_student_from_teacher(STUDENT, student_params, TEACHER, teacher_params,
                                          "truncate")
  te, se = _flat(teacher_params), _flat(new)
  np.testing.assert_array_equal(se["encoder/word_embeddings/embedding"],
                                te["encoder/word_embeddings/embedding"][:, :E])
  np.testing.assert_array_equal(se["encoder/position_embeddings/embedding"],
                                te["encoder/position_embeddings/embedding"][:, :H])
  for name in ("scale", "bias"):
    np.testing.assert_array_equal(se[f"encoder/embeddings_norm/{name}"],
                                  te[f"encoder/embeddings_norm/{name}"][:H])


def test_pca_keeps_the_students_norm_scale(teacher_params, student_params):
  new, _ = init.init_student_from_teacher(STUDENT, student_params, TEACHER, teacher_params, "pca")
  np.testing.assert_array_equal(new["encoder"]["embeddings_norm"]["scale"],
                                student_params["encoder"]["embeddings_norm"]["scale"])


@pytest.mark.parametrize("method", ["pca", "truncate"])
def test_embedding_transformation_without_trigram(teacher_params, flat_student_params, method):
  new, m_h = init.init_student_from_teacher(FLAT_STUDENT, flat_student_params, TEACHER,
                                            teacher_params, method)
  words = np.asarray(teacher_params["encoder"]["word_embeddings"]["embedding"], np.float64)
  student_words = np.asarray(new["encoder"]["word_embeddings"]["embedding"], np.float64)
  kernel = np.asarray(new["encoder"]["embedding_transformation"]["kernel"], np.float64)
  assert kernel.shape == (E, H)
  np.testing.assert_allclose(kernel, np.eye(E, H), atol=1e-6)
  np.testing.assert_array_equal(new["encoder"]["embedding_transformation"]["bias"], 0.0)
  # The student's embedding output carries the teacher's first E of H resampled coordinates;
  # the last H - E cannot be recovered from E numbers and start at 0.
  teacher_h = words @ m_h
  out = student_words @ kernel
  np.testing.assert_allclose(out[:, :E], teacher_h[:, :E], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[:, E:], 0.0, atol=1e-6)


def test_embedding_transformation_without_trigram_linear(teacher_params, flat_student_params):
  new, m_h = init.init_student_from_teacher(FLAT_STUDENT, flat_student_params, TEACHER,
                                            teacher_params, "linear")
  words = np.asarray(teacher_params["encoder"]["word_embeddings"]["embedding"], np.float64)
  m_e = init.resampling_map(words, E, "linear")
  kernel = np.asarray(new["encoder"]["embedding_transformation"]["kernel"], np.float64)
  np.testing.assert_allclose(m_e.T @ (m_e @ kernel - m_h), 0.0, atol=1e-5)
  # Linear resampling to E then to H through K recovers the resampled ends of each row exactly.
  out = np.asarray(new["encoder"]["word_embeddings"]["embedding"], np.float64) @ kernel
  np.testing.assert_allclose(out[:, [0, -1]], words[:, [0, HT - 1]], rtol=1e-4, atol=1e-5)


def test_inputs_not_mutated_and_blocks_untouched(teacher_params, student_params):
  student_before = _flat(student_params)
  teacher_before = _flat(teacher_params)
  new, _ = init.init_student_from_teacher(STUDENT, student_params, TEACHER, teacher_params, "pca")
  for before, tree in ((student_before, student_params), (teacher_before, teacher_params)):
    after = _flat(tree)
    assert after.keys() == before.keys()
    for k in before:
      np.testing.assert_array_equal(after[k], before[k], err_msg=k)
  changed = {k for k, v in _flat(new).items() if not np.array_equal(v, student_before[k])}
  assert _flat(new).keys() == student_before.keys()
  assert changed == {
      "encoder/word_embeddings/embedding", "encoder/position_embeddings/embedding",
      "encoder/token_type_embeddings/embedding", "encoder/embeddings_norm/bias",
      "encoder/embedding_transformation/kernel", "mlm_head/bias"}
  assert all(not k.startswith("encoder/block_") for k in changed)


def test_vocab_mismatch_is_rejected(teacher_params, student_params):
  with pytest.raises(ValueError, match="vocab_size"):
    init.init_student_from_teacher(STUDENT.replace(vocab_size=60), student_params, TEACHER,
                                   teacher_params)


# ---------------------------------------------------------------------------------------------
# Feature projections


def test_feature_projections_absent_for_equal_widths():
  proj = init.FeatureProjections(student_width=32, teacher_width=32, num_blocks=3)
  assert not proj.needed
  assert proj.init_all(jax.random.PRNGKey(0)) == {}
  assert init.init_projections(proj, jax.random.PRNGKey(0), np.eye(32)) == {}
  x = jnp.arange(6.0).reshape(1, 2, 3)
  np.testing.assert_array_equal(proj.apply({"params": {}}, x, 1), x)


def test_feature_projections_for_each_block():
  proj = init.FeatureProjections(student_width=H, teacher_width=HT, num_blocks=3)
  assert proj.needed
  params = proj.init_all(jax.random.PRNGKey(0))
  assert set(params) == {"block_0", "block_1", "block_2"}
  for block in params.values():
    assert block["kernel"].shape == (H, HT) and block["bias"].shape == (HT,)
  assert not np.allclose(params["block_0"]["kernel"], params["block_1"]["kernel"])


@pytest.mark.parametrize("method", ["truncate", "pca"])
def test_init_projections_start_at_pinv(method):
  m_h = init.resampling_map(_table(), H, method)
  proj = init.FeatureProjections(student_width=H, teacher_width=HT, num_blocks=2)
  params = init.init_projections(proj, jax.random.PRNGKey(0), m_h)
  # Orthonormal columns: pinv(M_H) = M_H^T ([I, 0] for truncation).
  expected = np.eye(H, HT) if method == "truncate" else m_h.T
  for k in range(2):
    np.testing.assert_allclose(params[f"block_{k}"]["kernel"], expected, atol=1e-6)
  # Mapping teacher features to the student's coordinates and back projects them onto M_H's range.
  features = np.random.RandomState(0).normal(size=(1, 3, HT)).astype(np.float32)
  back = proj.apply({"params": params}, jnp.asarray(features @ m_h, jnp.float32), 1)
  np.testing.assert_allclose(back, features @ m_h @ m_h.T, rtol=1e-4, atol=1e-5)
  random = init.init_projections(proj, jax.random.PRNGKey(0))
  assert not np.allclose(random["block_0"]["kernel"], expected, atol=1e-3)


def test_pca_basis_is_cached_per_table_and_equals_a_fresh_svd():
  from autodistill.distill import initialization
  rng = np.random.default_rng(3)
  table = rng.normal(size=(50, 6)).astype(np.float32)
  first = initialization._pca_basis(table)  # pylint: disable=protected-access
  assert initialization._pca_basis(table.copy()) is first  # same contents: the cached array
  centred = (table - table.mean(axis=0, keepdims=True)).astype(np.float64)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  np.testing.assert_array_equal(first, vt.T)
  other = table.copy()
  other[0, 0] += 1.0
  assert initialization._pca_basis(other) is not first  # another table: its own basis
  with pytest.raises(ValueError):
    first[0, 0] = 0.0  # read-only: no caller can corrupt the cache
