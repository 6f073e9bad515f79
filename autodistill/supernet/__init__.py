"""AutoDistil (Xu et al. 2022): a weight-sharing SuperLM per sub-space, searched without
re-training. :mod:`.superlm` is the model and its loss, :mod:`.training` trains it through the
project's trainer, :mod:`.search` scores every subnet in the shared weights and extracts the
chosen one as a standalone student."""

from autodistill.supernet.search import (RELATION_LOSS, SubnetConstraints, best_subnet,
                                         extract_subnet, objectives_for, proxy_select,
                                         score_subnets, subnet_records, write_search)
from autodistill.supernet.superlm import (SAMPLINGS, SubnetTable, SuperLMConfig, SuperLMLoss,
                                          held_out_scores)
from autodistill.supernet.training import (IncompatibleSuperLMError, SuperLM,
                                           SuperLMSetupError, load_superlm, train_superlm)

__all__ = [
    "IncompatibleSuperLMError", "RELATION_LOSS", "SAMPLINGS", "SubnetConstraints", "SubnetTable",
    "SuperLM", "SuperLMConfig", "SuperLMLoss", "SuperLMSetupError", "best_subnet",
    "extract_subnet", "held_out_scores", "load_superlm", "objectives_for", "proxy_select",
    "score_subnets", "subnet_records", "train_superlm", "write_search",
]
