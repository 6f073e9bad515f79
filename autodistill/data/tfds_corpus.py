"""TensorFlow Datasets text corpora (``wikipedia``, ``c4``, ``lm1b``, ...) as a corpus source.

Optional: needs the ``tfds`` extra (``pip install 'autodistill[tfds]'``); this module imports
without it and only :class:`TfdsText`, :func:`load_builder` and :func:`open_split` (which the GLUE
and SQuAD tasks of :mod:`autodistill.finetune.glue` share) ask for it. Datasets are read from a
local ``data_dir`` only; nothing is downloaded at run time. A dataset prepared in a random-access
format (``array_record`` or ``parquet``) is read through ``DatasetBuilder.as_data_source``, which
needs no TensorFlow; one prepared as ``tfrecord`` (the TFDS default) can only be read with
TensorFlow installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from typing import Any, Iterable, Iterator

from autodistill.data import corpora

PARAGRAPH_SPLITS = ("lines", "blank_lines")
INSTALL_HINT = "pip install 'autodistill[tfds]'"

# Bumped whenever the conversion from examples to documents changes, so old caches are not reused.
_FORMAT_VERSION = 1


def import_tfds(user: str = "TfdsText") -> Any:
  """The ``tensorflow_datasets`` module, or an ImportError that says how to install it.

  Args:
    user: what needs it, named in the error (``"TfdsText"``, ``"GLUE task 'glue/cola'"``).
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(f"{user} needs tensorflow-datasets, which is not installed; run "
                      f"`{INSTALL_HINT}`.") from error
  return tfds


def _prepare_hint(name: str, data_dir: str | None) -> str:
  flag = f" --data_dir={data_dir}" if data_dir else ""
  return (f"prepare it once with `tfds build {name}{flag} --file_format=array_record` "
          "(array_record is read without TensorFlow), then pass the same data_dir")


def _where(data_dir: str | None) -> str:
  return (f"data_dir={data_dir!r}" if data_dir else
          "the default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)")


def load_builder(name: str, data_dir: str | os.PathLike | None = None,
                 user: str = "TfdsText") -> Any:
  """The TFDS builder of ``name`` over ``data_dir``, from local files only (never downloads).

  Args:
    name: TFDS name, optionally with config and version (``"glue/cola"``, ``"c4/en:3.1.0"``).
    data_dir: where the dataset was prepared; ``None`` is TFDS's default.
    user: what needs the builder, named in the error when tensorflow-datasets is missing.

  Raises:
    ImportError: tensorflow-datasets is not installed.
    FileNotFoundError: neither the builder's code nor a prepared copy is found; the message says
      how to prepare it.
  """
  tfds = import_tfds(user)
  data_dir = None if data_dir is None else os.fspath(data_dir)
  try:
    # A prepared dataset is loaded from its dataset_info.json, so the builder's code (and its
    # download dependencies) is not needed.
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError as error:
    # The original message lists every registered dataset; its first line is the useful part.
    reason = str(error).strip().splitlines()[0].rstrip(".")
    raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared under {_where(data_dir)} ({reason}; check the "
        f"name); it is never downloaded at run time: {_prepare_hint(name, data_dir)}.") from None


class _TensorflowSplit:
  """A tfrecord split read through TensorFlow; the tf.data pipeline is built on each pass."""

  def __init__(self, builder: Any, split: str):
    self._builder = builder
    self._split = split

  def __iter__(self) -> Iterator[Any]:
    tfds = import_tfds()
    # shuffle_files=False keeps the order, hence example positions, the same on every pass.
    return iter(tfds.as_numpy(self._builder.as_dataset(split=self._split, shuffle_files=False)))


def open_split(builder: Any, name: str, split: str,
               data_dir: str | os.PathLike | None = None) -> Iterable[Any]:
  """The examples (feature dicts) of one split of a builder from :func:`load_builder`.

  A random-access source (``as_data_source``, no TensorFlow) where the dataset was prepared as
  array_record or parquet; a re-iterable TensorFlow pipeline where it is tfrecord only and
  TensorFlow is installed. Opened at once, so an unprepared dataset fails here, not mid-run.

  Args:
    builder: the dataset's builder.
    name: the TFDS name the builder was loaded by (for messages).
    split: TFDS split, slices included (``"train"``, ``"validation_matched[:10%]"``).
    data_dir: the data_dir the builder was loaded from (for messages).

  Raises:
    FileNotFoundError: the dataset is not prepared; the message says how to prepare it.
    ImportError: it is stored as tfrecord only and TensorFlow is not installed.
    ValueError: an unknown split (TFDS's own message lists the splits).
  """
  tfds = import_tfds()
  data_dir = None if data_dir is None else os.fspath(data_dir)
  try:
    return builder.as_data_source(split=split)
  except (NotImplementedError, ValueError, FileNotFoundError) as error:
    # Checked only after trying, because under `tfds.testing.mock_data` the data is served
    # although nothing is prepared on disk.
    if not builder.is_prepared():
      raise FileNotFoundError(
          f"TFDS dataset {name!r} is not prepared under {_where(data_dir)} (looked in "
          f"{builder.data_dir}); it is never downloaded at run time: "
          f"{_prepare_hint(name, data_dir)}.") from error
    random_access = tfds.core.file_adapters.FileFormat.with_random_access()
    if builder.info.available_file_formats() & random_access:
      raise  # e.g. an unknown split: TFDS's own message says which splits exist.
  # Prepared, but only in a format without random access (tfrecord).
  if importlib.util.find_spec("tensorflow") is None:
    stored = getattr(builder.info.file_format, "value", "tfrecord")
    raise ImportError(
        f"TFDS dataset {name!r} under {builder.data_dir} is stored as {stored}, "
        "which only TensorFlow can read: either `pip install tensorflow`, or prepare it again "
        f"in another data_dir with `tfds build {name} --data_dir=NEW_DIR "
        "--file_format=array_record` and pass that data_dir.")
  return _TensorflowSplit(builder, split)


