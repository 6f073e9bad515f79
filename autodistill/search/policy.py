"""The Pythia policy the search's Vizier server runs (paper section 3.5, Model Exploration).

The Vizier service builds a policy per suggestion request; :class:`SearchPolicyFactory` reads the
designer and seed from the study and returns a :class:`StatelessDesignerPolicy`, which answers
with :func:`autodistill.search.designers.replay.suggest` on the study's trials. Nothing is kept
between requests, so a search survives being killed and resumed, and remote workers share one
model of the space.
"""

from __future__ import annotations

from vizier import pythia
from vizier import pyvizier as vz

from autodistill.search.designers import DEFAULT_DESIGNER, DESIGNERS, check_designer
from autodistill.search.designers.replay import suggest
from autodistill.search.problem import METADATA_NS

# Vizier algorithm names accepted in the study's `algorithm` field when the problem metadata
# names no designer (the search loop stores the designer in metadata and sets "DEFAULT").
ALGORITHM_ALIASES = {
    "DEFAULT": DEFAULT_DESIGNER,
    "ALGORITHM_UNSPECIFIED": DEFAULT_DESIGNER,
    "": DEFAULT_DESIGNER,
    "GAUSSIAN_PROCESS_BANDIT": "gp_bandit",
    "RANDOM_SEARCH": "random",
    "QUASI_RANDOM_SEARCH": "quasi_random",
    "EAGLE_STRATEGY": "eagle",
    "NSGA2": "nsga2",
}


def designer_and_seed(problem: vz.ProblemStatement, algorithm: str = "DEFAULT") -> tuple[str, int]:
  """The designer name and seed of a study.

  Read from the problem metadata (namespace ``autodistill``: ``designer`` and ``seed``), where
  the search loop stores them. Without a ``designer`` entry, ``algorithm`` decides: a name of
  :data:`~autodistill.search.designers.DESIGNERS` (any case) or a Vizier algorithm of
  :data:`ALGORITHM_ALIASES` (``DEFAULT`` is ``gp_bandit``). Without a ``seed`` entry the seed
  is 0.

  Raises:
    ValueError: unknown designer or algorithm, or a seed that is not an integer.
  """
  metadata = problem.metadata.ns(METADATA_NS)
  name = metadata.get("designer")
  if not name:
    key = (algorithm or "").strip()
    if key.lower() in DESIGNERS:
      name = key.lower()
    elif key.upper() in ALGORITHM_ALIASES:
      name = ALGORITHM_ALIASES[key.upper()]
    else:
      raise ValueError(f"unknown designer {algorithm!r} (study algorithm, no 'designer' in the "
                       f"{METADATA_NS!r} metadata); choose one of {list(DESIGNERS)}.")
  check_designer(name)
  raw = metadata.get("seed", "0")
  try:
    seed = int(raw)
  except ValueError:
    raise ValueError(f"study metadata {METADATA_NS}/seed={raw!r} is not an integer.") from None
  return name, seed


class StatelessDesignerPolicy(pythia.Policy):
  """A Pythia policy that answers each request with ``suggest`` on the study's trials.

  Keeps nothing between requests: the trials are read through the policy supporter (i.e. from
  the study's database) on every call, so the search survives being killed and resumed.
  """

  def __init__(self, supporter: pythia.PolicySupporter, designer: str, seed: int):
    self._supporter = supporter
    self._designer = check_designer(designer)
    self._seed = seed

  @property
  def name(self) -> str:
    return f"autodistill-{self._designer}"

  def suggest(self, request: pythia.SuggestRequest) -> pythia.SuggestDecision:
    completed = self._supporter.GetTrials(status_matches=vz.TrialStatus.COMPLETED)
    active = self._supporter.GetTrials(status_matches=vz.TrialStatus.ACTIVE)
    suggestions = suggest(self._designer, request.study_config, completed, active,
                          seed=self._seed, count=request.count)
    return pythia.SuggestDecision(suggestions, metadata=vz.MetadataDelta())

  def early_stop(self, request: pythia.EarlyStopRequest) -> pythia.EarlyStopDecisions:
    raise NotImplementedError("autodistill's designers do not stop trials early.")


class SearchPolicyFactory(pythia.PolicyFactory):
  """Pythia policy factory of the search's Vizier server (section 3.5's Model Exploration).

  Pass it as ``DefaultVizierServer(..., policy_factory=SearchPolicyFactory())``. The designer
  and seed come from the study's problem metadata (see :func:`designer_and_seed`).
  """

  def __call__(self, problem_statement: vz.ProblemStatement, algorithm: str,
               policy_supporter: pythia.PolicySupporter, study_name: str) -> pythia.Policy:
    del study_name
    designer, seed = designer_and_seed(problem_statement, algorithm)
    return StatelessDesignerPolicy(policy_supporter, designer, seed)
