"""The sibling system AutoDistil's (Xu et al., 2022) three sub-spaces: tiny, small and base.

AutoDistil searches BERT-like students (no bottleneck, one FFN, post-LayerNorm) over layers,
hidden size, heads and MLP ratio, split into three sub-spaces by size. Our spaces
``autodistil_tiny``, ``autodistil_small`` and ``autodistil_base`` keep its grids (256 points
each; 96, 96 and 48 valid, because our attention needs the head count to divide the width) and
search them with AutoDistill's flash distillation and Vizier instead of AutoDistil's
weight-sharing supernet.

Command (the argument picks the sub-space; default ``tiny``)::

  autodistill search --config=experiments/autodistil_subspaces.py:small --workdir=workdir/small

Where it runs: a GPU or TPU for real budgets; on a CPU each trial of the tiny sub-space takes a
few minutes at these step counts (4-7 layers, hidden 128-256, sequence length 32).

How long: not measured end to end by this project; the trial count and steps below are sized for
an afternoon on one GPU.

Produces what ``experiments/cpu_demo.py`` does; compare the fronts of the three sub-spaces by
pointing ``autodistill report`` at each workdir.
"""

from autodistill.config import default_config

SUBSPACES = ("tiny", "small", "base")


def get_config(subspace: str = "tiny"):
  if subspace not in SUBSPACES:
    raise ValueError(f"unknown AutoDistil sub-space {subspace!r}; pass one of {SUBSPACES} after "
                     "the colon, e.g. experiments/autodistil_subspaces.py:small.")
  c = default_config()
  c.space.preset = f"autodistil_{subspace}"
  c.search.num_trials = 30
  c.search.objectives = ("mlm_accuracy", "latency_ms")
  c.distill.steps_per_block = 50
  c.distill.pretrain_steps = 500
  c.distill.warmup_steps = 50
  c.finalize.max_students = 3
  return c
