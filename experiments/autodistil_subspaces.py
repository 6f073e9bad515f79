"""AutoDistil (Xu et al., 2022): its three sub-spaces, each searched through a SuperLM.

AutoDistil searches BERT students (BERT's block: no bottleneck, one FFN, post-LayerNorm, GELU)
over layers, hidden size, MLP ratio and heads, split into three sub-spaces by size (the slides'
table; 256 points each, all valid: each head is ``ceil(hidden / 12)`` wide, which decouples the
attention width from the hidden size as 352 hidden with 10 heads needs). ``cpu`` is a sub-space
of the same kind sized for a 2-core CPU (1-4 blocks, hidden 64-160, 2-5 heads of hidden / 4).

Command (the argument picks the sub-space; default ``tiny``)::

  autodistill supernet --config=experiments/autodistil_subspaces.py:cpu --workdir=workdir/ad_cpu
  autodistill supernet --config=experiments/autodistil_subspaces.py:small \\
      --config.teacher.path=/path/to/bert-base-uncased --workdir=workdir/ad_small

``supernet`` trains the sub-space's SuperLM (self-attention relation distillation, sandwich
sampling), scores all 256 subnets in the shared weights, writes the trials table, front, plot and
summary in ``<workdir>/supernet/<space>/`` and extracts the best subnet as a student (then
``autodistill finetune --model=supernet/<space>/students/<name>``). ``autodistill search`` with
the same config searches the sub-space AutoDistill's way instead (BO + flash distillation).

Where it runs: ``cpu`` on a laptop (the teacher stage, then a SuperLM in minutes); the paper's
sub-spaces want a BERT-base teacher and an accelerator (the SuperLM of ``base`` is a 12-layer,
640-wide model, trained for 30,000 steps of batch 256 here; AutoDistil's own budget is not in
the seeds we have).

How long: ``cpu`` measured in the README's AutoDistil section; the paper's sub-spaces not
measured by this project.
"""

from autodistill.config import default_config

SUBSPACES = ("tiny", "small", "base", "cpu")


def get_config(subspace: str = "tiny"):
  if subspace not in SUBSPACES:
    raise ValueError(f"unknown AutoDistil sub-space {subspace!r}; pass one of {SUBSPACES} after "
                     "the colon, e.g. experiments/autodistil_subspaces.py:small.")
  c = default_config()
  c.space.preset = f"autodistil_{subspace}"
  # The AutoDistill search of the same space (autodistill search), for comparison.
  c.search.num_trials = 30
  c.search.objectives = ("mlm_accuracy", "latency_ms")
  c.distill.steps_per_block = 50
  c.distill.pretrain_steps = 500
  c.distill.warmup_steps = 50
  c.finalize.max_students = 3
  if subspace == "cpu":
    c.search.num_trials = 12
    c.search.objectives = ("mlm_loss", "latency_ms")
    c.distill.steps_per_block = 10
    c.distill.pretrain_steps = 40
    c.distill.warmup_steps = 4
    c.supernet.relation_heads = 4
    return c
  # The SuperLM at accelerator scale: 128-token sequences, batch 256, the paper's 12 relation
  # heads (MiniLM-v2 for a base-size teacher). Point --config.data.corpus at pre-training text
  # (the default is the offline BBC corpus).
  c.data.seq_len = 128
  c.data.max_predictions = 20
  c.data.batch_size = 256
  c.latency.seq_len = 128
  c.supernet.steps = 30_000
  c.supernet.warmup_steps = 1_000
  c.supernet.relation_heads = 12
  c.supernet.eval_batches = 16
  c.supernet.cost = "latency_ms"
  return c
