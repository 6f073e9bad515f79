"""Trains a tiny SuperLM; with a kill step >= 0 it SIGKILLs itself when fetching that batch.

Usage: python kill_worker.py DATA_ROOT WORKDIR KILL_AT_BATCH [REFERENCE_WORKDIR]   (-1: never).
Writes WORKDIR/params.npz on success; with REFERENCE_WORKDIR it then trains the same SuperLM
uninterrupted from scratch there and writes its params.npz too.
"""

import jax
import numpy as np

from autodistill.supernet import SuperLMConfig, train_superlm

from synthetic import KillingData, kill_worker_main, tiny_data, tiny_supernet_space, tiny_teacher


def run(data_root, workdir, kill_at):
  _, train, evaluation = tiny_data(data_root / "data")
  if kill_at >= 0:
    train = KillingData(train, kill_at)
  config = SuperLMConfig(steps=8, relation_heads=2, warmup_steps=2, checkpoint_every=2,
                         log_every=1, progress=False, eval_batches=1, sampling="uniform",
                         subnets_per_step=2)
  superlm = train_superlm(tiny_supernet_space(), tiny_teacher(), train, evaluation, workdir,
                          config)
  flat = {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(superlm.params)}
  np.savez(workdir / "params.npz", **flat)
  print("done", superlm.summary["evals"]["superlm"])


if __name__ == "__main__":
  kill_worker_main(run)
