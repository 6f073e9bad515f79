"""The paper's setup (AutoDistill section 4.1): Table 1's space, 24 blocks, flash 12k + 25k
steps, regular 240k + 500k steps, batch 2048, LAMB, a TPU mesh.

Command (one process per TPU VM host of a v4-64 slice, 32 chips; see the README, "The paper's
setup on TPU")::

  autodistill search --config=experiments/paper_table1.py:/gcs/ib-bert-large \\
      --workdir=/gcs/autodistill/table1

The argument after the colon is the teacher: a Hugging Face BERT directory (``config.json`` and
weights; the paper's teacher is IB-BERT-large, a 24-layer, 293M-parameter BERT with
inverted bottlenecks, and BERT-large works the same way). Set ``data.corpus`` to the pre-training
text (the paper: BooksCorpus and English Wikipedia, one document per file or BERT's
blank-line format).

Where it runs: a TPU pod slice (the paper used TPU v3 for distillation and measured latency on
TPU v4i); the mesh below is for 32 devices. Nothing of this scale has been run by this project:
every number of the paper comes from Google's runs, and our CPU tests only check that the same
code shards over 8 simulated devices.

How long: the paper's flash distillation is 37k steps at batch 2048 per trial and it searched for
up to 500 trials; finding three students better than MobileBERT took 110 trials on average with
BO (Figure 3). Plan on days of a pod slice.

Produces what ``experiments/cpu_demo.py`` does, at full size.
"""

from autodistill.config import default_config


def get_config(teacher_path: str = ""):
  c = default_config()
  c.teacher.path = teacher_path  # IB-BERT-large (or BERT-large) Hugging Face directory.
  c.teacher.fit_steps = 10_000  # only if the checkpoint lacks MLM/NSP heads.

  c.data.corpus = "/gcs/pretraining/*.txt"  # BooksCorpus + English Wikipedia, as text.
  c.data.layout = "blank_lines"  # BERT's pre-training text: blank lines end documents.
  c.data.seq_len = 128  # BERT's first pre-training phase.
  c.data.max_predictions = 20
  c.data.batch_size = 2048  # section 4.1.
  c.data.eval_fraction = 0.001

  c.space.preset = "table1"  # 4 x 4 x 4 x 3 x 3 = 576 blocks, 24 blocks each.

  c.search.designer = "gp_bandit"  # Vizier's Bayesian optimisation (section 3.5).
  c.search.num_trials = 500  # the iteration budget of Figure 3.
  c.search.objectives = ("mlm_accuracy", "latency_ms")  # the paper's pair.

  c.distill.preset = "flash"  # 24 x 500 progressive + 25k pre-training steps, 500 warm-up.
  c.distill.steps_per_block = 0  # 0: from the preset.
  c.distill.pretrain_steps = 0
  c.distill.warmup_steps = 0
  c.distill.learning_rate = 1e-3  # LAMB (the paper does not state it; MobileBERT-like).
  c.runtime.dtype = "bfloat16"
  c.runtime.mesh_shape = (32, 1)  # (data, model): pure data parallelism over 32 chips.
  c.distill.checkpoint_every = 1000
  c.distill.log_every = 100

  c.latency.device = "tpu:0"  # the paper measured on TPU v4i; use the serving chip.
  c.latency.seq_len = 128
  c.latency.dtype = "bfloat16"

  c.finalize.preset = "regular"  # 24 x 10k progressive + 500k pre-training steps, 10k warm-up.
  c.finalize.steps_per_block = 0
  c.finalize.pretrain_steps = 0
  c.finalize.warmup_steps = 0
  c.finalize.max_students = 7  # the paper regular-distilled its seven winners.

  # Table 3: GLUE's nine tasks (prepared with tfds under finetune.data_dir); Table 4 (SQuAD v1.1)
  # is the separate invocation below.
  c.finetune.tasks = ("glue/cola", "glue/mnli", "glue/mrpc", "glue/qnli", "glue/qqp", "glue/rte",
                      "glue/sst2", "glue/stsb", "glue/wnli")
  c.finetune.models = ("final", "teacher")
  c.finetune.num_steps = 0  # 0: finetune.epochs over each training set.
  c.finetune.epochs = 3.0  # BERT's GLUE recipe (the paper does not state its own).
  c.finetune.learning_rates = (5e-5, 3e-5, 2e-5)  # BERT's sweep.
  # GLUE at 128 tokens; run SQuAD at 384 in its own `autodistill finetune --task=squad
  # --config.finetune.seq_len=384` invocation.
  c.finetune.seq_len = 128
  return c
