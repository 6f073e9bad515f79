"""Tokenizer.encode_batch_with_offsets: token spans in the original (cased, accented) text."""

import unicodedata

import numpy as np
import pytest

from autodistill.data import Tokenizer

TEXTS = ["Héllo WORLD! The Café in Zürich serves crème brûlée.",
         "Unbelievably, the U.S. naïveté persisted\tin  1990-1995.", "", "   "]


def _normalize(text: str) -> str:
  """What uncased BERT's normalizer does to a piece of text: lowercase, strip accents."""
  return "".join(c for c in unicodedata.normalize("NFD", text.lower())
                 if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("name", ["tokenizer.json", "vocab.txt"])
def test_offsets_point_at_the_original_characters_of_each_token(minilm_dir, name):
  tokenizer = Tokenizer.from_path(minilm_dir / name)
  vocab = tokenizer._tokenizer.get_vocab()  # pylint: disable=protected-access
  tokens = {i: t for t, i in vocab.items()}
  encoded = tokenizer.encode_batch_with_offsets(TEXTS)
  assert len(encoded) == len(TEXTS)
  pieces = []
  for text, (ids, offsets), plain_ids in zip(TEXTS, encoded, tokenizer.encode_batch(TEXTS)):
    np.testing.assert_array_equal(ids, plain_ids)
    assert ids.dtype == offsets.dtype == np.int32 and offsets.shape == (len(ids), 2)
    assert np.all(np.diff(offsets[:, 0]) >= 0) and np.all(offsets[:, 0] < offsets[:, 1])
    for token_id, (start, end) in zip(ids, offsets):
      token = tokens[int(token_id)]
      assert _normalize(text[start:end]) == token.removeprefix("##"), (text, token, start, end)
      pieces.append(text[start:end])
  # The spans are the original characters (case and accents kept), also for continuation pieces
  # inside a word: crème -> cr ##eme, brûlée -> br ##ule ##e, naïveté -> naive ##te.
  for original in ("Héllo", "WORLD", "Café", "Zürich", "ème", "ûlé", "U", "S", "naïve",
                   "té"):
    assert original in pieces
  start, end = encoded[1][1][1]  # "Unbelievably" -> un ##bel ...: the second piece
  assert start > 0 and TEXTS[1][start - 1].isalpha()
  assert encoded[2][0].shape == (0,) and encoded[2][1].shape == (0, 2)
  assert encoded[3][1].shape == (0, 2)


def test_offsets_match_transformers(minilm_dir):
  transformers = pytest.importorskip("transformers")
  reference = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))
  ours = Tokenizer.from_path(minilm_dir)
  for text, (ids, offsets) in zip(TEXTS, ours.encode_batch_with_offsets(TEXTS)):
    expected = reference(text, add_special_tokens=False, return_offsets_mapping=True)
    assert ids.tolist() == expected["input_ids"]
    assert offsets.reshape(-1, 2).tolist() == [list(o) for o in expected["offset_mapping"]]
