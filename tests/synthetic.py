"""Synthetic pre-training text shared by the data and distillation tests.

Every document of the synthetic corpus uses words found in no other document ("d3w7" belongs to
document 3), so a test can tell from the token ids alone which document a segment came from.
"""

import pathlib

import numpy as np

from autodistill.data import Tokenizer

NUM_DOCS = 30
WORDS_PER_DOC = 20
SENTENCES_PER_DOC = 12


def vocab() -> list[str]:
  vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(5)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  vocab += [".", "##s"]
  vocab += [f"d{d}w{j}" for d in range(NUM_DOCS) for j in range(WORDS_PER_DOC)]
  return vocab


def doc_of_token(tokenizer: Tokenizer, token_id: int) -> int:
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




# -- tiny models and data for the distillation tests ----------------------------------------------


def tiny_data(root: pathlib.Path, batch_size: int = 8, seq_len: int = 32, prefetch: int = 2,
              seed: int = 0):
  """(tokenizer, train pipeline, eval pipeline) over the synthetic corpus in ``root``."""
  from autodistill.data import ExampleConfig, TextFiles, pretraining_data
  root.mkdir(parents=True, exist_ok=True)
  (root / "vocab.txt").write_text("\n".join(vocab()) + "\n")
  tokenizer = Tokenizer.from_path(root / "vocab.txt")
  corpus_dir = root / "corpus"
  if not corpus_dir.exists():
    write_corpus(corpus_dir)
  examples = ExampleConfig(max_seq_length=seq_len, max_predictions_per_seq=5)
  train, evaluation = pretraining_data(TextFiles(corpus_dir), tokenizer,
                                       global_batch_size=batch_size, examples=examples,
                                       eval_fraction=0.2, seed=seed, prefetch=prefetch)
  return tokenizer, train, evaluation


def tiny_teacher(seed: int = 0):
  """A randomly initialised 2-layer BERT with heads over the synthetic vocabulary."""
  import jax
  from autodistill.distill import PreparedTeacher
  from autodistill.models import BertConfig, hf
  config = BertConfig(vocab_size=len(vocab()), hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, max_position_embeddings=64)
  params = hf.init_params(config, jax.random.PRNGKey(seed))
  return PreparedTeacher(config, params, "random", (), {})


def tiny_student(**overrides):
  """A 2-block student narrower than the tiny teacher (so projections exist), no dropout."""
  from autodistill.models import StudentConfig
  fields = dict(hidden_size=24, bottleneck_size=16, num_heads=2, intermediate_size=32, num_ffn=2,
                num_blocks=2, embedding_size=16, vocab_size=len(vocab()),
                max_position_embeddings=64, attention_dropout_prob=0.0)
  fields.update(overrides)
  return StudentConfig(**fields)


# -- RoBERTa / XLM-R teachers, built offline ------------------------------------------------------

FAIRSEQ_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as RoBERTa's


