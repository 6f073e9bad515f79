"""SQuAD windows, labels and span decoding (autodistill.finetune.qa), checked by hand and against
Hugging Face's tokenizer and run_squad's max-context rule."""

import dataclasses

import numpy as np
import pytest

from autodistill.data import Tokenizer
from autodistill.finetune.qa import decode_spans, decode_spans_with_scores, make_qa_features
from autodistill.finetune.task_types import QaExample

# 30 words that are one token each in the uncased BERT vocabulary (asserted below).
WORDS = ("red blue green black white brown pink gold silver grey one two three four five six "
         "seven eight nine ten cat dog fox owl bee ant cow pig hen rat").split()
LONG = " ".join(WORDS)


def _example(uid, question, context, answer=None, occurrence=0):
  """An example whose answer is the ``occurrence``-th appearance of ``answer`` in ``context``."""
  if answer is None:
    return QaExample(uid, question, context)
  start = -1
  for _ in range(occurrence + 1):
    start = context.index(answer, start + 1)
  return QaExample(uid, question, context, (answer,), (start,))


CAFE = _example("cafe", "Who founded the Café?", "The Café was founded by Marie Curie in 1901.",
                "Marie Curie")


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
  tokenizer = Tokenizer.from_path(minilm_dir)
  assert all(len(ids) == 1 for ids in tokenizer.encode_batch(WORDS))
  return tokenizer


def _long_features(tokenizer, answer="four five six", **kwargs):
  """The 30-token passage with a 2-token question ("where?") in 16-token rows: 11-token windows."""
  options = dict(seq_len=16, doc_stride=4, max_query_length=8) | kwargs
  return make_qa_features([_example("long", "where?", LONG, answer)], tokenizer, **options)


def _context_rows(features, row):
  """The context-token positions of a window."""
  return np.flatnonzero(features.offsets[row, :, 0] >= 0)


def _logits(features, values, base=-10.0):
  """[num_features, seq_len] filled with ``base``, with ``values[(row, position)]`` set."""
  logits = np.full(features.input_ids.shape, base, np.float32)
  for (row, position), value in values.items():
    logits[row, position] = value
  return logits


def test_a_short_passage_fits_one_window(tokenizer):
  features = make_qa_features([CAFE], tokenizer, seq_len=32, max_query_length=16)
  question, context = tokenizer.encode_batch([CAFE.question, CAFE.context])
  n = 1 + len(question) + 1 + len(context) + 1
  assert len(features) == 1 and n < 32
  expected = ([tokenizer.cls_id, *question, tokenizer.sep_id, *context, tokenizer.sep_id]
              + [tokenizer.pad_id] * (32 - n))
  assert features.input_ids.tolist() == [expected]
  assert features.token_type_ids.tolist() == [
      [0] * (len(question) + 2) + [1] * (len(context) + 1) + [0] * (32 - n)]
  assert features.attention_mask.tolist() == [[1] * n + [0] * (32 - n)]
  assert features.example_index.tolist() == [0]
  arrays = features.arrays()
  assert sorted(arrays) == sorted(["input_ids", "token_type_ids", "attention_mask",
                                   "start_positions", "end_positions"])
  assert all(a.dtype == np.int32 and len(a) == 1 for a in arrays.values())

  start, end = features.start_positions[0], features.end_positions[0]
  assert tokenizer.decode(features.input_ids[0, start:end + 1]) == "marie curie"
  offsets = features.offsets[0]
  assert CAFE.context[offsets[start, 0]:offsets[end, 1]] == "Marie Curie"
  # Context tokens map to their characters; everything else is (-1, -1).
  first = len(question) + 2
  assert (offsets[:first] == -1).all() and (offsets[first + len(context):] == -1).all()
  assert CAFE.context[offsets[first, 0]:offsets[first + len(context) - 1, 1]] == CAFE.context
  assert CAFE.context[slice(*offsets[first + 1])] == "Café"


