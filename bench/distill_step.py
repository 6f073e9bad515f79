"""Distillation-step throughput: autodistill (JAX) vs a PyTorch peer doing the same work; JSON.

One step = teacher forward (attentions, hidden states, MLM/NSP logits at the masked positions)
+ student forward and backward + LAMB update, for a MobileBERT-shaped student
(``Model_512_128_4_512_4``, 24 blocks) and a BERT teacher (BERT-base shape: 12 layers, 768 wide,
12 heads). The loss is every distillation term at once: for every block, eq. 1 (attention KL, the
12 teacher heads averaged in groups of 3 onto the student's 4) and eq. 2 (feature-map MSE through
a learned 512 -> 768 projection) against the uniformly mapped teacher layer, plus eq. 3
(alpha = 0.5) on the masked positions. Dropout is off on both sides so both do identical work.

The peer is Hugging Face ``transformers`` in PyTorch: ``BertForPreTraining`` (teacher, under
``torch.no_grad``) and ``MobileBertForPreTraining`` (student), MLM logits computed only at the
masked positions (as ours), the same losses, and a LAMB with the same update rule (Adam moments,
decoupled weight decay off biases/norms, layer-wise trust ratio, global-norm clipping), on the
same number of threads. Both sides start from the same weights (the PyTorch models are saved and
imported with :mod:`autodistill.models.hf`), and the first-step losses are compared to show the
work is the same.

    python bench/distill_step.py                 # ~5 min on 2 cores
    python bench/distill_step.py --quick         # smaller models, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from autodistill.distill import losses
from autodistill.distill.initialization import layer_mapping
from autodistill.models import BertConfig, StudentConfig, hf
from autodistill.models.student import StudentForPreTraining, stack_blocks
from autodistill.models.teacher import BertForPreTraining
from autodistill.train import OptimizerConfig, TrainState, make_optimizer, make_train_step

ALPHA = 0.5
LR, WD, CLIP, B1, B2, EPS = 1e-4, 0.01, 1.0, 0.9, 0.999, 1e-6


def make_batch(rng: np.random.Generator, batch: int, seq: int, vocab: int, preds: int):
  ids = rng.integers(1000, vocab, (batch, seq)).astype(np.int32)
  ids[:, 0] = 101
  mask = np.ones((batch, seq), np.int32)
  mask[: batch // 2, seq - seq // 8:] = 0  # some padding, as real batches have
  positions = np.sort(rng.choice(np.arange(1, seq - seq // 8), (batch, preds)), axis=1)
  return {
      "input_ids": ids, "input_mask": mask,
      "segment_ids": (np.arange(seq)[None, :] >= seq // 2).astype(np.int32).repeat(batch, 0),
      "masked_lm_positions": positions.astype(np.int32),
      "masked_lm_ids": rng.integers(1000, vocab, (batch, preds)).astype(np.int32),
      "masked_lm_weights": np.ones((batch, preds), np.float32),
      "next_sentence_labels": rng.integers(0, 2, batch).astype(np.int32),
      "example_mask": np.ones(batch, np.int32),
  }


# ---------------------------------------------------------------------------------------------
# PyTorch peer


def torch_models(student: StudentConfig, teacher: BertConfig, seed: int):
  import torch
  import transformers
  torch.manual_seed(seed)
  t = transformers.BertForPreTraining(transformers.BertConfig(
      **dict(teacher.to_hf(), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
           attn_implementation="eager"))).eval()
  # Attention probabilities (eq. 1) need the eager attention path on both models.
  hf_student = dict(hf.student_config_to_hf(student), hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, attn_implementation="eager")
  s = transformers.MobileBertForPreTraining(transformers.MobileBertConfig(**hf_student)).train()
  proj = torch.nn.ModuleList([torch.nn.Linear(student.hidden_size, teacher.hidden_size)
                              for _ in range(student.num_blocks)])
  return t, s, proj


class TorchLamb:
  """LAMB as optax.lamb computes it: Adam moments (bias-corrected), + wd·p on kernels, layer-wise
  trust ratio ||p|| / ||u||, times -lr; after global-norm clipping."""

  def __init__(self, named_params):
    import torch
    self.params = [(n, p) for n, p in named_params if p.requires_grad]
    self.m = [torch.zeros_like(p) for _, p in self.params]
    self.v = [torch.zeros_like(p) for _, p in self.params]
    self.t = 0

  def step(self):
    import torch
    with torch.no_grad():
      grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in self.params]
      norm = torch.sqrt(sum(torch.sum(g * g) for g in grads))
      scale = torch.clamp(CLIP / (norm + 1e-16), max=1.0)
      self.t += 1
      for (name, p), g, m, v in zip(self.params, grads, self.m, self.v):
        g = g * scale
        m.mul_(B1).add_(g, alpha=1 - B1)
        v.mul_(B2).addcmul_(g, g, value=1 - B2)
        u = (m / (1 - B1 ** self.t)) / (torch.sqrt(v / (1 - B2 ** self.t)) + EPS)
        if name.endswith("weight") and "LayerNorm" not in name:  # ours: not bias, not scale
          u = u + WD * p
        pn, un = torch.linalg.norm(p), torch.linalg.norm(u)
        ratio = torch.where((pn > 0) & (un > 0), pn / un, torch.ones_like(pn))
        p.add_(u * ratio, alpha=-LR)
        p.grad = None


def torch_step_fn(t, s, proj, mapping, student: StudentConfig):
  import torch
  import torch.nn.functional as F
  opt = TorchLamb(list(s.named_parameters()) + [(f"proj.{n}", p) for n, p in proj.named_parameters()])
  group = t.config.num_attention_heads // student.num_heads

  def step(batch):
    ids, seg, mask = batch["input_ids"], batch["segment_ids"], batch["input_mask"]
    pos, labels, w = batch["masked_lm_positions"], batch["masked_lm_ids"], batch["masked_lm_weights"]
    gather = lambda x: torch.gather(x, 1, pos[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    with torch.no_grad():
      to = t.bert(input_ids=ids, token_type_ids=seg, attention_mask=mask, output_attentions=True,
                  output_hidden_states=True)
      t_mlm = t.cls.predictions(gather(to.last_hidden_state))
    so = s.mobilebert(input_ids=ids, token_type_ids=seg, attention_mask=mask,
                      output_attentions=True, output_hidden_states=True)
    s_mlm = s.cls.predictions(gather(so.last_hidden_state))
    s_nsp = s.cls.seq_relationship(so.pooler_output)
    m = mask.float()
    rows = m.sum() * student.num_heads
    total = 0.0
    for k, layer in enumerate(mapping):
      ta = to.attentions[layer - 1]
      ta = ta.view(ta.shape[0], student.num_heads, group, *ta.shape[2:]).mean(2)
      sa = so.attentions[k]
      kl = (torch.xlogy(ta, ta) - ta * torch.log(sa.clamp_min(1e-30))).sum(-1)
      total = total + (kl * m[:, None, :]).sum() / rows
      diff = to.hidden_states[layer] - proj[k](so.hidden_states[k + 1])
      total = total + ((diff ** 2) * m[..., None]).sum() / (m.sum() * diff.shape[-1])
    logp = F.log_softmax(s_mlm, -1)
    mlm = -(torch.gather(logp, -1, labels[..., None])[..., 0] * w).sum() / w.sum()
    p = F.softmax(t_mlm, -1)
    mlm_kd = ((torch.xlogy(p, p) - p * logp).sum(-1) * w).sum() / w.sum()
    nsp = F.cross_entropy(s_nsp, batch["next_sentence_labels"])
    loss = total + ALPHA * mlm + (1 - ALPHA) * mlm_kd + nsp
    loss.backward()
    opt.step()
    return float(loss.detach())

  return step


# ---------------------------------------------------------------------------------------------
# autodistill


def jax_step_fn(student: StudentConfig, teacher: BertConfig, mapping, scan: bool):
  """The step; with ``scan`` the student's blocks run under ``nn.scan`` with stacked parameters
  (``scan_blocks``) and the per-block terms are computed for all blocks at once (the stacked
  attention maps and hidden states against the teacher's, gathered by the layer mapping, and the
  projections stacked too), so the program's size does not grow with the depth."""
  if scan:
    return _jitted(_scanned_loss(student, teacher, mapping))
  s_model, t_model = StudentForPreTraining(student), BertForPreTraining(teacher)
  import flax.linen as nn

  class Proj(nn.Module):
    @nn.compact
    def __call__(self, x, k):
      return nn.Dense(teacher.hidden_size, name=f"block_{k}")(x)

  proj = Proj()

  def loss_fn(params, batch, rng, teacher_params):
    del rng
    args = (batch["input_ids"], batch["segment_ids"], batch["input_mask"])
    pos = batch["masked_lm_positions"]
    to = t_model.apply({"params": teacher_params}, *args, masked_positions=pos)
    so = s_model.apply({"params": params["student"]}, *args, masked_positions=pos)
    mask = batch["input_mask"]
    total = 0.0
    for k, layer in enumerate(mapping):
      total += losses.attention_kl(to.attentions[layer - 1], so.attentions[k], mask)
      feats = proj.apply({"params": params["proj"]}, so.hidden_states[k + 1], k)
      total += losses.feature_map_mse(to.hidden_states[layer], feats, mask)
    terms = losses.pretraining_distill_loss(so.mlm_logits, to.mlm_logits, so.nsp_logits, batch,
                                            alpha=ALPHA)
    return total + terms["loss"], {}

  return _jitted(loss_fn)


