"""KD-NAS (Trivedi et al. 2023) at its own scale: an XLM-RoBERTa base teacher you provide,
distilled on one accelerator, students chosen for CPU latency budgets.

Command::

  autodistill search --config=experiments/kdnas_xlmr.py:/data/xlm-roberta-base --workdir=w/xlmr
  autodistill search --config=experiments/kdnas_xlmr.py:/data/xlm-roberta-base,8,16 \\
      --config.data.corpus='/data/cc100/*.txt' --workdir=w/xlmr
  autodistill recommend --config=experiments/kdnas_xlmr.py:/data/xlm-roberta-base,8,16 \\
      --workdir=w/xlmr

The argument after the colon is the teacher's directory (a Hugging Face
``XLMRobertaForMaskedLM`` checkpoint with its ``tokenizer.json``, e.g. ``xlm-roberta-base`` saved
with ``save_pretrained``; nothing is downloaded), then optional latency budgets in milliseconds
(batch-1 latency on this machine's CPU at sequence length 128). KD-NAS reports a student 7x
faster than XLM-R base on CPU at 90% of its accuracy, so a first budget of a seventh of the
teacher's CPU latency (``autodistill latency`` measures it) is the paper's operating point.

What differs from ``experiments/kdnas.py`` (the same controller, reward and multi-layer
objective):

* teacher: XLM-R base (12 layers, hidden 768, a 250,002-token SentencePiece vocabulary). Its
  checkpoint has its MLM head, so it is used as is; a pooler and NSP head are fitted on the
  frozen encoder and L_N is dropped unless they beat chance (README, the Teacher section).
* data: ``data.corpus`` defaults to the offline BBC News corpus (English); point it at
  multilingual text (a CC-100 sample, as XLM-R's own corpus) for a multilingual student.
  Sequences of 128, batch 256.
* space: 6-block MobileBERT-style students (hidden 256-512, bottleneck 64-128, 4 or 8 heads,
  intermediate 512 or 1024, 1 or 2 FFNs; embedding 128, so the 250k-row table costs 32M
  parameters rather than XLM-R's 192M). The baseline is the largest.
* trials: the multi-layer objective (each block against teacher layer 2k, plus the logits) in
  one phase of the plan's 6 x 160 + 2,000 = 2,960 steps, bfloat16, every local device on the data
  axis, on a proxy set of 50,000 training documents (``search.proxy_documents``: about one pass
  of the trial's 758k sequences if a document holds ~2,000 tokens; size it to your corpus);
  latency on the CPU, where KD-NAS deploys. ``finalize`` distils the two best 10x longer, on
  every training document.

Where it runs: one CUDA GPU (install ``jax[cuda12]``), or a TPU host. How long: not measured by
this project (no XLM-R checkpoint or GPU has been available to it); 2,960 steps at batch 256 x
128 of a 6-block student against a 12-layer teacher should take minutes per trial on an
H100-class GPU.
"""

from autodistill.config import default_config


def get_config(arg: str = ""):
  teacher, *budgets = arg.split(",")
  if not teacher:
    raise ValueError("experiments/kdnas_xlmr.py needs the XLM-R teacher's directory: "
                     "--config=experiments/kdnas_xlmr.py:/path/to/xlm-roberta-base[,budget_ms...]")
  c = default_config()
  c.teacher.path = teacher
  c.teacher.fit_steps = 500  # the pooler and NSP head only, on the frozen encoder

  c.data.seq_len = 128
  c.data.max_predictions = 20
  c.data.batch_size = 256

  c.space.definition = {
      "name": "kdnas_xlmr",
      "factors": {"hidden_size": [256, 384, 512], "bottleneck_size": [64, 128],
                  "num_heads": [4, 8], "intermediate_size": [512, 1024], "num_ffn": [1, 2]},
      "fixed": {"num_blocks": 6, "embedding_size": 128},
      "tied": {},
      "baseline": {"hidden_size": 512, "bottleneck_size": 128, "num_heads": 8,
                   "intermediate_size": 1024, "num_ffn": 2},
      "description": "6-block students of an XLM-R base teacher (KD-NAS in kind)",
  }

  c.search.designer = "kdnas"
  c.search.num_trials = 40
  c.search.latency_budgets_ms = tuple(float(b) for b in budgets if b)
  c.search.objectives = ("mlm_loss", "latency_ms")
  c.search.study_id = "kdnas"
  c.search.proxy_documents = 50_000

  c.distill.objective = "multi_layer"
  c.distill.logits_weight = 1.0
  c.distill.preset = "flash"
  c.distill.scale = 1.0
  c.distill.steps_per_block = 0
  c.distill.pretrain_steps = 2000
  c.distill.warmup_steps = 100
  c.distill.learning_rate = 1e-3
  c.distill.checkpoint_every = 500
  c.distill.log_every = 100
  c.runtime.dtype = "bfloat16"
  c.runtime.mesh_shape = (-1, 1)

  c.latency.device = "cpu"
  c.latency.seq_len = 128

  c.finalize.scale = 1.0
  c.finalize.steps_per_block = 0
  c.finalize.pretrain_steps = 20000
  c.finalize.warmup_steps = 500
  c.finalize.max_students = 2
  return c