def test_questions_are_truncated_to_max_query_length(tokenizer):
  example = _example("q", "which colour comes right after the colour blue in the list?", LONG)
  features = make_qa_features([example], tokenizer, seq_len=24, max_query_length=3)
  question = tokenizer.encode_batch([example.question])[0]
  assert len(question) > 3
  assert features.input_ids[0, 1:4].tolist() == question[:3].tolist()
  assert features.input_ids[0, 4] == tokenizer.sep_id
  assert (features.offsets[0, 5:23, 0] >= 0).all()  # 24 - 3 - 3 = 18 context tokens


def test_a_long_passage_is_split_into_overlapping_windows(tokenizer):
  features = _long_features(tokenizer)
  # Windows of 16 - 2 - 3 = 11 tokens starting every 4 tokens until one reaches token 29:
  # 0-10, 4-14, 8-18, 12-22, 16-26, 20-29.
  assert len(features) == 6 and (features.example_index == 0).all()
  windows = [features.offsets[k, _context_rows(features, k), 0] for k in range(6)]
  starts = [LONG[:w[0]].count(" ") for w in windows]
  assert starts == [0, 4, 8, 12, 16, 20]
  assert [len(w) for w in windows] == [11] * 5 + [10]
  for a, b in zip(windows, windows[1:]):  # consecutive windows share 11 - 4 = 7 tokens
    np.testing.assert_array_equal(a[4:4 + 7], b[:7])
  every = np.unique(np.concatenate(windows))
  assert len(every) == 30 and every[-1] == LONG.index("rat")
  # "four five six" is tokens 13-15: whole in the windows starting at 8 and 12 only.
  assert features.start_positions.tolist() == [0, 0, 4 + 13 - 8, 4 + 13 - 12, 0, 0]
  assert features.end_positions.tolist() == [0, 0, 4 + 15 - 8, 4 + 15 - 12, 0, 0]
  for k in (2, 3):
    assert tokenizer.decode(features.input_ids[k, features.start_positions[k]:
                                               features.end_positions[k] + 1]) == "four five six"
  # The final [SEP] follows the last context token, padding after it.
  assert features.input_ids[5, 14] == tokenizer.sep_id and features.input_ids[5, 15] == 0
  assert features.token_type_ids[5].tolist() == [0] * 4 + [1] * 11 + [0]


def test_a_stride_longer_than_the_window_skips_no_token(tokenizer):
  features = _long_features(tokenizer, doc_stride=20)  # advances by the window's 11 tokens
  windows = [features.offsets[k, _context_rows(features, k), 0] for k in range(len(features))]
  assert [len(w) for w in windows] == [11, 11, 8]
  assert len(np.unique(np.concatenate(windows))) == 30


def _check_is_max_context(doc_spans, cur_span_index, position):
  """BERT run_squad.py's ``_check_is_max_context``, verbatim up to names (the reference)."""
  best_score, best_span_index = None, None
  for span_index, (start, length) in enumerate(doc_spans):
    end = start + length - 1
    if position < start or position > end:
      continue
    score = min(position - start, end - position) + 0.01 * length
    if best_score is None or score > best_score:
      best_score, best_span_index = score, span_index
  return cur_span_index == best_span_index


def test_max_context_matches_run_squad(tokenizer):
  for doc_stride in (3, 4, 5, 20):
    features = _long_features(tokenizer, doc_stride=doc_stride)
    spans = []
    for k in range(len(features)):
      offsets = features.offsets[k, _context_rows(features, k), 0]
      spans.append((LONG[:offsets[0]].count(" "), len(offsets)))
    for k, (start, length) in enumerate(spans):
      expected = [_check_is_max_context(spans, k, start + i) for i in range(length)]
      assert features.is_max_context[k, 4:4 + length].tolist() == expected
      assert not features.is_max_context[k, :4].any()
    # Windows overlap unless the stride exceeds their 11 tokens; each token has exactly one
    # max-context window.
    assert (sum(length for _, length in spans) > 30) == (doc_stride < 11)
    assert features.is_max_context.sum() == 30