def _scanned_loss(student: StudentConfig, teacher: BertConfig, mapping):
  s_model = StudentForPreTraining(student, scan_blocks=True)
  t_model = BertForPreTraining(teacher)
  layers = jnp.asarray(mapping, jnp.int32)

  def loss_fn(params, batch, rng, teacher_params):
    del rng
    args = (batch["input_ids"], batch["segment_ids"], batch["input_mask"])
    pos, mask = batch["masked_lm_positions"], batch["input_mask"]
    to = t_model.apply({"params": teacher_params}, *args, masked_positions=pos)
    so = s_model.apply({"params": params["student"]}, *args, masked_positions=pos)
    t_att = jnp.stack(to.attentions)[layers - 1]
    t_hidden = jnp.stack(to.hidden_states)[layers]
    s_att, s_hidden = jnp.stack(so.attentions), jnp.stack(so.hidden_states[1:])
    proj = params["proj"]["blocks"]
    feats = jnp.einsum("kbth,khd->kbtd", s_hidden, proj["kernel"]) + proj["bias"][:, None, None]
    kl = jax.vmap(losses.attention_kl, in_axes=(0, 0, None))(t_att, s_att, mask)
    mse = jax.vmap(losses.feature_map_mse, in_axes=(0, 0, None))(t_hidden, feats, mask)
    terms = losses.pretraining_distill_loss(so.mlm_logits, to.mlm_logits, so.nsp_logits, batch,
                                            alpha=ALPHA)
    return jnp.sum(kl) + jnp.sum(mse) + terms["loss"], {}

  return loss_fn


