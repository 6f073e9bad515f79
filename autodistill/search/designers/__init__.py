"""Seeded, stateless Vizier designers of the architecture search (paper sections 3.5 and 4.3).

The paper's Model Exploration step (section 3.5) asks a multi-objective Bayesian optimizer (OSS
Vizier's GP bandit) for the next student, given every student distilled so far; section 4.3 also
compares search algorithms on the same accuracy / latency objectives (random search and the
firefly-style evolutionary baseline among them). :data:`DESIGNERS` names the algorithms a search
can use:

* ``gp_bandit`` (default): Vizier's ``VizierGPBandit`` behind
  :class:`~autodistill.search.designers.gp_bandit.DiscreteGPBandit`, which never spends a trial on
  a student already evaluated.
* ``random``: Vizier's ``RandomDesigner``, uniform over the product of the factors.
* ``quasi_random``: Vizier's ``QuasiRandomDesigner``, a scrambled Halton sequence over the factors.
* ``eagle``: Vizier's ``EagleStrategyDesigner`` (firefly algorithm), single-objective, behind the
  scalarisation of :class:`~autodistill.search.designers.eagle.ScalarizedEagle`.
* ``nsga2``: Vizier's ``NSGA2Designer`` as the steady-state
  :class:`~autodistill.search.designers.nsga2.SteadyStateNSGA2`.
* ``kdnas``: KD-NAS's reward-driven controller (a REINFORCE-trained Flax policy over the factors
  and a reward predictor that ranks its samples),
  :class:`~autodistill.search.designers.kdnas.KdnasController` (our reading of the paper).

Every designer is rebuilt from the study's history for each suggestion
(:func:`~autodistill.search.designers.replay.suggest`; the reasons are in that module), and the
Vizier service runs it through :class:`autodistill.search.policy.SearchPolicyFactory`.

Modules: ``replay`` (:func:`make_designer`, :func:`suggest`), ``seeds`` (:func:`call_seed`, the
search's Halton sequence), ``history`` (reading objectives and students off trials),
``gp_bandit``, ``eagle``, ``nsga2``, ``kdnas``, and ``_vizier``, the one module that imports Vizier's private
designer modules.

This ``__init__`` imports neither Vizier nor JAX: the search's config validation and a plain
``import autodistill`` read :data:`DESIGNERS` and :func:`check_designer` from here, and the other
public names load their module (and Vizier) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

DESIGNERS = ("gp_bandit", "random", "quasi_random", "eagle", "nsga2", "kdnas")
DEFAULT_DESIGNER = "gp_bandit"


def check_designer(name: str) -> str:
  """Returns ``name`` if it is one of :data:`DESIGNERS`.

  Raises:
    ValueError: unknown name (the message lists :data:`DESIGNERS`).
  """
  if name not in DESIGNERS:
    raise ValueError(f"unknown designer {name!r}; choose one of {list(DESIGNERS)}.")
  return name


# Public name -> the module defining it. Those modules import Vizier and JAX, which take seconds
# to load, so they load when one of their names is first used (PEP 562), not with the package.
_LAZY = {
    "make_designer": "autodistill.search.designers.replay",
    "suggest": "autodistill.search.designers.replay",
    "NOVELTY_CANDIDATES": "autodistill.search.designers.replay",
    "call_seed": "autodistill.search.designers.seeds",
    "HALTON_SKIP": "autodistill.search.designers.seeds",
    "DiscreteGPBandit": "autodistill.search.designers.gp_bandit",
    "GP_PADDING": "autodistill.search.designers.gp_bandit",
    "CLEAR_JAX_CACHES_EVERY": "autodistill.search.designers.gp_bandit",
    "release_compiled": "autodistill.search.designers.gp_bandit",
    "ScalarizedEagle": "autodistill.search.designers.eagle",
    "SteadyStateNSGA2": "autodistill.search.designers.nsga2",
    "NSGA2_POPULATION": "autodistill.search.designers.nsga2",
    "KdnasController": "autodistill.search.designers.kdnas",
}

__all__ = ["DESIGNERS", "DEFAULT_DESIGNER", "check_designer", *_LAZY]


def __getattr__(name: str) -> Any:
  if name not in _LAZY:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(_LAZY[name]), name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))