def train_fairseq_tokenizer(texts, path: pathlib.Path, kind: str = "roberta",
                            vocab_size: int = 400) -> pathlib.Path:
  """Trains a tokenizer of RoBERTa's kind (byte-level BPE) or XLM-R's (SentencePiece-style
  Unigram with the ``▁`` word marker) on ``texts`` with ``tokenizers``, offline, and saves its
  ``tokenizer.json`` at ``path``."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  if kind == "roberta":
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=FAIRSEQ_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
  else:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=FAIRSEQ_SPECIALS,
                                      unk_token="<unk>", show_progress=False)
  tokenizer.train_from_iterator(list(texts), trainer)
  path.parent.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(path))
  return path


def write_tiny_roberta(directory: pathlib.Path, corpus_dir: pathlib.Path,
                       kind: str = "roberta", seed: int = 0) -> pathlib.Path:
  """A random 2-layer RoBERTa (or XLM-R) MLM checkpoint, as ``RobertaForMaskedLM`` saves it (no
  pooler, no NSP head), with a tokenizer trained on the text files of ``corpus_dir``."""
  import jax
  from autodistill.data import Tokenizer
  from autodistill.models import BertConfig, hf
  texts = [p.read_text() for p in sorted(corpus_dir.glob("*.txt"))]
  tokenizer = Tokenizer.from_path(
      train_fairseq_tokenizer(texts, directory / "tokenizer.json", kind))
  config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, max_position_embeddings=66, type_vocab_size=1,
                      model_type="roberta" if kind == "roberta" else "xlm-roberta",
                      pad_token_id=tokenizer.pad_id)
  params = hf.init_params(config, jax.random.PRNGKey(seed))
  del params["nsp_head"], params["encoder"]["pooler"]
  hf.export_bert(config, params, directory)
  return directory


# -- AutoDistil: a tiny sub-space of BERT blocks for SuperLM tests --------------------------------


def tiny_supernet_space():
  """16 BERT-block subnets (1-2 blocks, hidden 16/24, MLP ratio 1/2, 2-3 heads of hidden / 4)
  over the synthetic vocabulary's tiny teacher, without dropout."""
  from autodistill.space import Space
  return Space(
      name="tiny_superlm",
      factors={"num_blocks": (1, 2), "hidden_size": (16, 24), "mlp_ratio": (1.0, 2.0),
               "num_heads": (2, 3)},
      fixed={"num_ffn": 1, "normalization": "layer_norm", "key_query_shared_bottleneck": False,
             "use_bottleneck": False, "trigram_input": False, "hidden_act": "gelu",
             "attention_dropout_prob": 0.0},
      tied={"bottleneck_size": "hidden_size", "embedding_size": "hidden_size"},
      head_size_divisor=4,
      baseline={"num_blocks": 1, "hidden_size": 24, "mlp_ratio": 1.0, "num_heads": 2})


# -- SIGKILL mid-training, then resume (the kill workers of tests/train and tests/supernet) -------


class KillingData:
  """Forwards to a pipeline, and SIGKILLs this process when batch number ``kill_at`` is fetched
  (counted from the position the run starts or resumes at)."""

  def __init__(self, data, kill_at):
    self._data, self._kill_at, self._fetched = data, kill_at, 0

  def __getattr__(self, name):
    return getattr(self._data, name)

  def device_batches(self, mesh, data_axis="data"):
    import os
    import signal
    for batch in self._data.device_batches(mesh, data_axis):
      if self._fetched == self._kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
      self._fetched += 1
      yield batch


def kill_then_resume(worker: pathlib.Path, tmp_path: pathlib.Path, kill_at: int,
                     finished: str):
  """Runs ``worker DATA_ROOT WORKDIR KILL_AT [REFERENCE]`` (see tests/train/kill_worker.py): once
  killed at batch ``kill_at`` (asserting it died before writing ``finished``), then resumed and
  followed by an uninterrupted reference run in the same process. Returns (resumed parameters,
  uninterrupted parameters, workdir): the ``params.npz`` of both, after checking that the second
  run said it resumed and the reference did not."""
  import os
  import signal
  import subprocess
  import sys
  import numpy as np
  here = pathlib.Path(__file__).parent
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(here.parent), str(here), os.environ.get("PYTHONPATH", "")]))
  workdir, reference = tmp_path / "killed", tmp_path / "reference"
  first = subprocess.run([sys.executable, str(worker), str(tmp_path), str(workdir),
                          str(kill_at)], env=env, capture_output=True, text=True, timeout=600)
  assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
  assert not (workdir / finished).exists()
  second = subprocess.run([sys.executable, str(worker), str(tmp_path), str(workdir), "-1",
                           str(reference)], env=env, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  resume_output, reference_output = second.stdout.split("done", 1)
  assert "resumed from step" in resume_output and "resumed" not in reference_output
  resumed, uninterrupted = np.load(workdir / "params.npz"), np.load(reference / "params.npz")
  assert sorted(resumed.files) == sorted(uninterrupted.files)
  return resumed, uninterrupted, workdir


def kill_worker_main(run) -> None:
  """A kill worker's command line: ``DATA_ROOT WORKDIR KILL_AT [REFERENCE]``; calls
  ``run(data_root, workdir, kill_at)``, then ``run(data_root, REFERENCE, -1)`` if given."""
  import sys
  data_root, workdir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
  run(data_root, workdir, int(sys.argv[3]))
  if len(sys.argv) > 4:
    run(data_root, pathlib.Path(sys.argv[4]), -1)
