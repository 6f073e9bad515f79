"""A tiny but real search set-up (2-layer teacher with heads, synthetic corpus, 4-point space).

Also a subprocess entry point for the kill/resume and multi-worker tests:

    python tiny_search.py search ROOT WORKDIR [key=value ...]

and, for tests of the real ``python -m autodistill`` entry point, an experiment file
(:func:`write_experiment`) whose ``get_config(root)`` is this set-up.
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from synthetic import tiny_teacher, vocab, write_corpus  # noqa: E402

# The students are as wide as the tiny teacher (32), so a search's trials all train in one
# elastic envelope (search.elastic, the default): every process that searches this space
# compiles (or loads from JAX's cache) one set of programs, not one per student.
SPACE = {
    "name": "tiny",
    "factors": {"hidden_size": [32], "bottleneck_size": [16], "num_heads": [2],
                "intermediate_size": [32, 48], "num_ffn": [1, 2]},
    "fixed": {"num_blocks": 2, "embedding_size": 16, "attention_dropout_prob": 0.0},
    "tied": {},
    "baseline": {"hidden_size": 32, "bottleneck_size": 16, "num_heads": 2,
                 "intermediate_size": 48, "num_ffn": 2},
    "description": "4 tiny students for tests",
}


def make_setup(root: pathlib.Path) -> dict:
  """Writes the teacher checkpoint and corpus under ``root``; returns flattened config overrides."""
  from autodistill.models import hf
  teacher_dir, corpus_dir = root / "teacher", root / "corpus"
  if not (teacher_dir / "config.json").exists():
    teacher = tiny_teacher()
    hf.export_bert(teacher.config, teacher.params, teacher_dir)
    (teacher_dir / "vocab.txt").write_text("\n".join(vocab()) + "\n")
  if not corpus_dir.exists():
    write_corpus(corpus_dir)
  return {
      "teacher.path": str(teacher_dir), "teacher.fit_steps": 0,
      "data.corpus": str(corpus_dir), "data.seq_len": 32, "data.max_predictions": 5,
      "data.batch_size": 8, "data.eval_fraction": 0.2,
      "search.num_trials": 3, "search.designer": "random",
      "distill.steps_per_block": 2, "distill.pretrain_steps": 3, "distill.warmup_steps": 1,
      # Checkpoints at the phases' ends only (each Orbax save of a tiny state costs ~0.6 s);
      # the kill/resume test asks for checkpoints inside a phase.
      "distill.checkpoint_every": 100, "distill.log_every": 1, "runtime.progress": False,
      "latency.seq_len": 16, "latency.min_runs": 3, "latency.min_time_s": 0.01,
      "latency.device": "cpu",
      "finalize.steps_per_block": 2, "finalize.pretrain_steps": 3, "finalize.warmup_steps": 1,
      "finetune.seq_len": 16, "finetune.batch_size": 8, "finetune.num_steps": 4,
      "finetune.max_train_examples": 48, "finetune.max_eval_examples": 24,
  }


def make_config(root: pathlib.Path, **overrides):
  from autodistill.config import default_config
  config = default_config()
  config.space.definition = SPACE
  values = make_setup(root)
  values.update(overrides)
  for key, value in values.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


EXPERIMENT = '''"""A tiny experiment for the CLI tests: the tiny search set-up of the loop tests."""
import pathlib
import sys

sys.path.insert(0, {here!r})
from tiny_search import make_config  # noqa: E402


def get_config(root):
  return make_config(pathlib.Path(root))
'''


def write_experiment(path: pathlib.Path) -> pathlib.Path:
  """Writes an experiment file for ``--config=PATH:ROOT`` (the set-up under ROOT); returns it."""
  path.write_text(EXPERIMENT.format(here=str(pathlib.Path(__file__).resolve().parent)))
  return path


def _parse(items):
  overrides = {}
  for item in items:
    key, raw = item.split("=", 1)
    overrides[key] = json.loads(raw)
  return overrides


def main(argv):
  mode, root, workdir = argv[1], pathlib.Path(argv[2]), pathlib.Path(argv[3])
  from autodistill import pipeline
  if mode == "search":
    config = make_config(root, **_parse(argv[4:]))
    pipeline.search_stage(config, workdir)
  else:
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
  main(sys.argv)
