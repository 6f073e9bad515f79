"""The AutoDistill search (paper sections 3.1, 3.5): Vizier loop, designers, Pareto front.

* :func:`search` runs (or resumes) the loop Model Exploration -> Flash Distillation ->
  Evaluation on a Vizier study in the workdir; :func:`serve` shares a study with remote workers.
* :func:`finalize` regular-distils the Pareto-optimal students and exports them.
* :func:`report` rewrites a search's tables and plot from its study.
* :func:`default_config` is the embedded CPU default (an ``ml_collections.ConfigDict``).
"""

import sys
import types

from autodistill.search.config import default_config
from autodistill.search.designers import DESIGNERS, SearchPolicyFactory, make_designer
from autodistill.search.evaluate import SearchContext, evaluate_student, prepare_context
from autodistill.search.finalize import finalize, select_winners
from autodistill.search.loop import (IncompatibleStudyError, SearchResult, search, search_report,
                                     serve, start_server)
from autodistill.search.pareto import dominates, dominating_baseline, hypervolume, pareto_front
from autodistill.search.problem import (DEFAULT_OBJECTIVES, OBJECTIVES, Constraints, Objective,
                                        problem_statement)
from autodistill.search.records import TrialRecord


class _CallableModule(types.ModuleType):
  """Lets ``autodistill.search(config, workdir)`` call :func:`search` while
  ``autodistill.search.pareto`` etc. stay importable (a function re-exported at the top level
  would shadow this subpackage)."""

  def __call__(self, *args, **kwargs):
    return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