def test_answers_keep_accents_case_and_punctuation(tokenizer):
  # "1887" follows "-" with no space: the token ending at the answer's start is not its first.
  context = "Le Café de Flore is in Paris, not in the U.S. capital; it opened on 12-04-1887."
  examples = [_example("flore", "Which café?", context, "Café de Flore"),
              _example("us", "Where is it not?", context, "U.S."),
              _example("year", "When did it open?", context, "1887")]
  features = make_qa_features(examples, tokenizer, seq_len=48, max_query_length=16)
  assert len(features) == 3
  for row, example in enumerate(examples):
    start, end = features.start_positions[row], features.end_positions[row]
    begin, stop = features.offsets[row, start, 0], features.offsets[row, end, 1]
    assert example.context[begin:stop] == example.answers[0]
  one_hot = _logits(features, {(r, p): 10.0 for r, p in enumerate(features.start_positions)})
  one_hot_end = _logits(features, {(r, p): 10.0 for r, p in enumerate(features.end_positions)})
  assert decode_spans(one_hot, one_hot_end, features) == {
      "flore": "Café de Flore", "us": "U.S.", "year": "1887"}


def test_examples_without_answers_or_context(tokenizer):
  examples = [_example("test", "where?", "In Paris."), _example("empty", "where?", "")]
  features = make_qa_features(examples, tokenizer, seq_len=16, max_query_length=8)
  assert len(features) == 1  # an empty passage has no window
  assert features.start_positions.tolist() == features.end_positions.tolist() == [0]
  logits = np.zeros((1, 16))
  logits[0, 4] = 1.0  # "in"
  assert decode_spans(logits, logits, features) == {"test": "In", "empty": ""}


def test_an_answer_that_differs_from_the_context_is_labelled_by_its_offsets(tokenizer):
  context = "The Café was founded by Pierre Curie in 1901."
  example = QaExample("x", "who?", context, ("Marie Curie",), (context.index("Pierre"),))
  features = make_qa_features([example], tokenizer, seq_len=32, max_query_length=8)
  start, end = features.start_positions[0], features.end_positions[0]
  # "Marie Curie" is 11 characters: from "Pierre" to the token holding the 11th, "Curie".
  assert context[features.offsets[0, start, 0]:features.offsets[0, end, 1]] == "Pierre Curie"


def test_invalid_arguments_are_refused(tokenizer):
  with pytest.raises(ValueError, match="no room for a context token"):
    make_qa_features([CAFE], tokenizer, seq_len=67, max_query_length=64)
  make_qa_features([CAFE], tokenizer, seq_len=68, max_query_length=64)
  with pytest.raises(ValueError, match="doc_stride"):
    make_qa_features([CAFE], tokenizer, doc_stride=0)
  with pytest.raises(ValueError, match="unique"):
    make_qa_features([CAFE, CAFE], tokenizer)
  with pytest.raises(ValueError, match="answer_starts"):
    make_qa_features([dataclasses.replace(CAFE, answer_starts=())], tokenizer)
  features = make_qa_features([CAFE], tokenizer, seq_len=32, max_query_length=16)
  with pytest.raises(ValueError, match="do not match"):
    decode_spans(np.zeros((1, 31)), np.zeros((1, 31)), features)


# Decoding. The long example in one 64-token window: "where?" at 1-2, WORDS[i] at position 4 + i,
# [SEP] at 34, padding from 35. The gold span "brown pink" (positions 9-10) scores 1.5 + 1.5.
GOLD = {"start": {(0, 9): 1.5}, "end": {(0, 10): 1.5}}


def _decode(features, start, end, **kwargs):
  return decode_spans(_logits(features, GOLD["start"] | start),
                      _logits(features, GOLD["end"] | end), features, **kwargs)["long"]


