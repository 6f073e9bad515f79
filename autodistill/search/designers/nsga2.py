"""The ``nsga2`` designer: Vizier's NSGA-II as a steady-state algorithm rebuilt per call.

Survival selects the population from all feasible completed trials at once, and each call
mutates members drawn at random. NSGA-II's crowding distance breaks ties with an unseeded
generator inside Vizier, so ``nsga2`` is reproducible only up to such ties.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from vizier import algorithms as vza
from vizier import pyvizier as vz

from autodistill.search.designers import _vizier
from autodistill.search.designers import history
from autodistill.search.designers import seeds

# Population size and mutation norm (see SteadyStateNSGA2).
NSGA2_POPULATION = 20
NSGA2_MUTATION_NORM = 0.2


class SteadyStateNSGA2(vza.Designer):
  """Vizier's ``NSGA2Designer``, rebuilt from the history per call: a steady-state NSGA-II.

  Settings (Vizier's defaults are for long, batched, continuous studies):

  * population :data:`NSGA2_POPULATION` (20, not 50): the first 20 suggestions are uniformly
    random, afterwards survival (Pareto rank, then crowding distance) keeps 20 parents selected
    from all feasible completed trials;
  * mutation: uniform L-inf perturbation of norm :data:`NSGA2_MUTATION_NORM` (0.2, not
    NSGA2's 0.001) of the genes in [0, 1], which wrap around at the ends. A discrete factor is a
    gene rounded to the nearest of its 2-4 values, so at 0.001 a child almost always equals its
    parent (a wasted distillation). On uniformly random genes, at 0.1 / 0.2 / 0.3 a child
    equals its parent with probability 0.38 / 0.12 / 0.04 on Table 1 (0.54 / 0.28 / 0.13 on
    cpu_demo) and differs in 0.9 / 1.7 / 2.5 factors on average: 0.2 is a local move that is
    rarely a repeat;
  * Vizier mutates the whole population and returns one child per parent; a call returns
    ``count`` children of parents drawn at random (call seed), not a batch of 20 (the service
    would queue the rest as REQUESTED trials);
  * infeasible trials and trials missing an objective are not given to NSGA-II (its Pareto rank
    treats NaN as non-dominated, and its converter raises on missing metrics).

  Vizier's ``PartiallySerializableDesignerPolicy`` could keep the designer between calls instead,
  but ``NSGA2Designer`` does not serialise its trial count (a restored one samples randomly
  forever).
  """

  def __init__(self, problem: vz.ProblemStatement, *, seed: int, num_trials: int):
    self._names = [m.name for m in history.objectives(problem)]
    s = seeds.call_seed(seed, num_trials)
    self._rng = np.random.default_rng(s)
    self._nsga2 = _vizier.NSGA2Designer(
        problem, population_size=NSGA2_POPULATION, first_survival_after=NSGA2_POPULATION,
        adaptation=_vizier.LinfMutation(norm=NSGA2_MUTATION_NORM, seed=s), seed=s)

  def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
    usable = [t for t in completed.trials
              if not t.infeasible and history.has_objectives(t, self._names)]
    self._nsga2.update(vza.CompletedTrials(usable), all_active)

  def suggest(self, count: Optional[int] = None) -> Sequence[vz.TrialSuggestion]:
    count = count or 1
    children = list(self._nsga2.suggest(count))
    if len(children) > count:
      chosen = self._rng.choice(len(children), size=count, replace=False)
      children = [children[i] for i in sorted(chosen)]
    return children
