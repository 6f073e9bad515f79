"""Fine-tuning end to end on tiny synthetic tasks, the input encoding against Hugging Face, the
training stream, the task heads against `transformers`, the offline tasks' splits and the report."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill.finetune import heads, report
from autodistill.finetune.features import ArrayStream, encode_examples
from autodistill.finetune.finetuning import (Backbone, FinetuneConfig, finetune, load_backbone,
                                             read_result)
from autodistill.finetune.task_types import (CLASSIFICATION, KINDS, REGRESSION, SPAN_QA,
                                             QaExample, Task, TextExample)
from autodistill.finetune.tasks import UnknownTaskError, get_task
from autodistill.models import hf

from synthetic import tiny_student, vocab

# -- a synthetic task: is the sentence made of words of documents 0-14 (label 0) or 15-29 (1)?


def _sentences(n, seed):
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(n):
    label = int(rng.integers(2))
    docs = rng.integers(0, 15, 6) + 15 * label
    words = [f"d{d}w{j}" for d, j in zip(docs, rng.integers(0, 2, 6))]  # 30 words per class
    examples.append(TextExample(uid=f"toy/{seed}/{i}", text_a=" ".join(words), label=label))
  return examples


def _toy_task():
  splits = {"train": _sentences(96, 0), "dev": _sentences(32, 1), "test": _sentences(48, 2)}
  return Task(name="toy", kind=CLASSIFICATION, labels=("low", "high"),
              metrics=("accuracy", "macro_f1"), test_splits={"Toy": "test"},
              load=lambda split: list(splits[split]))


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
  from autodistill.data import Tokenizer
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(vocab()) + "\n")
  return Tokenizer.from_path(path)


# Small students from scratch sit on a loss plateau for tens of steps before they separate the
# classes (measured: batch 8 at 3e-3 still at ln 2 after 60 steps), hence batch 16 and 120 steps.
CONFIG = FinetuneConfig(seq_len=16, batch_size=16, num_steps=120, learning_rates=(5e-3,),
                        eval_every=30, patience=0, eval_batch_size=16, progress=False)


def test_a_random_student_learns_the_toy_task_and_the_run_is_recorded(tmp_path, toy_tokenizer):
  backbone = Backbone(tiny_student(), None, "random", "random-tiny")
  result = finetune(backbone, _toy_task(), tmp_path, toy_tokenizer, CONFIG, latency_ms=1.5,
                    log=lambda _: None)
  # Chance is ~50%; the word ids alone separate the classes.
  assert result.test["Toy"]["accuracy"] >= 0.8, result.test
  assert 0.3 <= result.majority["Toy"]["accuracy"] <= 0.7
  assert result.scores == {"Toy": result.test["Toy"]["accuracy"]}
  recorded = read_result(tmp_path)
  assert recorded["test"] == result.test and recorded["latency_ms"] == 1.5
  assert recorded["runs"][0]["steps"] == 120 and recorded["extra"]["sizes"]["train"] == 96
  assert (tmp_path / "model").exists() and (tmp_path / "lr_0.005" / "checkpoints").exists()
  # A second call resumes the finished run: same scores, no training.
  again = finetune(backbone, _toy_task(), tmp_path, toy_tokenizer, CONFIG, log=lambda _: None)
  assert again.test == result.test


def test_learning_rate_sweep_picks_the_best_dev_run(tmp_path, toy_tokenizer):
  config = CONFIG.replace(learning_rates=(1e-6, 5e-3))
  result = finetune(Backbone(tiny_student(), None, "random", "r"), _toy_task(), tmp_path,
                    toy_tokenizer, config, log=lambda _: None)
  dev = {run["learning_rate"]: run["dev"]["accuracy"] for run in result.runs}
  assert set(dev) == {1e-6, 5e-3} and dev[5e-3] > dev[1e-6] and result.learning_rate == 5e-3
  assert (tmp_path / "lr_1e-06").exists() and (tmp_path / "lr_0.005").exists()
  # The rate is data: both runs trained with one compiled step (and one fresh-state program).
  from autodistill.finetune.finetuning import _training_programs
  model = heads.head_for(_toy_task(), tiny_student(), jnp.dtype(config.dtype), config.dropout)
  _, programs = _training_programs(_toy_task().kind, model)
  assert sorted(program.compiles for program in programs.values()) == [1, 1]


def test_pretrained_encoder_is_loaded_and_a_wrong_one_is_refused(tmp_path, toy_tokenizer):
  student = tiny_student()
  params = hf.init_params(student, jax.random.PRNGKey(3))
  hf.export_student(student, params, tmp_path / "hf")
  backbone = load_backbone(tmp_path / "hf")
  assert backbone.config.name == student.name and backbone.source == str(tmp_path / "hf")
  model = heads.head_for(_toy_task(), student)
  fresh = heads.init_head_params(model, jax.random.PRNGKey(0))
  loaded = heads.with_pretrained_encoder(fresh, backbone.encoder)
  np.testing.assert_array_equal(loaded["encoder"]["word_embeddings"]["embedding"],
                                params["encoder"]["word_embeddings"]["embedding"])
  other = hf.init_params(tiny_student(hidden_size=32), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="does not fit this architecture"):
    heads.with_pretrained_encoder(fresh, other["encoder"])
  with pytest.raises(FileNotFoundError, match="distillation directory"):
    load_backbone(tmp_path / "nothing")
  assert load_backbone(tmp_path / "hf", random_init=True).encoder is None


def test_span_qa_trains_and_is_scored_with_squad_metrics(tmp_path, toy_tokenizer):
  rng = np.random.default_rng(0)
  examples = []
  for i in range(24):
    words = [f"d{rng.integers(30)}w{rng.integers(20)}" for _ in range(12)]
    start = int(rng.integers(0, 10))
    context = " ".join(words)
    answer = " ".join(words[start:start + 2])
    examples.append(QaExample(uid=f"q{i}", question=words[start], context=context,
                              answers=(answer,), answer_starts=(context.index(answer),)))
  task = Task(name="toy_qa", kind=SPAN_QA, labels=(), metrics=("f1", "exact_match"),
              test_splits={"QA": "test"}, load=lambda split: examples)
  config = CONFIG.replace(seq_len=24, num_steps=4, eval_every=2, doc_stride=4,
                          max_query_length=4)
  result = finetune(Backbone(tiny_student(), None, "random", "r"), task, tmp_path,
                    toy_tokenizer, config, log=lambda _: None)
  assert set(result.test["QA"]) == {"f1", "exact_match"}
  assert 0.0 <= result.test["QA"]["exact_match"] <= result.test["QA"]["f1"] <= 1.0
  assert result.majority == {}


# -- inputs


def test_pairs_are_encoded_like_hugging_face(minilm_dir):
  from transformers import BertTokenizerFast
  from autodistill.data import Tokenizer
  ours = Tokenizer.from_path(minilm_dir)
  theirs = BertTokenizerFast.from_pretrained(str(minilm_dir))
  examples = [
      TextExample("a", "The quick brown fox jumps over the lazy dog.", "A short one.", 1),
      TextExample("b", "Short.", "A much longer second sentence that will have to be cut "
                  "because it does not fit into sixteen tokens at all.", 0),
      TextExample("c", "One sentence alone, with Ünïcödé and punctuation!", None, 1),
      TextExample("d", " ".join(["word"] * 40), " ".join(["other"] * 3), 0),
  ]
  got = encode_examples(examples, ours, seq_len=16)
  for i, e in enumerate(examples):
    ref = theirs(e.text_a, e.text_b, max_length=16, truncation="longest_first",
                 padding="max_length")
    assert got["input_ids"][i].tolist() == ref["input_ids"], e.uid
    assert got["token_type_ids"][i].tolist() == ref["token_type_ids"], e.uid
    assert got["attention_mask"][i].tolist() == ref["attention_mask"], e.uid
  assert got["labels"].tolist() == [1, 0, 1, 0] and got["labels"].dtype == np.int32
  stsb = encode_examples([TextExample("s", "a", "b", 3.8)], ours, 8, kind="regression")
  assert stsb["labels"].dtype == np.float32 and stsb["labels"][0] == pytest.approx(3.8)


def test_stream_covers_every_example_each_epoch_and_resumes():
  arrays = {"x": np.arange(10)}
  stream = ArrayStream(arrays, global_batch_size=4, seed=1)
  it = iter(stream)
  seen = np.concatenate([next(it)["x"] for _ in range(5)])  # 20 positions = 2 epochs
  assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
  assert not np.array_equal(seen[:10], seen[10:])  # reshuffled per epoch
  state = stream.state_dict()
  following = next(it)["x"]
  resumed = ArrayStream(arrays, global_batch_size=4, seed=1)
  resumed.load_state_dict(state)
  np.testing.assert_array_equal(next(iter(resumed))["x"], following)
  with pytest.raises(ValueError, match="global_batch_size"):
    ArrayStream(arrays, global_batch_size=2, seed=1).load_state_dict(state)
  with pytest.raises(ValueError, match="data"):
    ArrayStream({"x": np.arange(11)}, global_batch_size=4, seed=1).load_state_dict(state)


# -- heads against transformers


def test_sequence_classifier_matches_transformers(tmp_path):
  import torch
  from transformers import BertConfig as HfBertConfig, BertForSequenceClassification
  torch.manual_seed(0)
  hf_config = HfBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64,
                           max_position_embeddings=32, num_labels=3)
  reference = BertForSequenceClassification(hf_config).eval()
  reference.save_pretrained(tmp_path)
  backbone = load_backbone(tmp_path)
  model = heads.SequenceClassifier(backbone.config, 3)
  params = heads.with_pretrained_encoder(
      heads.init_head_params(model, jax.random.PRNGKey(0)), backbone.encoder)
  params["classifier"] = {"kernel": jnp.asarray(reference.classifier.weight.detach().numpy().T),
                          "bias": jnp.asarray(reference.classifier.bias.detach().numpy())}
  ids = np.random.default_rng(0).integers(0, 50, (2, 10))
  types = np.zeros_like(ids)
  types[:, 5:] = 1
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  ours = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask))
  with torch.no_grad():
    theirs = reference(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types),
                       attention_mask=torch.tensor(mask)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=2e-5)


def test_span_head_masks_padding_and_has_start_and_end():
  student = tiny_student()
  model = heads.SpanQA(student)
  params = heads.init_head_params(model, jax.random.PRNGKey(0))
  mask = jnp.array([[1, 1, 1, 0, 0]])
  start, end = model.apply({"params": params}, jnp.ones((1, 5), jnp.int32), None, mask)
  assert start.shape == end.shape == (1, 5)
  assert bool(jnp.all(start[0, 3:] < -1e8)) and bool(jnp.all(jnp.abs(start[0, :3]) < 100))
  assert not np.allclose(start, end)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_every_kind_has_a_head_spec_whose_loss_matches_numpy():
  assert set(heads.HEADS) == set(KINDS)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 2], np.int32)
  loss, aux = heads.HEADS[CLASSIFICATION].loss(jnp.asarray(logits), {"labels": labels})
  expected = -_log_softmax(logits)[np.arange(4), labels].mean()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  assert float(aux["train_accuracy"]) == np.mean(logits.argmax(-1) == labels)
  scores = np.array([1.5, -0.5, 2.0, 0.0], np.float32)
  loss, _ = heads.HEADS[REGRESSION].loss(jnp.asarray(logits), {"labels": scores})
  np.testing.assert_allclose(float(loss), np.mean((logits[:, 0] - scores) ** 2), rtol=1e-6)
  start, end = rng.normal(size=(2, 4, 7)).astype(np.float32)
  positions = {"start_positions": np.array([0, 3, 6, 2]), "end_positions": np.array([1, 3, 6, 5])}
  loss, _ = heads.HEADS[SPAN_QA].loss((jnp.asarray(start), jnp.asarray(end)), positions)
  ce = lambda x, p: -_log_softmax(x)[np.arange(4), p].mean()  # noqa: E731
  expected = 0.5 * (ce(start, positions["start_positions"]) + ce(end, positions["end_positions"]))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


# -- tasks


def test_registry_names_every_task_and_refuses_unknown_ones():
  from autodistill.finetune.tasks import TASKS
  with pytest.raises(UnknownTaskError, match="bbc_topic.*tweet_sentiment"):
    get_task("glue/colaa")
  assert {"bbc_topic", "tweet_sentiment", "squad", "glue/cola", "glue/mnli", "glue/wnli"} <= set(TASKS)


def test_bbc_topic_splits_are_fixed_disjoint_and_avoid_distillation_eval(bbc_dir):
  from autodistill.data.corpora import BbcNews
  from autodistill.data.tokenized import document_hash, held_out_mask
  task = get_task("bbc_topic")
  splits = {name: task.load(name) for name in ("train", "dev", "test")}
  # Pinned sizes: the split is a function of the text, the same on every machine.
  assert {k: len(v) for k, v in splits.items()} == {"train": 1597, "dev": 210, "test": 301}
  uids = [set(e.uid for e in v) for v in splits.values()]
  assert not (uids[0] & uids[1] or uids[0] & uids[2] or uids[1] & uids[2])
  corpus = BbcNews()
  documents = list(corpus)
  held = held_out_mask(np.array([document_hash(d.paragraphs) for d in documents], np.uint64),
                       0.05, 0)
  held_texts = {" ".join(d.paragraphs) for d, out in zip(documents, held) if out}
  assert len(held_texts) > 50
  for examples in splits.values():
    assert not held_texts & {e.text_a for e in examples}
  # 116 held out for distillation, plus 1 copy of a held-out article under another file name.
  assert int(held.sum()) == 116 and len(documents) == 2225
  assert sum(map(len, splits.values())) == 2225 - 116 - 1
  assert {e.label for e in splits["test"]} == set(range(5))
  assert all(e.uid.split("/")[1] == task.labels[e.label] for e in splits["dev"])


def test_tweet_sentiment_splits_are_fixed_and_disjoint():
  task = get_task("tweet_sentiment")
  splits = {name: task.load(name) for name in ("train", "dev", "test")}
  assert {k: len(v) for k, v in splits.items()} == {"train": 32254, "dev": 1830, "test": 4074}
  texts = [set(e.text_a for e in v) for v in splits.values()]
  assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
  assert task.labels == ("negative", "neutral", "positive")
  with pytest.raises(ValueError, match="splits"):
    task.load("validation")


# -- report


def _result(model, task, column, metric, value, *, params=2_000_000, latency=1.0,
            in_average=True, majority=None, extra_test=None):
  test = {column: {metric: value, **(extra_test or {})}}
  return {"task": task, "model": model, "params": params, "latency_ms": latency, "test": test,
          "majority": majority or {}, "extra": {"metric": metric, "in_average": in_average}}


def test_report_table_scores_average_and_majority(tmp_path):
  results = [
      _result("a", "glue/cola", "CoLA", "mcc", 0.5),
      _result("a", "glue/sst2", "SST-2", "accuracy", 0.9,
              majority={"SST-2": {"accuracy": 0.51}}),
      _result("a", "glue/wnli", "WNLI", "accuracy", 0.2, in_average=False),
      _result("b", "glue/cola", "CoLA", "mcc", 0.3, params=5_500_000, latency=2.5),
      _result("a", "squad", "SQuAD", "f1", 0.8, extra_test={"exact_match": 0.7}),
  ]
  for i, r in enumerate(results):
    (tmp_path / str(i)).mkdir()
    (tmp_path / str(i) / "result.json").write_text(json.dumps(r))
  header, rows = report.report_rows(report.collect_results(tmp_path))
  assert header == ["model", "params (M)", "latency (ms)", "CoLA", "SST-2", "WNLI", "SQuAD",
                    "SQuAD EM", "avg"]
  by_model = {row[0]: dict(zip(header, row)) for row in rows}
  a, b = by_model["a"], by_model["b"]
  assert a["CoLA"] == pytest.approx(50) and a["SQuAD"] == pytest.approx(80)
  assert a["SQuAD EM"] == pytest.approx(70) and a["WNLI"] == pytest.approx(20)
  # WNLI and EM do not count: (50 + 80 + 90) / 3.
  assert a["avg"] == pytest.approx((50 + 80 + 90) / 3)
  assert b["params (M)"] == pytest.approx(5.5) and b["avg"] is None  # lacks tasks
  assert by_model["majority class"]["SST-2"] == pytest.approx(51)
  md, csv_path = report.write_report(tmp_path, log=lambda _: None)
  assert "| a | 2.00 | 1.000 | 50.0 | 90.0 | 20.0 | 80.0 | 70.0 | 73.3 |" in md.read_text()
  assert csv_path.read_text().splitlines()[0] == ",".join(header)
