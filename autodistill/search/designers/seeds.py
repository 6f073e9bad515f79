"""Seeds of a designer rebuilt for each suggestion, and the search's one Halton sequence.

A designer is rebuilt from the study's history on every call
(:mod:`autodistill.search.designers.replay`), so its randomness must come from something the
history determines: :func:`call_seed` hashes the search's seed with the number of trials, and the
quasi-random sequence is one sequence per search, positioned at the trial count.
"""

from __future__ import annotations

import numpy as np
from vizier import pyvizier as vz

from autodistill.search.designers import _vizier

# Vizier skips this many leading points of a Halton sequence (QuasiRandomDesigner's default).
HALTON_SKIP = 1000


def _derive(*values: int) -> int:
  """A 31-bit seed hashed from integers (any sign or size)."""
  entropy = [int(v) % (1 << 64) for v in values]
  return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0] >> 1)


def call_seed(seed: int, num_trials: int) -> int:
  """The seed of the designer that makes a study's suggestion after ``num_trials`` trials.

  Hashes ``(seed, num_trials)``, so that a designer rebuilt per suggestion (section 3.5's loop
  runs statelessly in the Vizier service) varies from call to call yet reproduces a call exactly.
  """
  return _derive(seed, num_trials)


def sequence_seed(seed: int) -> int:
  """The seed of a search's single Halton sequence (independent of the trial count)."""
  return _derive(seed, 0x5EED)


def halton_designer(problem: vz.ProblemStatement, *, seed: int,
                    num_trials: int) -> _vizier.QuasiRandomDesigner:
  """The search's Halton sequence, positioned at its ``num_trials``-th point.

  The k-th suggestion of a search is the k-th point of one sequence scrambled by ``seed``, as
  Vizier's stateful ``quasi_random`` policy would give.
  """
  return _vizier.QuasiRandomDesigner(problem.search_space, seed=sequence_seed(seed),
                                     skip_points=HALTON_SKIP + num_trials)