def _line_paragraphs(text: str, stats: corpora.CorpusStats) -> list[str]:
  """Every non-empty line is a paragraph (TFDS wikipedia puts single newlines between them)."""
  lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
  return [chunk for line in lines if line.strip()
          for chunk in corpora.chunk_line(line.strip(), stats)]


class TfdsText:
  """One text feature of a locally prepared TFDS split: one document per example.

  Args:
    name: TFDS name, optionally with config and version (``"wikipedia/20230601.en"``,
      ``"c4/en:3.1.0"``).
    split: TFDS split, slices included (``"train"``, ``"train[:1%]"``).
    text_key: the top-level feature holding the text (bytes or str).
    data_dir: where the dataset was prepared; ``None`` is TFDS's default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    max_documents: stop after this many (non-empty) documents; ``None`` reads the whole split.
    paragraph_split: ``"lines"`` (default): every non-empty line is a paragraph, as in TFDS
      ``wikipedia``; ``"blank_lines"``: paragraphs are separated by blank lines and the lines
      inside one are joined (:func:`corpora.paragraphs_of`).

  Raises:
    ImportError: tensorflow-datasets is not installed (or the dataset is stored as tfrecord and
      TensorFlow is not installed).
    FileNotFoundError: the dataset is not prepared under ``data_dir``.
    ValueError: a bad argument, an unknown split or a missing ``text_key``.
  """

  def __init__(self, name: str, split: str = "train", text_key: str = "text",
               data_dir: str | os.PathLike | None = None, max_documents: int | None = None,
               paragraph_split: str = "lines"):
    if paragraph_split not in PARAGRAPH_SPLITS:
      raise ValueError(f"paragraph_split={paragraph_split!r} is not supported; use 'lines' (one "
                       "paragraph per line) or 'blank_lines' (paragraphs between blank lines).")
    if max_documents is not None and max_documents < 0:
      raise ValueError(f"max_documents must be None or >= 0, not {max_documents}.")
    self.name = name
    self.split = split
    self.text_key = text_key
    self.data_dir = None if data_dir is None else os.fspath(data_dir)
    self.max_documents = max_documents
    self.paragraph_split = paragraph_split
    self.stats = corpora.CorpusStats()
    self._builder = load_builder(name, self.data_dir)
    features = self._builder.info.features
    if features is not None and text_key not in features.keys():
      raise ValueError(f"TFDS dataset {name!r} has no feature {text_key!r}; its features are "
                       f"{sorted(features.keys())}; pass one of them as text_key.")
    # Opened here rather than on first iteration so that an unprepared dataset fails at once.
    self._examples = open_split(self._builder, name, split, self.data_dir)

  def _text(self, example: Any) -> str:
    value = example[self.text_key]
    if getattr(value, "shape", None) == ():  # a NumPy scalar from tfds.as_numpy
      value = value.item()
    if isinstance(value, bytes):
      return corpora.decode(value, self.stats)
    if isinstance(value, str):
      return value
    raise TypeError(f"feature {self.text_key!r} of TFDS dataset {self.name!r} is "
                    f"{type(value).__name__}, not text; pass the key of a text feature.")

  def __iter__(self) -> Iterator[corpora.Document]:
    # The split is counted as one file, so `stats.describe()` reads "N documents from 1 files".
    self.stats.files += 1
    yielded = 0
    if self.max_documents == 0:
      return
    for index, example in enumerate(self._examples):
      text = self._text(example)
      if self.paragraph_split == "lines":
        paragraphs = _line_paragraphs(text, self.stats)
      else:
        paragraphs = corpora.paragraphs_of(text, self.stats)
      if not paragraphs:
        self.stats.empty_documents += 1
        continue
      self.stats.documents += 1
      yield corpora.Document(key=f"tfds:{self.name}/{self.split}#{index}",
                             paragraphs=tuple(paragraphs))
      yielded += 1
      if self.max_documents is not None and yielded >= self.max_documents:
        return

  def fingerprint(self) -> str:
    """Changes with the arguments, the resolved dataset directory and the dataset's version.

    The split sizes recorded when the dataset was prepared are hashed too, so re-preparing a
    dataset under the same version (e.g. another dump) also invalidates caches.
    """
    info = self._builder.info
    splits = sorted((str(s.name), int(s.num_examples), int(s.num_bytes))
                    for s in info.splits.values())
    payload = {
        "format": _FORMAT_VERSION,
        "name": self.name,
        "split": self.split,
        "text_key": self.text_key,
        "data_dir": None if self.data_dir is None else os.path.abspath(self.data_dir),
        "dataset_dir": str(self._builder.data_dir),
        "max_documents": self.max_documents,
        "paragraph_split": self.paragraph_split,
        "full_name": info.full_name,
        "version": str(info.version),
        "splits": splits,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()[:16]
