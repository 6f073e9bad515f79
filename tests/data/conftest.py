"""Fixture corpora written by the tests themselves.

Every document of the synthetic corpus uses words found in no other document ("d3w7" belongs to
document 3), so a test can tell from the token ids alone which document a segment came from.
"""

import pathlib

import numpy as np
import pytest

from autodistill.data import TextFiles, WordPiece

NUM_DOCS = 30
WORDS_PER_DOC = 20
SENTENCES_PER_DOC = 12


def _vocab() -> list[str]:
  vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(5)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  vocab += [".", "##s"]
  vocab += [f"d{d}w{j}" for d in range(NUM_DOCS) for j in range(WORDS_PER_DOC)]
  return vocab


def doc_of_token(tokenizer: WordPiece, token_id: int) -> int:
  """Which synthetic document a word token belongs to (-1 for shared or special tokens)."""
  piece = tokenizer.decode([token_id]).strip()
  return int(piece[1:piece.index("w")]) if piece.startswith("d") and "w" in piece else -1


def write_corpus(root: pathlib.Path, num_docs: int = NUM_DOCS, seed: int = 0) -> pathlib.Path:
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  for d in range(num_docs):
    sentences = []
    for _ in range(SENTENCES_PER_DOC):
      words = [f"d{d}w{j}" + ("s" if rng.random() < 0.2 else "")
               for j in rng.integers(0, WORDS_PER_DOC, rng.integers(5, 11))]
      words[0] = words[0].capitalize()  # sentence starts upper-case, as the splitter expects
      sentences.append(" ".join(words) + ".")
    paragraphs = [" ".join(sentences[i:i + 3]) for i in range(0, len(sentences), 3)]
    (root / f"doc{d:03d}.txt").write_text("\n\n".join(paragraphs))
  return root


@pytest.fixture(scope="session")
def synthetic_tokenizer(tmp_path_factory) -> WordPiece:
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(_vocab()) + "\n")
  return WordPiece.from_path(path)


@pytest.fixture(scope="session")
def synthetic_corpus_dir(tmp_path_factory) -> pathlib.Path:
  return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture()
def synthetic_corpus(synthetic_corpus_dir) -> TextFiles:
  return TextFiles(synthetic_corpus_dir)
