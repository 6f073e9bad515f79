"""A TPU pod: the search scaled out over single-host slices, the winners distilled multi-host.

Roles (the argument after the colon):

* ``search`` (default): one search worker per single-host TPU v4-8 slice (4 chips, mesh
  (data=4, model=1)); the study is served from one place and every worker asks it for trials::

    autodistill serve --config=experiments/pod.py --workdir=/gcs/ad/pod --port=8470
    autodistill search --config=experiments/pod.py --workdir=/gcs/ad/pod \\
        --config.search.endpoint=SERVER:8470 --config.search.client_id=slice-$SLICE_INDEX

* ``finalize``: regular distillation of the winners on a multi-host v4-128 slice (64 chips), one
  process per host with the same command; ``runtime.distributed`` makes every host call
  ``jax.distributed.initialize()`` and the 64 devices form the mesh (data=16, model=4).
  Parameters are sharded over ``model`` by the logical-axis rules of ``autodistill.sharding``,
  the batch over ``data``, and each host feeds its share of the global batch::

    autodistill finalize --config=experiments/pod.py:finalize --workdir=/gcs/ad/pod

Set ``teacher.path`` and ``data.corpus`` (``--config.teacher.path=...``) to your checkpoint and
text. A search worker drives one trial per process, so the hosts of a multi-host slice cannot
share a trial: use single-host slices for the search.

Where it runs: TPU v4 pods; change ``runtime.mesh_shape`` for other slices (the product must
equal the device count; ``-1`` takes the rest). Not run by this project: the tests check the
sharding on 8 simulated CPU devices and the multi-worker search on one machine, never a pod.

How long: like ``experiments/paper_table1.py``, days of TPU time, divided by the number of
search workers.

Produces what ``experiments/cpu_demo.py`` does, at full size.
"""

from autodistill.config import default_config

ROLES = ("search", "finalize")


def get_config(role: str = "search"):
  if role not in ROLES:
    raise ValueError(f"unknown role {role!r}; pass one of {ROLES} after the colon, e.g. "
                     "experiments/pod.py:finalize.")
  c = default_config()
  c.teacher.path = "/gcs/checkpoints/bert-large"  # a Hugging Face BERT directory.
  c.teacher.fit_steps = 10_000
  c.data.corpus = "/gcs/pretraining/*.txt"
  c.data.layout = "blank_lines"  # BERT's pre-training text: blank lines end documents.
  c.data.seq_len = 128
  c.data.max_predictions = 20
  c.data.eval_fraction = 0.001
  c.space.preset = "table1"
  c.search.num_trials = 200
  c.search.objectives = ("mlm_accuracy", "latency_ms")
  c.search.study_id = "autodistill-pod"
  c.distill.preset = "flash"
  c.distill.steps_per_block = 0
  c.distill.pretrain_steps = 0
  c.distill.warmup_steps = 0
  c.distill.learning_rate = 1e-3
  c.runtime.dtype = "bfloat16"
  c.distill.checkpoint_every = 1000
  c.distill.log_every = 100
  c.latency.device = "tpu:0"
  c.latency.dtype = "bfloat16"
  c.finalize.preset = "regular"
  c.finalize.steps_per_block = 0
  c.finalize.pretrain_steps = 0
  c.finalize.warmup_steps = 0
  c.finalize.max_students = 7
  if role == "search":
    c.data.batch_size = 512  # 128 per chip of a v4-8.
    c.runtime.mesh_shape = (4, 1)  # (data, model) over the slice's 4 chips.
  else:
    c.data.batch_size = 2048  # the paper's batch, 32 per chip.
    c.runtime.mesh_shape = (16, 4)  # (data, model) over 64 chips on 16 hosts.
    c.runtime.distributed = True
  return c