def test_decoding_picks_the_best_valid_span(tokenizer):
  features = _long_features(tokenizer, seq_len=64)
  assert len(features) == 1
  assert _decode(features, {}, {}) == "brown pink"
  assert _decode(features, {(0, 20): 1.0}, {(0, 21): 1.0}) == "brown pink"  # a lower valid span
  assert _decode(features, {(0, 20): 2.0}, {(0, 21): 2.0}) == "seven eight"  # a higher one
  # Higher-scoring spans on the question, [CLS] and [SEP] do not count.
  assert _decode(features, {(0, 1): 5.0, (0, 0): 5.0}, {(0, 2): 5.0, (0, 0): 5.0, (0, 34): 5.0}
                 ) == "brown pink"
  # End before start (start on "one", end on "green", with the gold span between them).
  assert _decode(features, {(0, 14): 5.0}, {(0, 6): 5.0}) == "brown pink"
  # A 5-token span, "three ... seven" (positions 16-20), is too long for 3 but fits in 5.
  assert _decode(features, {(0, 16): 5.0}, {(0, 20): 5.0}, max_answer_length=3) == "brown pink"
  assert _decode(features, {(0, 16): 5.0}, {(0, 20): 5.0}, max_answer_length=5) == \
      "three four five six seven"


def test_decoding_returns_empty_when_no_candidate_is_valid(tokenizer):
  features = _long_features(tokenizer, seq_len=64)
  # run_squad's candidates are the n_best top starts and ends of the whole row: with n_best=1 the
  # only start is the question's "where", so there is no valid span; with 2 the gold one is found.
  assert _decode(features, {(0, 1): 5.0}, {}, n_best=1) == ""
  assert _decode(features, {(0, 1): 5.0}, {}, n_best=2) == "brown pink"
  scored = decode_spans_with_scores(np.zeros((1, 64)), np.zeros((1, 64)), features, n_best=1)
  assert scored == {"long": ("", -np.inf)}  # ties pick position 0, [CLS]


def test_decoding_chooses_across_windows(tokenizer):
  features = _long_features(tokenizer)  # windows start at 0, 4, 8, 12, 16, 20; tokens from 4
  early = {"start": {(0, 4 + 1): 2.0}, "end": {(0, 4 + 2): 2.0}}  # "blue green", window 0
  late = {"start": {(5, 4 + 6): 2.5}, "end": {(5, 4 + 7): 2.5}}  # "cow pig", window 5
  start, end = _logits(features, early["start"] | late["start"]), _logits(
      features, early["end"] | late["end"])
  assert decode_spans_with_scores(start, end, features) == {"long": ("cow pig", 5.0)}
  start[0, 5] = end[0, 6] = 2.5  # a tie: the first window wins, as in run_squad's stable sort
  assert decode_spans_with_scores(start, end, features) == {"long": ("blue green", 5.0)}
  start[0, 5] = end[0, 6] = 2.0
  assert decode_spans_with_scores(start, end, features) == {"long": ("cow pig", 5.0)}
  start[0, 5] = end[0, 6] = 3.0
  assert decode_spans_with_scores(start, end, features) == {"long": ("blue green", 6.0)}


def test_max_context_breaks_ties_between_overlapping_windows(tokenizer):
  features = _long_features(tokenizer)
  # "grey" (token 9) is in windows 0 (0-10), 1 (4-14) and 2 (8-18); window 1 gives it the most
  # context (5 left, 5 right). Window 0 scores "grey one" higher than window 1 scores "grey".
  start = _logits(features, {(0, 4 + 9): 5.0, (1, 4 + 9 - 4): 5.0})
  end = _logits(features, {(0, 4 + 10): 5.0, (1, 4 + 9 - 4): 4.0})
  assert decode_spans_with_scores(start, end, features) == {"long": ("grey", 9.0)}
  every_window = dataclasses.replace(features, is_max_context=features.offsets[..., 0] >= 0)
  assert decode_spans(start, end, every_window) == {"long": "grey one"}  # without the rule


