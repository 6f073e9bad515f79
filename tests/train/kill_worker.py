"""Runs a tiny distillation; with a kill step >= 0 it SIGKILLs itself when fetching that batch.

Usage: python kill_worker.py DATA_ROOT WORKDIR KILL_AT_BATCH [REFERENCE_WORKDIR]   (-1: never).
Used by test_loop.py's kill-and-resume test; writes WORKDIR/params.npz on success. With
REFERENCE_WORKDIR it then runs the same distillation uninterrupted from scratch there, in this
process (its programs are compiled already), and writes REFERENCE_WORKDIR/params.npz too.
"""

import jax
import numpy as np

from autodistill.distill import DistillConfig, distill

from synthetic import KillingData, kill_worker_main, tiny_data, tiny_student, tiny_teacher


def run(data_root, workdir, kill_at):
  _, train, evaluation = tiny_data(data_root / "data")
  if kill_at >= 0:
    # Fetches continue from the resumed position, so count from the saved position on.
    train = KillingData(train, kill_at)
  config = DistillConfig(steps_per_block=3, pretrain_steps=8, warmup_steps=2, checkpoint_every=2,
                         log_every=1, progress=False, eval_at_start=False)
  result = distill(tiny_student(), tiny_teacher(), train, evaluation, workdir, config)
  flat = {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(jax.device_get(result.params))}
  np.savez(workdir / "params.npz", **flat)
  print("done", result.evals["pretraining_distillation"])


if __name__ == "__main__":
  kill_worker_main(run)
