"""Tiny students, fast timing settings, and a spy that counts compilations (= measurements)."""

import dataclasses

import pytest

from autodistill.hardware import latency
from autodistill.models import StudentConfig


def _tiny(**overrides) -> StudentConfig:
  values = dict(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=48, num_ffn=2,
                num_blocks=2, embedding_size=16, vocab_size=300, max_position_embeddings=64)
  return StudentConfig(**{**values, **overrides})


@pytest.fixture
def tiny():
  """Factory of 2-block students small enough to compile in about a second on 2 CPU cores."""
  return _tiny


@pytest.fixture
def fast() -> dict:
  """Timing settings for tests: a few calls exercise the machinery; statistics are not asserted."""
  return dict(seq_len=16, warmup=1, min_runs=3, min_time_s=0.005)


@dataclasses.dataclass
class CompileSpy:
  """Records the architecture name of every candidate built and compiled."""

  archs: list

  def clear(self):
    self.archs.clear()


@pytest.fixture
def compile_spy(monkeypatch) -> CompileSpy:
  spy = CompileSpy(archs=[])
  original = latency._compile_candidate  # pylint: disable=protected-access

  def counting(config, key, settings, seed=0):
    spy.archs.append(key.arch)
    return original(config, key, settings, seed)

  monkeypatch.setattr(latency, "_compile_candidate", counting)
  return spy
