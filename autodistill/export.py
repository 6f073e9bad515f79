"""Hugging Face export of distilled students, with the tokenizer files beside the weights.

A student of the template is a ``MobileBertForPreTraining`` checkpoint (config.json +
model.safetensors, :func:`autodistill.models.hf.export_student`) whenever Hugging Face's
MobileBERT can express it; the exported directory also gets the tokenizer files of the run
(``vocab.txt``, ...) so that ``transformers.AutoTokenizer.from_pretrained(directory)`` works.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any, Callable, Optional

from autodistill.distill.distillation import load_distilled
from autodistill.models import hf
from autodistill.models.configs import StudentConfig

PathLike = str | os.PathLike

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


def copy_tokenizer(source: Optional[PathLike], target: PathLike) -> list[str]:
  """Copies the tokenizer files of directory ``source`` into ``target``; returns their names."""
  if source is None:
    return []
  copied = []
  for name in TOKENIZER_FILES:
    if (pathlib.Path(source) / name).is_file():
      shutil.copyfile(pathlib.Path(source) / name, pathlib.Path(target) / name)
      copied.append(name)
  return copied


def export_student(student: StudentConfig, params: Any, target: PathLike, *,
                   tokenizer: Optional[PathLike] = None) -> pathlib.Path:
  """Writes ``student`` with ``params`` as a Hugging Face MobileBERT checkpoint in ``target``,
  with the tokenizer files of directory ``tokenizer``.

  Raises:
    ValueError: the student has a feature Hugging Face's MobileBERT cannot express (the message
      says which).
  """
  path = hf.export_student(student, params, target)
  copy_tokenizer(tokenizer, path)
  return path


def try_export_student(student: StudentConfig, params: Any, target: PathLike, *,
                       tokenizer: Optional[PathLike] = None,
                       log: Callable[[str], None] = print) -> tuple[Optional[pathlib.Path], str]:
  """:func:`export_student`, or ``(None, why)`` for a student MobileBERT cannot express."""
  try:
    return export_student(student, params, target, tokenizer=tokenizer), ""
  except ValueError as error:
    log(f"no Hugging Face export of {student.name}: {error}")
    return None, str(error)


def export_distilled(source: PathLike, target: Optional[PathLike] = None, *,
                     tokenizer: Optional[PathLike] = None,
                     log: Callable[[str], None] = print) -> pathlib.Path:
  """Exports a finished distillation directory (``result.json`` + ``student/``: a search trial,
  a ``final/<name>`` or a ``distill/<name>``) as a Hugging Face MobileBERT checkpoint.

  Args:
    source: the distillation directory.
    target: where to write (default ``<source>/hf``).
    tokenizer: a directory whose tokenizer files (``vocab.txt``, ...) are copied beside it.

  Raises:
    FileNotFoundError: ``source`` holds no finished distillation.
    ValueError: the student has a feature Hugging Face's MobileBERT cannot express.
  """
  source = pathlib.Path(source)
  if not (source / "result.json").exists() or not (source / "student").exists():
    raise FileNotFoundError(f"{source} holds no finished distillation (result.json and student/ "
                            "missing); pass a search trial directory (trials/<id>), "
                            "final/<name> or distill/<name> whose run has finished.")
  target = pathlib.Path(target) if target else source / "hf"
  student, params, _ = load_distilled(source)
  path = export_student(student, params, target, tokenizer=tokenizer)
  log(f"exported {student.name} to {path} (load with transformers.MobileBertForPreTraining"
      ".from_pretrained or autodistill.models.hf.load_student)")
  return path