def _jitted(loss_fn):
  config = OptimizerConfig(learning_rate=LR, weight_decay=WD, clip_norm=CLIP, b1=B1, b2=B2,
                           eps=EPS, decay="constant")
  optimizer = make_optimizer(config, 1000)  # with its (constant) schedule: the step's rate is 1
  step = make_train_step(loss_fn, optimizer)
  return jax.jit(step, donate_argnums=0), optimizer


def import_into_jax(t, s, proj, student: StudentConfig, teacher: BertConfig, scan: bool):
  """The PyTorch weights as our parameter trees (through the Hugging Face format); with
  ``scan``, the student's blocks and the projections stacked."""
  with tempfile.TemporaryDirectory() as tmp:
    t.save_pretrained(pathlib.Path(tmp, "t"), safe_serialization=True)
    s.save_pretrained(pathlib.Path(tmp, "s"), safe_serialization=True)
    tp = hf.load_bert(pathlib.Path(tmp, "t")).params
    sp = hf.load_student(pathlib.Path(tmp, "s")).params
  pp = {f"block_{k}": {"kernel": jnp.asarray(layer.weight.detach().numpy().T),
                       "bias": jnp.asarray(layer.bias.detach().numpy())}
        for k, layer in enumerate(proj)}
  if scan:
    sp = stack_blocks(sp)
    pp = {"blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *pp.values())}
  return tp, {"student": sp, "proj": pp}


def time_steps(fn, steps: int) -> list[float]:
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--seq-len", type=int, default=128)
  parser.add_argument("--predictions", type=int, default=20)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per side")
  parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
  parser.add_argument("--quick", action="store_true", help="6-block student, 4-layer teacher")
  parser.add_argument("--layout", choices=("scan", "unrolled"), default="scan",
                      help="the student's blocks under nn.scan with stacked parameters "
                      "(DistillConfig.scan_blocks), or one parameter subtree per block")
  args = parser.parse_args()

  import torch
  threads = os.cpu_count()
  torch.set_num_threads(threads)
  student = StudentConfig.from_name("Model_512_128_4_512_4",
                                    attention_dropout_prob=0.0, hidden_dropout_prob=0.0)
  teacher = BertConfig(hidden_dropout_prob=0.0, attention_dropout_prob=0.0)
  if args.quick:
    student = student.replace(num_blocks=6)
    teacher = BertConfig(num_layers=4, hidden_dropout_prob=0.0, attention_dropout_prob=0.0)
  mapping = layer_mapping(student.num_blocks, teacher.num_layers)
  rng = np.random.default_rng(0)
  batch_np = make_batch(rng, args.batch_size, args.seq_len, teacher.vocab_size, args.predictions)
  tokens = args.batch_size * args.seq_len

  t, s, proj = torch_models(student, teacher, seed=0)
  scan = args.layout == "scan"
  t_params, params = import_into_jax(t, s, proj, student, teacher, scan)
  torch_batch = {k: torch.from_numpy(v.astype(np.int64) if v.dtype == np.int32 else v)
                 for k, v in batch_np.items()}
  torch_step = torch_step_fn(t, s, proj, mapping, student)

  jax_step, optimizer = jax_step_fn(student, teacher, mapping, scan)
  batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=optimizer.init(params), rng=jax.random.PRNGKey(0))
  start = time.perf_counter()
  compiled = jax_step.lower(state, batch, t_params).compile()
  compile_s = time.perf_counter() - start

  box = {"state": state}

  def run_jax():
    box["state"], metrics = compiled(box["state"], batch, t_params)
    return float(metrics["loss"])  # a host read ends every step, as the torch side does

  first_jax = run_jax()
  first_torch = torch_step(torch_batch)  # both from identical weights: the losses must agree
  jax_times, torch_times = [], []
  for _ in range(args.rounds):  # alternate so drifting machine load hits both sides alike
    jax_times += time_steps(run_jax, args.steps)
    torch_times += time_steps(lambda: torch_step(torch_batch), args.steps)
  jax_med, torch_med = statistics.median(jax_times), statistics.median(torch_times)
  report = {
      "benchmark": "distillation step (teacher fwd + student fwd/bwd + LAMB)",
      "student": student.name, "student_blocks": student.num_blocks, "layout": args.layout,
      "teacher": f"BERT {teacher.num_layers}x{teacher.hidden_size}x{teacher.num_heads}h",
      "batch_size": args.batch_size, "seq_len": args.seq_len, "tokens_per_step": tokens,
      "threads": threads, "devices": [str(d) for d in jax.devices()],
      "versions": {"jax": jax.__version__, "torch": torch.__version__},
      "first_step_loss": {"autodistill": first_jax, "pytorch": first_torch,
                          "relative_difference": abs(first_jax - first_torch) / abs(first_torch)},
      "autodistill": {"median_step_s": jax_med, "tokens_per_s": tokens / jax_med,
                      "compile_s": compile_s, "steps": len(jax_times)},
      "pytorch": {"median_step_s": torch_med, "tokens_per_s": tokens / torch_med,
                  "steps": len(torch_times)},
      "speedup": torch_med / jax_med,
      "target_speedup": 1.3,
      "load_average": os.getloadavg(),
  }
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
