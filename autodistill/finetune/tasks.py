"""The registry of named downstream tasks: ``get_task("glue/cola", data_dir=...)``.

The task layer has three floors. :mod:`autodistill.finetune.task_types` (what an example and a
task are) at the bottom; the task definitions above it, each a module exporting a
``FACTORIES`` dict of ``name -> factory(**options) -> Task``: GLUE and SQuAD from
tensorflow-datasets (:mod:`autodistill.finetune.glue`) and the offline tasks from installed
packages (:mod:`autodistill.finetune.offline`); and this registry on top, which merges those
dicts into :data:`TASKS`. Imports only go down, so there is no cycle, and the registry is
explicit: a new source of tasks adds its ``FACTORIES`` to :data:`TASKS` here.
"""

from __future__ import annotations

from typing import Any, Mapping

from autodistill.errors import UserError
from autodistill.finetune import glue, offline
from autodistill.finetune.task_types import Task, TaskFactory


class UnknownTaskError(UserError, KeyError):
  """No task of that name; the message lists the known ones."""

  def __str__(self) -> str:  # KeyError would quote the whole message
    return str(self.args[0])


def _merge(*registries: Mapping[str, TaskFactory]) -> dict[str, TaskFactory]:
  """One registry from several; a name defined twice is a mistake, not an override."""
  merged: dict[str, TaskFactory] = {}
  for registry in registries:
    for name, factory in registry.items():
      if name in merged:
        raise ValueError(f"task {name!r} is defined by two task modules.")
      merged[name] = factory
  return merged


TASKS: dict[str, TaskFactory] = _merge(glue.FACTORIES, offline.FACTORIES)
"""Every named task: ``name -> factory(**options) -> Task``."""


def get_task(name: str, **options: Any) -> Task:
  """The task called ``name`` (see :data:`TASKS`), built with ``options`` (e.g. ``data_dir``).

  Raises:
    UnknownTaskError: no such task; the message lists the registered names.
  """
  if name not in TASKS:
    raise UnknownTaskError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}.")
  return TASKS[name](**options)
