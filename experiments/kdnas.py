"""KD-NAS (Trivedi et al. 2023) on a 2-core CPU: the controller, its latency budget and the
multi-layer hidden-state distillation, on the embedded teacher, data and space.

Command::

  autodistill search --config=experiments/kdnas.py --workdir=workdir/kdnas
  autodistill search --config=experiments/kdnas.py:1.0,1.5 --workdir=workdir/kdnas-budgets
  autodistill recommend --config=experiments/kdnas.py:1.0,1.5 --workdir=workdir/kdnas-budgets

The argument after the colon is a list of latency budgets in milliseconds (batch-1 latency on
this CPU at sequence length 128): the controller's reward uses the first as its budget T (without
one, T is the baseline student's measured latency), and ``recommend`` prints the best student
found within each budget.

What differs from ``experiments/cpu_demo.py`` (everything else is the demo's: MiniLM-L6 teacher
adapted to BBC News, the ``cpu_demo`` space of 48 two-block students, latency on this CPU):

* search: the ``kdnas`` designer (``autodistill/search/designers/kdnas.py``): a Flax policy over
  the factors trained by REINFORCE on the reward ``exp(-mlm_loss) x (latency / T)^w``
  (MnasNet's soft constraint, w = -0.07; ``search.kdnas_hard=True`` for a hard one), and a reward
  predictor that ranks the policy's samples so only the top one is distilled per trial;
* evaluation ("distilled from the teacher on a small proxy set"): each trial distils with the
  multi-layer hidden-state objective (``distill.objective="multi_layer"``: every block against its
  teacher layer, plus the teacher's logits) for the demo's flash budget (60 steps of batch 16 x
  32) on the proxy set: a fixed, seeded 128 of the 2,109 training documents
  (``search.proxy_documents``; 1,598 sequences of 32 tokens, so a trial sees 60% of them);
* objectives: held-out MLM loss and latency, from which the reward is computed;
* finalize: the winner distilled on the corpus with the same objective for the demo's regular
  budget (2 x 40 + 520 = 600 steps, in one phase), as the paper's "selected, and distilled on
  the full training corpus".

What is our reading rather than the paper's (only its abstract is available): the controller's
form and training, the reward formula, the loss's exact form and the proxy set's size; see the
README's KD-NAS section.

How long: about the demo's search (6 trials of about 20-40 s each after the teacher).
"""

from autodistill.config import default_config


def get_config(budgets_ms: str = ""):
  c = default_config()
  c.search.designer = "kdnas"
  c.search.latency_budgets_ms = tuple(float(b) for b in budgets_ms.split(",") if b)
  c.search.objectives = ("mlm_loss", "latency_ms")
  c.search.study_id = "kdnas"
  c.search.proxy_documents = 128
  c.distill.objective = "multi_layer"
  c.distill.logits_weight = 1.0
  return c
