"""Corpus sources and bad input: bytes, empty files, long lines, layouts."""

import pytest

from autodistill.data import BbcNews, TextFiles
from autodistill.data.corpora import MAX_LINE_CHARS


def test_text_files_one_document_per_file_with_bad_input(tmp_path):
  (tmp_path / "a.txt").write_text("First paragraph\ncontinues here.\n\nSecond paragraph.\n")
  (tmp_path / "empty.txt").write_text("  \n\n")
  (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait. Na\xefve text.".encode("latin-1"))
  (tmp_path / "long.txt").write_text(("word " * (MAX_LINE_CHARS // 2)).strip())
  corpus = TextFiles(tmp_path)
  docs = {d.key.split("/")[-1]: d for d in corpus}
  assert docs["a.txt#0"].paragraphs == ("First paragraph continues here.", "Second paragraph.")
  assert "empty.txt#0" not in docs
  assert docs["latin1.txt#0"].paragraphs == ("Caf\ufffd au lait. Na\ufffdve text.",)
  long_doc = docs["long.txt#0"]
  assert len(long_doc.paragraphs) >= 2 and max(map(len, long_doc.paragraphs)) <= MAX_LINE_CHARS
  assert " ".join(long_doc.paragraphs).split() == ["word"] * (MAX_LINE_CHARS // 2)  # nothing lost
  stats = corpus.stats
  assert (stats.files, stats.documents, stats.empty_files) == (4, 3, 1)
  assert (stats.replaced_characters, stats.files_with_replacements) == (2, 1)
  assert stats.chunked_lines == 1
  assert "replaced 2 undecodable bytes" in stats.describe()


def test_blank_line_layout_splits_documents_and_skips_empty_ones(tmp_path):
  (tmp_path / "bert.txt").write_text("Doc one line one.\nDoc one line two.\n\n\n\nDoc two.\n\n")
  corpus = TextFiles(str(tmp_path / "*.txt"), layout="blank_lines")
  docs = list(corpus)
  assert [d.paragraphs for d in docs] == [("Doc one line one.", "Doc one line two."),
                                          ("Doc two.",)]
  assert corpus.stats.documents == 2 and corpus.stats.empty_documents >= 1


def test_no_matching_files_and_bad_layout_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no text files match"):
    TextFiles(str(tmp_path / "*.txt"))
  with pytest.raises(ValueError, match="layout='lines' is not supported"):
    TextFiles(tmp_path, layout="lines")


def test_directories_are_filtered_by_extension_and_the_skipped_files_counted(tmp_path):
  (tmp_path / "a.txt").write_text("Some text.")
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "b.TXT").write_text("More text.")
  (tmp_path / "README.md").write_text("# Not part of the corpus")
  (tmp_path / "notes.rst").write_text("Nor this.")
  corpus = TextFiles(tmp_path)
  assert [p.name for p in corpus.files] == ["a.txt", "b.TXT"]
  list(corpus)
  assert corpus.stats.skipped_files == 2
  assert "skipped 2 files of other types" in corpus.stats.describe()
  every = TextFiles(tmp_path, extensions=())
  assert len(every.files) == 4
  assert [p.name for p in TextFiles(tmp_path, extensions=(".md", ".rst")).files] == [
      "README.md", "notes.rst"]
  assert [p.name for p in TextFiles(str(tmp_path / "*.md")).files] == ["README.md"]  # a glob
  with pytest.raises(FileNotFoundError, match=r"only \.json files are read"):
    TextFiles(tmp_path, extensions=(".json",))


def test_fingerprint_changes_when_a_file_changes(tmp_path):
  (tmp_path / "a.txt").write_text("Some text.")
  before = TextFiles(tmp_path).fingerprint()
  assert TextFiles(tmp_path).fingerprint() == before
  (tmp_path / "a.txt").write_text("Other, longer text.")
  assert TextFiles(tmp_path).fingerprint() != before


def test_real_bbc_news_corpus(bbc_dir):
  corpus = BbcNews(topics=("tech",))
  docs = list(corpus)
  assert len(docs) == 401  # the tech topic of the BBC News corpus
  assert all(corpus.topic_of(d) == "tech" for d in docs)
  assert all(len(d.paragraphs) >= 2 for d in docs)  # headline + body
  with pytest.raises(ValueError, match="unknown BBC topics"):
    BbcNews(topics=("weather",))
