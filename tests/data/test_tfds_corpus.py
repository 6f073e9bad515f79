"""TfdsText: TFDS text corpora, through `tfds.testing.mock_data` and a tiny prepared dataset.

Everything but the missing-extra tests skips when tensorflow-datasets is not installed. None of it
needs TensorFlow or the network.
"""

import importlib
import sys

import numpy as np
import pytest

import autodistill.data
from autodistill.data import corpora, tfds_corpus
from autodistill.data.tfds_corpus import TfdsText

TFDS_MISSING = ("tensorflow-datasets is missing: the tfds extra is not installed "
                "(pip install 'autodistill[tfds]')")
WIKIPEDIA = "wikipedia/20230601.en"
NUM_EXAMPLES = 7


@pytest.fixture(scope="module")
def tfds():
  """The tensorflow_datasets module; skips the test when the tfds extra is not installed."""
  module = pytest.importorskip("tensorflow_datasets", reason=TFDS_MISSING)
  # TFDS registers its legacy builders (wikipedia, c4, ...) by importing its category packages in
  # turn and gives up at the first that fails (nearest_neighbors needs h5py), so the text package
  # is imported here for mock_data to find wikipedia's code.
  importlib.import_module("tensorflow_datasets.text")
  return module


@pytest.fixture
def mock_tfds(tfds):
  """Every TFDS dataset serves NUM_EXAMPLES random examples, without files or downloads."""
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
    yield tfds


def test_missing_tfds_raises_import_error_with_the_fix(monkeypatch):
  # None in sys.modules makes `import tensorflow_datasets` fail even where it is installed.
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"pip install 'autodistill\[tfds\]'"):
    TfdsText(WIKIPEDIA)


def test_module_imports_without_tfds(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  monkeypatch.delitem(sys.modules, "autodistill.data.tfds_corpus")
  # The fresh import rebinds the package attribute; monkeypatch puts the original back afterwards.
  monkeypatch.setattr(autodistill.data, "tfds_corpus", tfds_corpus)
  fresh = importlib.import_module("autodistill.data.tfds_corpus")
  assert fresh is not tfds_corpus
  with pytest.raises(ImportError, match=r"autodistill\[tfds\]"):
    iter(fresh.TfdsText(WIKIPEDIA))


def test_mock_wikipedia_yields_one_document_per_example(mock_tfds):
  corpus = TfdsText(WIKIPEDIA)
  documents = list(corpus)
  assert [d.key for d in documents] == [f"tfds:{WIKIPEDIA}/train#{i}" for i in range(NUM_EXAMPLES)]
  for document in documents:
    assert document.paragraphs and all(p.strip() == p and p for p in document.paragraphs)
  assert corpus.stats.documents == NUM_EXAMPLES
  assert corpus.stats.files == 1 and corpus.stats.empty_documents == 0
  assert corpus.stats.describe().startswith(f"{NUM_EXAMPLES} documents")
  # A second pass yields the same documents; the counters accumulate.
  assert list(corpus) == documents
  assert corpus.stats.documents == 2 * NUM_EXAMPLES


def test_mock_other_split_and_text_key(mock_tfds):
  documents = list(TfdsText(WIKIPEDIA, split="test", text_key="title"))
  assert [d.key for d in documents] == [f"tfds:{WIKIPEDIA}/test#{i}" for i in range(NUM_EXAMPLES)]
  assert list(TfdsText("lm1b", split="test"))[0].key == "tfds:lm1b/test#0"


def test_max_documents_limits_the_pass(mock_tfds):
  corpus = TfdsText(WIKIPEDIA, max_documents=3)
  assert [d.key for d in corpus] == [f"tfds:{WIKIPEDIA}/train#{i}" for i in range(3)]
  assert corpus.stats.documents == 3
  assert list(TfdsText(WIKIPEDIA, max_documents=0)) == []
  assert len(list(TfdsText(WIKIPEDIA, max_documents=100))) == NUM_EXAMPLES


def test_fingerprint_is_stable_and_tracks_every_argument(mock_tfds):
  base = TfdsText(WIKIPEDIA)
  assert base.fingerprint() == base.fingerprint() == TfdsText(WIKIPEDIA).fingerprint()
  list(base)  # Reading does not change it.
  assert base.fingerprint() == TfdsText(WIKIPEDIA).fingerprint()
  variants = [
      TfdsText(WIKIPEDIA, split="test"),
      TfdsText("wikipedia/20230601.fr"),
      TfdsText("lm1b"),
      TfdsText(WIKIPEDIA, text_key="title"),
      TfdsText(WIKIPEDIA, data_dir="/elsewhere"),
      TfdsText(WIKIPEDIA, max_documents=3),
      TfdsText(WIKIPEDIA, paragraph_split="blank_lines"),
  ]
  fingerprints = {base.fingerprint()} | {v.fingerprint() for v in variants}
  assert len(fingerprints) == 1 + len(variants)


def _fixed_examples(examples):
  """An `as_data_source` replacement for mock_data that serves ``examples`` for every split."""
  def as_data_source(self, split=None, **kwargs):
    del self, split, kwargs
    return examples
  return as_data_source


def test_texts_become_paragraphs_and_bad_input_is_counted(tfds):
  long_line = " ".join(["word"] * 3000)  # 14,999 characters: chunked at whitespace.
  examples = [
      {"text": b"First paragraph,\nsecond one.\n\nThird after a blank line."},
      {"text": b""},
      {"text": "  \n \r\n  "},
      {"text": "str text\r\nwith CRLF"},
      {"text": b"bad \xff byte"},
      {"text": np.array(b"a NumPy scalar", dtype=object)},
      {"text": long_line},
  ]
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=_fixed_examples(examples)):
    lines = TfdsText(WIKIPEDIA)
    blank_lines = TfdsText(WIKIPEDIA, paragraph_split="blank_lines")
    by_lines, by_blank_lines = list(lines), list(blank_lines)
  # Skipped (empty) examples leave gaps: keys name the example, not the document count.
  assert [d.key.rsplit("#", 1)[1] for d in by_lines] == ["0", "3", "4", "5", "6"]
  assert by_lines[0].paragraphs == ("First paragraph,", "second one.", "Third after a blank line.")
  assert by_blank_lines[0].paragraphs == ("First paragraph, second one.",
                                          "Third after a blank line.")
  assert by_lines[1].paragraphs == ("str text", "with CRLF")
  assert by_blank_lines[1].paragraphs == ("str text with CRLF",)
  assert by_lines[2].paragraphs == ("bad \ufffd byte",)
  assert by_lines[3].paragraphs == ("a NumPy scalar",)
  assert len(by_lines[4].paragraphs) == 2
  assert all(len(p) <= corpora.MAX_LINE_CHARS for p in by_lines[4].paragraphs)
  assert " ".join(by_lines[4].paragraphs) == long_line
  for corpus in (lines, blank_lines):
    assert corpus.stats.documents == 5 and corpus.stats.empty_documents == 2
    assert corpus.stats.replaced_characters == 1 and corpus.stats.files_with_replacements == 1
    assert corpus.stats.chunked_lines == 1