def test_gold_labels_decode_to_the_gold_answers(tokenizer):
  context = ("Marie Curie, born in Warsaw, studied in Paris. She won the Nobel Prize in Physics "
             "in 1903 with Pierre Curie and Henri Becquerel, and in Chemistry in 1911.")
  examples = [CAFE,
              _example("long", "where?", LONG, "two three"),  # in windows 2 and 3, not 1
              _example("born", "Where was she born?", context, "Warsaw"),
              _example("second", "Who else won in 1903?", context, "Henri Becquerel"),
              _example("chem", "When did she win in chemistry?", context, "1911")]
  features = make_qa_features(examples, tokenizer, seq_len=16, doc_stride=4, max_query_length=8)
  labelled = features.start_positions > 0
  assert labelled.any() and (~labelled).any()
  for index, example in enumerate(examples):
    rows = np.flatnonzero(features.example_index == index)
    assert labelled[rows].any()
    if example.uid in ("long", "second", "chem"):
      assert not labelled[rows[0]]  # the answer is not in the first window
  start = _logits(features, {(r, p): 10.0 for r, p in enumerate(features.start_positions)})
  end = _logits(features, {(r, p): 10.0 for r, p in enumerate(features.end_positions)})
  assert decode_spans(start, end, features) == {e.uid: e.answers[0] for e in examples}


def _hf_labels(encoding, row, example):
  """Hugging Face's run_qa.py ``prepare_train_features`` labels of one window (the reference)."""
  sequence_ids, offsets = encoding.sequence_ids(row), encoding["offset_mapping"][row]
  start_char = example.answer_starts[0]
  end_char = start_char + len(example.answers[0])
  token_start = 0
  while sequence_ids[token_start] != 1:
    token_start += 1
  token_end = len(encoding["input_ids"][row]) - 1
  while sequence_ids[token_end] != 1:
    token_end -= 1
  if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
    return 0, 0
  while token_start < len(offsets) and offsets[token_start][0] <= start_char:
    token_start += 1
  while offsets[token_end][1] >= end_char:
    token_end -= 1
  return token_start - 1, token_end + 1


def test_windows_match_hugging_face(tokenizer, minilm_dir):
  transformers = pytest.importorskip("transformers")
  reference = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))
  context = ("Naïve Élodie moved to São Paulo in 1999; her café, Unbelievable Brûlée, opened "
             "on 12-04-2003 and served crème brûlée to U.S. tourists, unsurprisingly.")
  examples = [CAFE, _example("brulee", "What did the CAFÉ serve?", context, "crème brûlée"),
              _example("year", "When did Élodie move?", context, "1999")]
  seq_len, doc_stride = 32, 6
  features = make_qa_features(examples, tokenizer, seq_len=seq_len, doc_stride=doc_stride,
                              max_query_length=16)
  windows = 0
  for index, example in enumerate(examples):
    rows = np.flatnonzero(features.example_index == index)
    question_length = len(tokenizer.encode_batch([example.question])[0])
    # HF's stride is the overlap of consecutive windows, run_squad's doc_stride their distance.
    stride = seq_len - question_length - 3 - doc_stride
    expected = reference(example.question, example.context, truncation="only_second",
                         max_length=seq_len, stride=stride, return_overflowing_tokens=True,
                         return_offsets_mapping=True, padding="max_length")
    assert len(rows) == len(expected["input_ids"])
    for k, row in enumerate(rows):
      assert features.input_ids[row].tolist() == expected["input_ids"][k]
      assert features.token_type_ids[row].tolist() == expected["token_type_ids"][k]
      assert features.attention_mask[row].tolist() == expected["attention_mask"][k]
      hf_offsets = [list(o) if s == 1 else [-1, -1]
                    for o, s in zip(expected["offset_mapping"][k], expected.sequence_ids(k))]
      assert features.offsets[row].tolist() == hf_offsets
      assert (features.start_positions[row], features.end_positions[row]) == \
          _hf_labels(expected, k, example)
    windows += len(rows)
  # The comparison covers several windows, sub-word pieces and labelled and unlabelled windows.
  assert windows >= 8 and len(np.unique(features.example_index)) == 3
  assert 0 < (features.start_positions > 0).sum() < windows
  assert tokenizer.is_continuation[features.input_ids].any()
