"""What a run needs, built once: the teacher, tokenizer, corpus, data pipelines, latency cache.

An :class:`Experiment` is the parsed config (:class:`~autodistill.config.Settings`) bound to a
workdir. Everything expensive is built on first use and then shared by every stage of the run
(:func:`autodistill.pipeline.run_pipeline` builds one experiment for its five stages): reading
the teacher's ``config.json`` costs nothing, tokenizing the corpus and fitting the teacher's
missing heads cost minutes the first time and are cached in the workdir.

:meth:`Experiment.check` tests what a run would otherwise trip over late, after minutes of
work: a missing teacher or corpus, a sequence length beyond the teacher's position table.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, Callable, Mapping

from autodistill import config as config_lib
from autodistill.errors import damaged, first_line
from autodistill.models import hf
from autodistill.models.configs import FACTORS, BertConfig, StudentConfig
from autodistill.space import InvalidArchitecture
from autodistill.workdir import open_workdir

Log = Callable[[str], None]


class Experiment:
  """A parsed config bound to a workdir; builds each piece of a run once, on first use.

  Attributes:
    settings: the parsed config.
    workdir: where everything the run produces and caches lives.
    log: where one-line progress messages go.
  """

  def __init__(self, settings: config_lib.Settings, workdir: str | os.PathLike, *,
               log: Log = print):
    self.settings = settings
    self.workdir = pathlib.Path(workdir)
    self.log = log

  @classmethod
  def create(cls, config: Any, workdir: str | os.PathLike, *, log: Log = print) -> "Experiment":
    """Parses ``config`` (a ``ConfigDict`` or :class:`~autodistill.config.Settings`) once and
    opens ``workdir`` (created, checked writable); an :class:`Experiment` passes through."""
    if isinstance(config, Experiment):
      return config
    return cls(config_lib.parse_config(config), open_workdir(workdir), log=log)

  # -- cheap: files and configs -------------------------------------------------------------

  @functools.cached_property
  def teacher_dir(self) -> pathlib.Path:
    """The teacher checkpoint directory (raises the one "no teacher" error)."""
    return hf.teacher_directory(self.settings.teacher.path)

  @functools.cached_property
  def teacher_config(self) -> BertConfig:
    """The teacher's architecture, from its ``config.json`` alone (no weights are read).

    Raises:
      CorruptFileError: ``config.json`` is not valid JSON or not a BERT config.
    """
    values = hf.read_config(self.teacher_dir)
    try:
      return BertConfig.from_hf(values)
    except (KeyError, TypeError, ValueError) as error:
      raise damaged(self.teacher_dir / "config.json", error, "repair or replace it: it must be "
                    "the config.json of a Hugging Face BERT, RoBERTa or XLM-R checkpoint",
                    what="a teacher config")

  @functools.cached_property
  def tokenizer_dir(self) -> pathlib.Path:
    """The directory of the tokenizer files: ``data.vocab`` (a file or directory) or the
    teacher's. Exports copy its tokenizer files."""
    vocab = self.settings.data.vocab
    if not vocab:
      return self.teacher_dir
    path = pathlib.Path(vocab).expanduser()
    return path.parent if path.is_file() else path

  @functools.cached_property
  def tokenizer(self) -> Any:
    """The tokenizer of ``data.vocab``, or of the teacher's directory.

    Raises:
      ConfigError: there is none, or it is not a BERT, RoBERTa or XLM-R vocabulary.
    """
    from autodistill.data import Tokenizer  # pylint: disable=import-outside-toplevel
    vocab = self.settings.data.vocab
    path = pathlib.Path(vocab).expanduser() if vocab else self.teacher_dir
    fix = ("pass the vocabulary the teacher was trained with: --config.data.vocab=<its vocab.txt, "
           "tokenizer.json or their directory>")
    try:
      return Tokenizer.from_path(path)
    except (FileNotFoundError, ValueError) as error:
      where = f"config.data.vocab={vocab!r}" if vocab else f"the teacher directory {path}"
      missing = isinstance(error, FileNotFoundError)
      problem = ("holds neither vocab.txt nor tokenizer.json" if missing
                 else "is not a BERT, RoBERTa or XLM-R vocabulary "
                 f"({first_line(error).rstrip('.')})")
      raise config_lib.ConfigError(f"{where} {problem}; {fix}.") from None

  @functools.cached_property
  def corpus(self) -> Any:
    """The pre-training corpus (``"bbc"``, a directory or a glob of text files)."""
    # pylint: disable=import-outside-toplevel
    from autodistill.data import BbcNews, TextFiles
    d = self.settings.data
    if d.corpus == "bbc":
      return BbcNews()  # raises FileNotFoundError with the install command
    if not any(ch in d.corpus for ch in "*?[") and not os.path.exists(d.corpus):
      raise FileNotFoundError(f"corpus not found: {d.corpus} does not exist; set "
                              "--config.data.corpus to a directory or glob of .txt files, or "
                              "'bbc' for the offline BBC News corpus.")
    return TextFiles(d.corpus, layout=d.layout, extensions=d.extensions)

  def check(self) -> "Experiment":
    """Checks, in seconds, what a run would otherwise trip over after minutes of work.

    Raises:
      FileNotFoundError: no teacher or corpus.
      ConfigError: no tokenizer, a tokenizer with more ids than the teacher's embedding table, a
        sequence length beyond the teacher's position table.
      CorruptFileError: the teacher's ``config.json`` cannot be read.
    """
    self.corpus  # pylint: disable=pointless-statement
    tokens, rows = self.tokenizer.vocab_size, self.teacher_config.vocab_size
    if tokens > rows:
      raise config_lib.ConfigError(
          f"the tokenizer ({self.tokenizer.source}) has {tokens:,} tokens but the teacher's "
          f"embedding table has {rows:,} rows (vocab_size in {self.teacher_dir / 'config.json'}), "
          "so token ids would index past it; pass the vocabulary the teacher was trained with "
          "(--config.data.vocab=...), or a teacher whose vocab_size fits this tokenizer.")
    positions = self.teacher_config.max_sequence_length
    for field, value in (("data.seq_len", self.settings.data.seq_len),
                         ("latency.seq_len", self.settings.latency.seq_len)):
      if value > positions:
        raise config_lib.ConfigError(
            f"config.{field}={value} exceeds the teacher's {positions} positions (students share "
            f"its position table); set --config.{field}={positions} or less.")
    return self

  def student(self, name_or_point: str | Mapping[str, Any]) -> StudentConfig:
    """A student of the space with the teacher's vocabulary and table sizes.

    A name like ``Model_128_32_4_128_4`` takes the fields it does not give (``num_blocks``,
    ``embedding_size``) from the space's fixed fields, then from :class:`StudentConfig`'s
    defaults; a point is a dict of the space's factors.

    Raises:
      InvalidArchitecture: the name or point is not a valid student.
    """
    t = self.teacher_config
    tables = dict(vocab_size=t.vocab_size, max_position_embeddings=t.max_position_embeddings,
                  type_vocab_size=t.type_vocab_size)
    if not isinstance(name_or_point, str):
      return self.settings.space.config(name_or_point, **tables)
    name = name_or_point
    named = set(FACTORS) | {item.split("=", 1)[0] for item in name.split("-")[1:]}
    defaults = {**self.settings.space.fixed, **tables}
    try:
      return StudentConfig.from_name(name, **{k: v for k, v in defaults.items() if k not in named})
    except ValueError as error:
      raise InvalidArchitecture(str(error)) from None

  # -- expensive: built once, cached in the workdir -----------------------------------------

  @functools.cached_property
  def _data(self) -> tuple[Any, Any]:
    # pylint: disable=import-outside-toplevel
    from autodistill.data import (CorpusTooSmallError, ExampleConfig, pretraining_data,
                                  tokenize_corpus)
    from autodistill.data.corpora import CorpusStats
    d = self.settings.data
    cache_dir = str(self.workdir / "data_cache")
    try:
      train, held_out = pretraining_data(
          self.corpus, self.tokenizer, global_batch_size=d.batch_size,
          examples=ExampleConfig(max_seq_length=d.seq_len,
                                 max_predictions_per_seq=d.max_predictions),
          eval_fraction=d.eval_fraction, seed=d.seed, cache_dir=cache_dir)
    except CorpusTooSmallError as error:
      stats = self.corpus.stats
      if not stats.files:  # tokenized earlier: the counts were cached with the tokens
        stats = CorpusStats.from_dict(
            tokenize_corpus(self.corpus, self.tokenizer, cache_dir=cache_dir).stats)
      if d.layout == "file" and stats.files and stats.documents <= max(2, stats.files // 2):
        raise CorpusTooSmallError(
            f"{first_line(error).rstrip('.')}. The corpus has {stats.documents} documents in "
            f"{stats.files} files (one document per file): if its files hold many documents "
            "separated by blank lines, set --config.data.layout=blank_lines.") from None
      raise
    stats = CorpusStats.from_dict(train.corpus.stats).describe()
    self.log(f"corpus: {stats}; {train.describe()}; {held_out.describe()}")
    return train, held_out

  @property
  def train_data(self) -> Any:
    """The pre-training pipeline (:class:`~autodistill.data.PretrainingData`)."""
    return self._data[0]

  @functools.cached_property
  def trial_data(self) -> Any:
    """What search trials distil on: the pre-training pipeline, or with
    ``search.proxy_documents`` its proxy subset (KD-NAS's "small proxy set")."""
    proxy = self.settings.search.proxy_documents
    if not proxy:
      return self.train_data
    data = self.train_data.proxy(proxy)
    if data is self.train_data:
      self.log(f"search: search.proxy_documents={proxy} covers all "
               f"{len(data.documents)} training documents; trials distil on every one")
    else:
      self.log(f"search: trials distil on a proxy set; {data.describe()}")
    return data

  @property
  def eval_data(self) -> Any:
    """The held-out pipeline the accuracy objectives are measured on."""
    return self._data[1]

  @functools.cached_property
  def teacher(self) -> Any:
    """The teacher with MLM and NSP heads (fitted and cached in ``<workdir>/teacher`` when the
    checkpoint lacks them; paper section 3.3 needs them for eq. 3)."""
    # pylint: disable=import-outside-toplevel
    from autodistill.distill.teacher import TEACHER_OPTIMIZER, prepare_teacher
    t, runtime = self.settings.teacher, self.settings.runtime
    teacher = prepare_teacher(
        self.teacher_dir, self.train_data, self.eval_data, self.workdir, fit_steps=t.fit_steps,
        adapt=t.adapt, optimizer=TEACHER_OPTIMIZER.replace(learning_rate=t.learning_rate),
        encoder_learning_rate=t.encoder_learning_rate, progress=runtime.progress, log=self.log)
    self.train_data.reset()  # distillation starts from the first batch
    self._report_nsp(teacher)
    return teacher

  def _report_nsp(self, teacher: Any) -> None:
    """Says whether eq. 3 keeps L_N for this teacher; an NSP objective needs it."""
    from autodistill.distill.teacher import nsp_verdict  # pylint: disable=import-outside-toplevel
    s = self.settings
    weight = s.distill.for_teacher(teacher).nsp_weight
    if s.distill.nsp_weight is None and "nsp_accuracy" in teacher.evals:
      kept = ("next-sentence prediction stays in the distillation objective" if weight else
              "next-sentence prediction is dropped from the distillation objective (L_N weight "
              "0 in eq. 3; --config.distill.nsp_weight=1 keeps it)")
      self.log(f"teacher: {nsp_verdict(teacher.evals)[1]}: {kept}")
    if not weight and "nsp_accuracy" in s.search.objectives:
      raise config_lib.ConfigError(
          "config.search.objectives includes nsp_accuracy, but the students are not trained on "
          "next-sentence prediction (distill.nsp_weight is 0 for this teacher); drop "
          "nsp_accuracy from the objectives or set --config.distill.nsp_weight=1.")

  @functools.cached_property
  def latency_cache(self) -> Any:
    """The workdir's latency cache (``latency.sqlite``), shared with other workers."""
    from autodistill.hardware.cache import LatencyCache  # pylint: disable=import-outside-toplevel
    return LatencyCache.in_workdir(self.workdir)

  def search_context(self) -> Any:
    """What every search trial of this worker needs (:class:`autodistill.search.SearchContext`)."""
    from autodistill.search.evaluate import SearchContext  # pylint: disable=import-outside-toplevel
    s = self.settings
    context = SearchContext(space=s.space, teacher=self.teacher, train_data=self.trial_data,
                            eval_data=self.eval_data, distill_config=s.distill,
                            latency=s.latency, cache=self.latency_cache,
                            constraints=s.search.constraints)
    if s.search.elastic:
      # pylint: disable-next=import-outside-toplevel
      from autodistill.distill.distillation import elastic_envelope
      students = [context.student(p) for p in s.space.valid_points()]
      context.envelope, why = elastic_envelope(students, self.teacher.config, s.distill)
      if context.envelope is None:
        self.log(f"search.elastic: the students of {s.space.name} cannot share one envelope "
                 f"({why}); every trial compiles its own programs.")
    return context

  def close(self) -> None:
    """Releases open files (the latency cache)."""
    cache = self.__dict__.pop("latency_cache", None)
    if cache is not None:
      cache.close()

  def __enter__(self) -> "Experiment":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()

