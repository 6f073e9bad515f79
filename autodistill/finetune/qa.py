"""Extractive question answering (SQuAD v1.1): windows of tokens in, answer spans out.

BERT (Devlin et al., 2019, section 4.2) packs ``[CLS] question [SEP] passage [SEP]``, learns a
start vector S and an end vector E, scores a span i..j by ``S·T_i + E·T_j`` (the model's start and
end logits) and predicts the best span with ``j >= i``. This module is the data side of that recipe,
as BERT's ``run_squad.py`` does it:

* **Windows.** The question is truncated to ``max_query_length`` tokens. A passage longer than
  ``window_length = seq_len - len(question) - 3`` tokens (the truncated question; the three are
  ``[CLS]`` and two ``[SEP]``) is split into overlapping windows ("doc spans"): window ``k`` starts
  at context token ``k * doc_stride`` and holds up to ``window_length`` tokens; windows are added
  until one reaches the passage's last token. So ``doc_stride`` is the step between window starts
  (BERT's semantics), not their overlap (Hugging Face's ``stride``, which is ``window_length -
  doc_stride`` here); a ``doc_stride`` larger than ``window_length`` advances by
  ``window_length``, so no token is ever skipped. Tokens are mapped to characters of the
  *original* context by the tokenizer's offsets (through lowercasing and accent stripping), which
  replaces run_squad's whitespace-token bookkeeping.
* **Labels.** From the first answer (``answers[0]`` at ``answer_starts[0]``): its first token is
  the one containing the start character, its last token the one containing its last character.
  A window that holds the whole answer is labelled with those token positions; every other
  window, and every example without an answer, gets ``0/0`` (the ``[CLS]`` position), as BERT
  does for SQuAD v1.1 training.
* **Decoding.** For every window the positions of its ``n_best`` highest start and end logits
  (over the whole row, question and padding included, as run_squad ranks them) are paired; a span
  counts if both ends are passage tokens, ``end >= start``, it is at most ``max_answer_length``
  tokens long and the window is the start token's "max context" window (of the windows holding a
  token, the one where ``min(left context, right context) + 0.01 * window_length`` is largest,
  run_squad's ``_check_is_max_context``). The example's answer is its best span over all windows
  by ``start_logit + end_logit``, cut from the original context by character offsets.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np

from autodistill.data.tokenization import Tokenizer
from autodistill.finetune.task_types import QaExample

NOT_CONTEXT = -1  # offset of question, special and padding tokens


@dataclasses.dataclass(frozen=True)
class QaFeatures:
  """Windows of SQuAD examples, ready for a span-QA model.

  Attributes:
    input_ids: int32 [num_features, seq_len], ``[CLS] question [SEP] window [SEP]`` then ``[PAD]``.
    token_type_ids: int32 [num_features, seq_len]: 0 for ``[CLS]``, question and first ``[SEP]``,
      1 for the window and the last ``[SEP]`` (0 under RoBERTa / XLM-R), 0 for padding.
    attention_mask: int32 [num_features, seq_len]: 1 for tokens, 0 for padding.
    start_positions, end_positions: int32 [num_features]: token index of the answer's first and last
      token in this window, 0/0 (``[CLS]``) when the window does not hold the whole answer.
    example_index: int32 [num_features]: the row in ``examples`` each window comes from (windows of
      one example are consecutive, in passage order).
    offsets: int32 [num_features, seq_len, 2]: each passage token's ``(start, end)`` character span
      in its example's ``context``; ``(-1, -1)`` for question, special and padding tokens.
    is_max_context: bool [num_features, seq_len]: True where this window is the passage token's
      max-context window (see the module docstring); False for every non-passage token.
    examples: the examples, in input order.
  """

  input_ids: np.ndarray
  token_type_ids: np.ndarray
  attention_mask: np.ndarray
  start_positions: np.ndarray
  end_positions: np.ndarray
  example_index: np.ndarray
  offsets: np.ndarray
  is_max_context: np.ndarray
  examples: tuple[QaExample, ...]

  def __len__(self) -> int:
    return len(self.input_ids)

  def arrays(self) -> dict[str, np.ndarray]:
    """Model inputs and labels: input_ids, token_type_ids, attention_mask, start/end_positions."""
    return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
            "attention_mask": self.attention_mask, "start_positions": self.start_positions,
            "end_positions": self.end_positions}


def _window_starts(num_tokens: int, window_length: int, doc_stride: int) -> list[int]:
  """run_squad's doc spans: starts advance by min(length, doc_stride) until a window reaches the
  end. An empty passage has no window."""
  starts, start = [], 0
  while start < num_tokens:
    starts.append(start)
    length = min(num_tokens - start, window_length)
    if start + length == num_tokens:
      break
    start += min(length, doc_stride)
  return starts


def _max_context(starts: Sequence[int], num_tokens: int, window_length: int) -> np.ndarray:
  """[num_windows, num_tokens] bool: whether each window is each token's max-context window.

  run_squad's ``_check_is_max_context``: among the windows holding a token, the one with the
  largest ``min(left, right) + 0.01 * length``, the first such window on ties.
  """
  if len(starts) == 1:
    return np.ones((1, num_tokens), bool)
  position = np.arange(num_tokens)
  scores = np.full((len(starts), num_tokens), -np.inf)
  for k, start in enumerate(starts):
    length = min(num_tokens - start, window_length)
    end = start + length - 1
    inside = (position >= start) & (position <= end)
    score = np.minimum(position - start, end - position) + 0.01 * length
    scores[k] = np.where(inside, score, -np.inf)
  best = np.argmax(scores, axis=0)  # the first maximum, like run_squad's strict ">"
  return best[None, :] == np.arange(len(starts))[:, None]


def _answer_tokens(example: QaExample, offsets: np.ndarray) -> tuple[int, int] | None:
  """Context-token indices of the first answer's first and last token, None if it has none.

  The first token is the first one ending after the start character (the token holding it, or the
  next one if that character is whitespace); the last is the last one starting before the answer's
  end. As in run_squad, an answer whose text differs from ``context`` at its offset is still
  labelled by its offsets.
  """
  if not example.answers:
    return None
  if len(example.answer_starts) != len(example.answers):
    raise ValueError(f"example {example.uid!r} has {len(example.answers)} answers but "
                     f"{len(example.answer_starts)} answer_starts.")
  start_char = example.answer_starts[0]
  end_char = start_char + len(example.answers[0])
  if start_char < 0:  # SQuAD v2 style "no answer"
    return None
  first = int(np.searchsorted(offsets[:, 1], start_char, side="right"))
  last = int(np.searchsorted(offsets[:, 0], end_char, side="left")) - 1
  if first >= len(offsets) or last < first:  # beyond the context, or no token in the span
    return None
  return first, last


def make_qa_features(examples: Sequence[QaExample], tokenizer: Tokenizer, seq_len: int = 384,
                     doc_stride: int = 128, max_query_length: int = 64) -> QaFeatures:
  """Tokenizes, windows and labels SQuAD-style examples (BERT's run_squad preprocessing).

  Args:
    examples: the questions; ``uid`` must be unique (the predictions are keyed by it).
    tokenizer: the model's tokenizer (the teacher's).
    seq_len: tokens per window, special tokens and padding included.
    doc_stride: context tokens between the starts of consecutive windows of one passage.
    max_query_length: questions are truncated to this many tokens.

  Returns:
    The windows of every example, in example order (an example with an empty passage has none).

  Raises:
    ValueError: if a window could hold no context token after a full-length question
      (``seq_len < max_query_length + 4``), ``doc_stride < 1``, uids repeat, or an example has
      a different number of answers and answer starts.
  """
  if max_query_length < 1:
    raise ValueError(f"max_query_length must be >= 1, not {max_query_length}.")
  if seq_len < max_query_length + 4:
    raise ValueError(
        f"seq_len={seq_len} leaves no room for a context token after a question of "
        f"max_query_length={max_query_length} tokens and [CLS], [SEP], [SEP]; use seq_len >= "
        f"{max_query_length + 4} or a shorter max_query_length.")
  if doc_stride < 1:
    raise ValueError(f"doc_stride must be >= 1, not {doc_stride}.")
  examples = tuple(examples)
  repeated = sorted(u for u, c in collections.Counter(e.uid for e in examples).items() if c > 1)
  if repeated:
    raise ValueError(f"example uids must be unique; repeated: {repeated[:5]}.")

  questions = tokenizer.encode_batch([e.question for e in examples])
  # SQuAD asks ~5 questions per passage: tokenize each distinct passage once.
  contexts = list(dict.fromkeys(e.context for e in examples))
  encoded = dict(zip(contexts, tokenizer.encode_batch_with_offsets(contexts)))

  # Two passes: lay out every example's windows, then fill preallocated arrays by slices.
  layouts = []  # (example index, question ids, window length, window starts)
  for index, example in enumerate(examples):
    question_ids = questions[index][:max_query_length]
    window_length = seq_len - len(question_ids) - 3
    starts = _window_starts(len(encoded[example.context][0]), window_length, doc_stride)
    layouts.append((index, question_ids, window_length, starts))
  num_features = sum(len(starts) for *_, starts in layouts)
  input_ids = np.full((num_features, seq_len), tokenizer.pad_id, np.int32)
  token_type_ids = np.zeros((num_features, seq_len), np.int32)
  attention_mask = np.zeros((num_features, seq_len), np.int32)
  offsets = np.full((num_features, seq_len, 2), NOT_CONTEXT, np.int32)
  is_max_context = np.zeros((num_features, seq_len), bool)
  start_positions = np.zeros(num_features, np.int32)
  end_positions = np.zeros(num_features, np.int32)
  example_index = np.zeros(num_features, np.int32)

  row = 0
  for index, question_ids, window_length, starts in layouts:
    if not starts:  # an empty passage
      continue
    context_ids, context_offsets = encoded[examples[index].context]
    max_context = _max_context(starts, len(context_ids), window_length)
    answer = _answer_tokens(examples[index], context_offsets)
    first = len(question_ids) + 2  # position of the window's first token
    for k, start in enumerate(starts):
      stop = min(start + window_length, len(context_ids))
      last = first + stop - start  # position of the final [SEP]
      input_ids[row, 0] = tokenizer.cls_id
      input_ids[row, 1:first - 1] = question_ids
      input_ids[row, first - 1] = input_ids[row, last] = tokenizer.sep_id
      input_ids[row, first:last] = context_ids[start:stop]
      token_type_ids[row, first:last + 1] = tokenizer.second_segment_id
      attention_mask[row, :last + 1] = 1
      offsets[row, first:last] = context_offsets[start:stop]
      is_max_context[row, first:last] = max_context[k, start:stop]
      if answer is not None and start <= answer[0] and answer[1] < stop:
        start_positions[row] = answer[0] - start + first
        end_positions[row] = answer[1] - start + first
      example_index[row] = index
      row += 1
  return QaFeatures(input_ids=input_ids, token_type_ids=token_type_ids,
                    attention_mask=attention_mask, start_positions=start_positions,
                    end_positions=end_positions, example_index=example_index, offsets=offsets,
                    is_max_context=is_max_context, examples=examples)


_DECODE_CHUNK = 4096


def _best_span_per_window(start_logits, end_logits, is_context, is_max_context, n_best,
                          max_answer_length):
  """(score, start, end) [num_windows] of each window's best valid span; -inf if it has none.

  run_squad's candidates: the n_best starts x the n_best ends by logit (the stable sort keeps the
  lower position first on ties), filtered by the span rules; the first best pair in (start rank,
  end rank) order wins, as run_squad's stable sort of the candidates picks it.
  """
  num_windows, seq_len = start_logits.shape
  n = min(n_best, seq_len)
  rows = np.arange(num_windows)
  starts = np.argsort(-start_logits, axis=1, kind="stable")[:, :n, None]  # [W, n, 1]
  ends = np.argsort(-end_logits, axis=1, kind="stable")[:, None, :n]  # [W, 1, n]
  at = rows[:, None, None]
  valid = (is_context[at, starts] & is_context[at, ends] & is_max_context[at, starts]
           & (ends >= starts) & (ends - starts + 1 <= max_answer_length))
  scores = np.where(valid, start_logits[at, starts] + end_logits[at, ends], -np.inf)
  best = scores.reshape(num_windows, -1).argmax(axis=1)
  return (scores.reshape(num_windows, -1)[rows, best], starts[rows, best // n, 0],
          ends[rows, 0, best % n])


def decode_spans_with_scores(start_logits, end_logits, features: QaFeatures, n_best: int = 20,
                             max_answer_length: int = 30) -> dict[str, tuple[str, float]]:
  """Like :func:`decode_spans`, with each answer's score ``start_logit + end_logit``.

  Returns:
    uid -> (answer text, score); ``("", -inf)`` where no window has a valid span.
  """
  start_logits = np.asarray(start_logits, np.float64)
  end_logits = np.asarray(end_logits, np.float64)
  shape = features.input_ids.shape
  if start_logits.shape != shape or end_logits.shape != shape:
    raise ValueError(f"logits of shape {start_logits.shape} and {end_logits.shape} do not match "
                     f"the features' [num_features, seq_len] = {shape}.")
  if n_best < 1 or max_answer_length < 1:
    raise ValueError(f"n_best ({n_best}) and max_answer_length ({max_answer_length}) must be >= 1.")
  answers = {e.uid: ("", -np.inf) for e in features.examples}
  if not len(features):
    return answers
  is_context = features.offsets[..., 0] != NOT_CONTEXT
  parts = [_best_span_per_window(start_logits[chunk], end_logits[chunk], is_context[chunk],
                                 features.is_max_context[chunk], n_best, max_answer_length)
           for chunk in (slice(i, i + _DECODE_CHUNK)  # bounds the [chunk, n, n] score array
                         for i in range(0, shape[0], _DECODE_CHUNK))]
  best_score, best_start, best_end = (np.concatenate(p) for p in zip(*parts))
  for f in range(shape[0]):  # windows in example order: the first best window wins ties
    example = features.examples[features.example_index[f]]
    if best_score[f] > answers[example.uid][1]:
      begin = features.offsets[f, best_start[f], 0]
      end = features.offsets[f, best_end[f], 1]
      answers[example.uid] = (example.context[begin:end], float(best_score[f]))
  return answers


def decode_spans(start_logits, end_logits, features: QaFeatures, n_best: int = 20,
                 max_answer_length: int = 30) -> dict[str, str]:
  """The predicted answer of every example: its best span over all its windows.

  BERT section 4.2 (SQuAD v1.1) with run_squad's rules: in each window, pairs of the ``n_best``
  top start and end positions; both ends on passage tokens, ``end >= start``, at most
  ``max_answer_length`` tokens, and the start token in its max-context window; the best by
  ``start_logit + end_logit`` over all windows, cut from the original context by character offsets.

  Args:
    start_logits, end_logits: float [num_features, seq_len], the model's outputs on ``features``.
    features: what :func:`make_qa_features` made for the examples.
    n_best: start and end candidates per window.
    max_answer_length: the longest answer, in tokens.

  Returns:
    uid -> answer text for every example; ``""`` where no window has a valid span.
  """
  scored = decode_spans_with_scores(start_logits, end_logits, features, n_best, max_answer_length)
  return {uid: text for uid, (text, _) in scored.items()}
