"""The AutoDistill search (paper sections 3.1, 3.5): Vizier loop, designers, Pareto front.

* :func:`search` runs (or resumes) the loop Model Exploration -> Flash Distillation ->
  Evaluation on a Vizier study in the workdir; :func:`serve` shares a study with remote workers.
* :func:`autodistill.search.finalize.finalize` regular-distils the Pareto-optimal students and
  exports them.
* :func:`search_report` rewrites a search's tables and plot from its study.

These take the typed pieces of a parsed config (:class:`SearchSettings`, a
:class:`SearchContext` built by :meth:`autodistill.experiment.Experiment.search_context`). From
a config file or ``ConfigDict`` in one call: :func:`autodistill.pipeline.search_stage` (and
``finalize_stage``, ``serve_stage``, ``report_stage``).

The names that need Vizier (the loop, designers, the Vizier problem) are imported on first use,
so ``import autodistill.search`` stays light.
"""

import importlib
from typing import Any

from autodistill.search.pareto import dominates, dominating_baseline, hypervolume, pareto_front
from autodistill.search.records import TrialRecord
from autodistill.search.settings import (DEFAULT_OBJECTIVES, OBJECTIVES, Constraints,
                                         FinalizeSettings, IncompatibleStudyError, Objective,
                                         SearchSettings)

# name -> module that defines it; imported when first asked for (PEP 562).
_LAZY = {
    "search": "autodistill.search.loop",
    "serve": "autodistill.search.loop",
    "search_report": "autodistill.search.loop",
    "start_server": "autodistill.search.loop",
    "SearchResult": "autodistill.search.loop",
    "SearchContext": "autodistill.search.evaluate",
    "evaluate_student": "autodistill.search.evaluate",
    "select_winners": "autodistill.search.finalize",
    "problem_statement": "autodistill.search.problem",
    "DESIGNERS": "autodistill.search.designers",
    "make_designer": "autodistill.search.designers",
    "SearchPolicyFactory": "autodistill.search.policy",
}


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(list(globals()) + list(_LAZY))
