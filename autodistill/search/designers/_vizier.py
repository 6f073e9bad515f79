"""The Vizier designers autodistill builds on, imported from Vizier's private modules.

The public ``vizier.algorithms.designers`` cannot be imported in this environment: it imports
its BOCS designer, which needs ``cvxpy`` (not a dependency of autodistill). So the designers are
imported from ``vizier._src`` here, and only here, so that a Vizier upgrade that moves them
breaks one file. Switch to ``vizier.algorithms.designers`` once it imports without ``cvxpy``.

Also from here: ``ModelInput`` (the features a GP scoring function reads; Vizier exports it only
privately) and ``filter_jit``, the jit Vizier's equinox GP objects need (equinox comes with
Vizier's ``jax`` extra).
"""

from equinox import filter_jit

from vizier._src.algorithms.designers.eagle_strategy.eagle_strategy import EagleStrategyDesigner
from vizier._src.algorithms.designers.gp_bandit import VizierGPBandit
from vizier._src.algorithms.designers.quasi_random import QuasiRandomDesigner
from vizier._src.algorithms.designers.random import RandomDesigner
from vizier._src.algorithms.evolution.nsga2 import NSGA2Designer
from vizier._src.jax.types import ModelData, ModelInput
from vizier._src.algorithms.designers.gp.acquisitions import (
    UCB, AcquisitionFunction, bayesian_scoring_function_factory, create_hv_scalarization)
from vizier._src.algorithms.designers.gp.gp_models import train_gp
# Not re-exported by the public vizier.algorithms.evolution (which has Offspring and Population).
from vizier._src.algorithms.evolution.numpy_populations import LinfMutation

__all__ = ["UCB", "AcquisitionFunction", "EagleStrategyDesigner", "LinfMutation", "ModelData",
           "ModelInput", "NSGA2Designer", "QuasiRandomDesigner", "RandomDesigner",
           "VizierGPBandit", "bayesian_scoring_function_factory", "create_hv_scalarization",
           "filter_jit", "train_gp"]