def test_non_text_feature_is_a_type_error(tfds):
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=_fixed_examples([{"text": 3}])):
    corpus = TfdsText(WIKIPEDIA)
    with pytest.raises(TypeError, match="not text"):
      list(corpus)


def test_bad_arguments(mock_tfds):
  with pytest.raises(ValueError, match="paragraph_split"):
    TfdsText(WIKIPEDIA, paragraph_split="sentences")
  with pytest.raises(ValueError, match="max_documents"):
    TfdsText(WIKIPEDIA, max_documents=-1)
  with pytest.raises(ValueError, match=r"no feature 'body'.*\['text', 'title'\]"):
    TfdsText(WIKIPEDIA, text_key="body")


def test_unprepared_dataset_says_how_to_prepare_it(tfds, tmp_path):
  # lm1b's code is registered but nothing is prepared under tmp_path; the other name is unknown.
  for name in ("lm1b", "autodistill_no_such_dataset"):
    with pytest.raises(FileNotFoundError) as error:
      TfdsText(name, data_dir=tmp_path)
    message = str(error.value)
    assert f"'{name}'" in message and str(tmp_path) in message
    assert f"tfds build {name} --data_dir={tmp_path} --file_format=array_record" in message
  assert not any(tmp_path.iterdir())  # Nothing was downloaded or prepared.


def test_tfrecord_dataset_without_tensorflow_says_what_to_do(tfds, monkeypatch):
  def tfrecord_only(self, split=None, **kwargs):
    raise NotImplementedError("Random access data source for file format tfrecord")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  monkeypatch.setitem(sys.modules, "tensorflow", None)
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=tfrecord_only):
    with pytest.raises(ImportError, match=r"pip install tensorflow.*file_format=array_record"):
      TfdsText(WIKIPEDIA)


@pytest.fixture(scope="module")
def tiny_builder(tfds):
  """Makes a tiny text dataset builder of a given version (not registered, so TFDS reads it from
  its prepared files only, as it would a dataset prepared elsewhere)."""
  texts = ["One line.\nAnother line.", "", "Third example."]

  def make(version: str):
    class AutodistillTinyText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
      """Three short texts; the second is empty."""

      VERSION = tfds.core.Version(version)

      def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

      def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

      def _generate_examples(self):
        for index, text in enumerate(texts):
          yield index, {"text": text}

    return AutodistillTinyText

  return make


def test_prepared_array_record_dataset_is_read_without_tensorflow(tiny_builder, tmp_path):
  had_tensorflow = "tensorflow" in sys.modules
  tiny_builder("1.0.0")(data_dir=tmp_path, file_format="array_record").download_and_prepare()
  corpus = TfdsText("autodistill_tiny_text", data_dir=tmp_path)
  documents = list(corpus)
  # TFDS shuffles examples when preparing, so only the set of documents is known.
  assert sorted(d.paragraphs for d in documents) == [("One line.", "Another line."),
                                                     ("Third example.",)]
  assert all(d.key.startswith("tfds:autodistill_tiny_text/train#") for d in documents)
  assert corpus.stats.documents == 2 and corpus.stats.empty_documents == 1
  if not had_tensorflow:
    assert "tensorflow" not in sys.modules
  with pytest.raises(ValueError, match="Unknown split"):
    TfdsText("autodistill_tiny_text", split="validation", data_dir=tmp_path)

  # Preparing a new version of the dataset changes the fingerprint, so caches are rebuilt.
  before = corpus.fingerprint()
  tiny_builder("1.1.0")(data_dir=tmp_path, file_format="array_record").download_and_prepare()
  assert TfdsText("autodistill_tiny_text", data_dir=tmp_path).fingerprint() != before
