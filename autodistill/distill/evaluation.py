"""Held-out pre-training accuracy: the accuracy objective of the search (paper sections 3.1, 4.1).

MLM accuracy is the fraction of real masked positions whose arg-max prediction is the original
token; NSP accuracy is over real examples. Both are computed over one full pass of the held-out
split, with padded predictions and padded examples excluded.

The held-out batches are the same for every pass and every student, so a split small enough
(:data:`DEVICE_CACHE_BYTES`) is built once and kept on the devices: later evaluations, and the
later trials of a search worker, skip the host-side pipeline (about a second per pass of the demo).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from autodistill import sharding
from autodistill.distill import losses
from autodistill.train.state import Program

Params = Any

# Held-out splits up to this size stay on the devices between passes (per split and mesh).
DEVICE_CACHE_BYTES = 256 << 20
_DEVICE_BATCHES: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _held_out_batches(eval_data: Any, mesh: Mesh, data_axis: str) -> Iterator[dict[str, Any]]:
  """One pass over ``eval_data`` as device batches, kept for the next pass if it is small."""
  try:
    cache = _DEVICE_BATCHES.setdefault(eval_data, {})
  except TypeError:  # not weak-referenceable: nothing is kept
    cache = {}
  key = (mesh, data_axis)
  if cache.get(key) is not None:
    yield from cache[key]
    return
  kept: Optional[list] = None if key in cache else []  # None: too large to keep
  size = 0
  eval_data.reset()
  for batch in eval_data.device_batches(mesh, data_axis):
    yield batch
    if kept is not None:
      size += sum(x.nbytes for x in batch.values())
      kept.append(batch)
      if size > DEVICE_CACHE_BYTES:
        kept = None
  cache[key] = kept


def pretraining_eval_step(apply_fn: Callable[..., Any]) -> Callable[..., dict[str, jax.Array]]:
  """Sums of correct predictions and losses for one batch, for a pre-training model.

  ``apply_fn(params, input_ids, token_type_ids, attention_mask, masked_positions)`` must return a
  :class:`~autodistill.models.layers.ModelOutput` with MLM and NSP logits.
  """

  def step(params, batch):
    out = apply_fn(params, batch["input_ids"], batch["segment_ids"], batch["input_mask"],
                   batch["masked_lm_positions"])
    w = batch["masked_lm_weights"].astype(jnp.float32)
    ex = batch["example_mask"].astype(jnp.float32)
    mlm_hit = (jnp.argmax(out.mlm_logits, -1) == batch["masked_lm_ids"]).astype(jnp.float32)
    nll = losses.mlm_token_losses(out.mlm_logits, batch["masked_lm_ids"])
    nsp_hit = (jnp.argmax(out.nsp_logits, -1) == batch["next_sentence_labels"]).astype(jnp.float32)
    return {
        "mlm_correct": jnp.sum(mlm_hit * w), "mlm_count": jnp.sum(w),
        "mlm_loss_sum": jnp.sum(nll * w), "mlm_loss_sq_sum": jnp.sum(nll * nll * w),
        "nsp_correct": jnp.sum(nsp_hit * ex), "nsp_count": jnp.sum(ex),
        "nsp_positive": jnp.sum(batch["next_sentence_labels"].astype(jnp.float32) * ex),
        "nsp_loss_sum": losses.nsp_loss(out.nsp_logits, batch["next_sentence_labels"], ex)
                        * jnp.sum(ex),
    }

  return step


def make_pretraining_evaluator(apply_fn: Callable[..., Any], eval_data: Any, mesh: Mesh,
                               param_shardings: Any = None, data_axis: str = "data",
                               programs: Optional[dict[Any, Any]] = None
                               ) -> Callable[[Params], dict[str, float]]:
  """``evaluate(params) -> {"mlm_accuracy", "nsp_accuracy", "mlm_loss", "nsp_loss", "examples",
  "nsp_majority", "mlm_predictions", "mlm_loss_std"}``: ``nsp_majority`` is the share of the
  more frequent NSP label among the held-out examples (the accuracy of always predicting it),
  ``mlm_predictions`` the number of held-out masked predictions the MLM metrics average over, and
  ``mlm_loss_std`` the standard deviation of their losses (the noise of ``mlm_loss`` is
  ``mlm_loss_std / sqrt(mlm_predictions)``, :func:`autodistill.search.pareto.metric_noise`).

  The step is jitted once (or taken from ``programs``, where evaluators of the same ``apply_fn``
  on the same mesh share it); every call makes one full pass over ``eval_data`` from its start.
  """
  batch_sharding = sharding.batch_sharding(mesh, data_axis=data_axis)
  key = ("pretraining_eval", apply_fn, mesh, data_axis)
  programs = {} if programs is None else programs
  if key not in programs:
    programs[key] = Program(jax.jit(pretraining_eval_step(apply_fn),
                                    in_shardings=(param_shardings, batch_sharding),
                                    out_shardings=sharding.replicated(mesh)))
  step = programs[key]

  def evaluate(params: Params) -> dict[str, float]:
    # Every batch is dispatched before any result is read: one transfer at the end, and the
    # host never waits on the device in between.
    sums = [step(params, batch) for batch in _held_out_batches(eval_data, mesh, data_axis)]
    totals: dict[str, float] = {}
    for batch_sums in jax.device_get(sums):
      for k, v in batch_sums.items():
        totals[k] = totals.get(k, 0.0) + float(v)
    eval_data.reset()
    if not totals or totals["mlm_count"] == 0:
      raise ValueError("the evaluation split produced no masked predictions; raise "
                       "eval_fraction or check the corpus.")
    positive = totals["nsp_positive"] / max(totals["nsp_count"], 1.0)
    mean_loss = totals["mlm_loss_sum"] / totals["mlm_count"]
    loss_var = max(totals["mlm_loss_sq_sum"] / totals["mlm_count"] - mean_loss ** 2, 0.0)
    return {
        "mlm_accuracy": totals["mlm_correct"] / totals["mlm_count"],
        "nsp_accuracy": totals["nsp_correct"] / max(totals["nsp_count"], 1.0),
        "mlm_loss": totals["mlm_loss_sum"] / totals["mlm_count"],
        "nsp_loss": totals["nsp_loss_sum"] / max(totals["nsp_count"], 1.0),
        "examples": float(totals["nsp_count"]),
        "nsp_majority": max(positive, 1.0 - positive),
        "mlm_predictions": totals["mlm_count"], "mlm_loss_std": math.sqrt(loss_var),
    }

  return evaluate


def evaluate_pretraining(apply_fn: Callable[..., Any], params: Params, eval_data: Any,
                         mesh: Mesh) -> dict[str, float]:
  """One-off evaluation (see :func:`make_pretraining_evaluator`)."""
  return make_pretraining_evaluator(apply_fn, eval_data, mesh)(params)


def chance_mlm_accuracy(eval_data: Any) -> float:
  """The accuracy of always predicting the most frequent masked token of the split (a baseline)."""
  counts: dict[int, float] = {}
  eval_data.reset()
  for batch in eval_data:
    for token, w in zip(batch["masked_lm_ids"].ravel(), batch["masked_lm_weights"].ravel()):
      if w:
        counts[int(token)] = counts.get(int(token), 0.0) + 1.0
  eval_data.reset()
  total = sum(counts.values())
  return max(counts.values()) / total if total else float(np.nan)


def held_out_predictions(apply_fn: Callable[..., Any], params: Params, eval_data: Any,
                         mesh: Mesh, data_axis: str = "data") -> dict[str, np.ndarray]:
  """Every real held-out masked prediction's loss and correctness, in the split's fixed order.

  ``{"mlm_loss": [n] float64, "mlm_correct": [n] float64}``; their means are
  :func:`make_pretraining_evaluator`'s ``mlm_loss`` and ``mlm_accuracy``. Two models evaluated
  on the same split see the same predictions in the same order, so their difference can be
  judged *paired*: the standard error of a mean difference of per-prediction scores is far
  smaller than the two unpaired standard errors combined when the models err on the same tokens
  (``bench/flash_fidelity.py``).
  """

  @jax.jit
  def step(p, batch):
    out = apply_fn(p, batch["input_ids"], batch["segment_ids"], batch["input_mask"],
                   batch["masked_lm_positions"])
    hit = (jnp.argmax(out.mlm_logits, -1) == batch["masked_lm_ids"]).astype(jnp.float32)
    return (losses.mlm_token_losses(out.mlm_logits, batch["masked_lm_ids"]), hit,
            batch["masked_lm_weights"])

  outs = jax.device_get([step(params, b) for b in _held_out_batches(eval_data, mesh, data_axis)])
  eval_data.reset()
  nll, hit, weight = (np.concatenate([np.asarray(o[i], np.float64).reshape(-1) for o in outs])
                      for i in range(3))
  real = weight > 0
  return {"mlm_loss": nll[real], "mlm_correct": hit[real]}
