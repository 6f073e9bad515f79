"""The checkpoints of a training run: Orbax ``CheckpointManager`` in ``<workdir>/checkpoints``.

A checkpoint is numbered by global step (across phases) and holds three items saved together, so
a kill can never leave them out of step:

* ``state``: the :class:`~autodistill.train.state.TrainState`;
* ``meta``: JSON -- the phase plan, where in it the run stands, the data pipeline's position and
  the evaluations so far (what :func:`~autodistill.train.loop.run_phases` needs to resume);
* ``best``: with early stopping, the parameters of the best evaluation so far.

:class:`Checkpoints` refuses to resume a workdir written by a different phase plan
(:class:`IncompatibleWorkdirError`) instead of silently training on top of it.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Sequence

import orbax.checkpoint as ocp

from autodistill.errors import UserError, damaged

Params = Any
Plan = list[list[Any]]


class IncompatibleWorkdirError(UserError, ValueError):
  """The workdir's checkpoints come from a run with a different phase plan."""


class Checkpoints:
  """Save and restore of one run's checkpoints in ``<workdir>/checkpoints``.

  Use it as a context manager (or call :meth:`close`): Orbax keeps background threads for
  asynchronous saves until the manager is closed.

  Args:
    workdir: the run's directory; may be relative (Orbax itself needs absolute paths).
    keep: checkpoints kept on disk (older ones are deleted).
  """

  def __init__(self, workdir: str | os.PathLike, keep: int = 2):
    self.workdir = pathlib.Path(workdir)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    # Orbax refuses relative paths; a workdir relative to the current directory is common.
    self._manager = ocp.CheckpointManager((self.workdir / "checkpoints").absolute(),
                                          item_names=("state", "meta", "best"), options=options)

  def __enter__(self) -> "Checkpoints":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def latest_step(self) -> Optional[int]:
    """The global step of the newest checkpoint, or None in a fresh workdir."""
    return self._manager.latest_step()

  def save(self, step: int, meta: dict[str, Any], state: Any,
           best_params: Optional[Params] = None, force: bool = False) -> None:
    """Saves ``state``, ``meta`` and (if given) ``best_params`` as checkpoint ``step``.

    Args:
      step: the global step.
      meta: JSON-serialisable metadata.
      state: the train state (device arrays; saved asynchronously).
      best_params: early stopping's best parameters, or None.
      force: save even where the manager's save interval would skip this step.
    """
    items = {"meta": ocp.args.JsonSave(meta), "state": ocp.args.StandardSave(state)}
    if best_params is not None:
      items["best"] = ocp.args.StandardSave(best_params)
    self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore_meta(self, step: int, plan: Plan) -> dict[str, Any]:
    """The metadata of checkpoint ``step``, checked against the phase ``plan`` of this run.

    Raises:
      IncompatibleWorkdirError: the checkpoint belongs to a different plan.
      CorruptFileError: the checkpoint cannot be read (also from the other restores).
    """
    meta = self._restore(step, "meta", None)
    if meta["plan"] != plan:
      raise IncompatibleWorkdirError(
          f"{self.workdir} holds checkpoints of another run (phases {meta['plan']}), not of this "
          f"one ({plan}); use a fresh workdir, or the same settings to resume.")
    return meta

  def restore_state(self, step: int, abstract_state: Any) -> Any:
    """The train state of checkpoint ``step``, laid out as ``abstract_state`` says."""
    return self._restore(step, "state", abstract_state)

  def restore_best(self, step: int, abstract_params: Params) -> Params:
    """Early stopping's best parameters saved with checkpoint ``step``."""
    return self._restore(step, "best", abstract_params)

  def _restore(self, step: int, item: str, abstract: Any) -> Any:
    restore = ocp.args.JsonRestore() if item == "meta" else ocp.args.StandardRestore(abstract)
    try:
      return self._manager.restore(step, args=ocp.args.Composite(**{item: restore}))[item]
    except Exception as error:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types, for a damaged file and for a state of another
      # shape alike.
      directory = self.workdir / "checkpoints" / str(step)
      raise damaged(directory, error, f"if the run's settings changed, use a fresh workdir; if "
                    f"the checkpoint is damaged, delete {directory} to resume from the one "
                    "before it (or all of checkpoints/ to start over)",
                    what=f"this run's checkpoint ({item})") from error

  def wait_until_finished(self) -> None:
    """Blocks until asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and stops Orbax's threads."""
    self._manager.close()


def phase_plan(phases: Sequence[Any]) -> Plan:
  """``[[name, num_steps], ...]`` of ``phases``: what a workdir's checkpoints must match."""
  return [[p.name, int(p.num_steps)] for p in phases]
