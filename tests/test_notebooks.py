"""The notebooks run top to bottom in short mode (1-3 minutes each on a 2-core CPU).

Short mode (``AUTODISTILL_NOTEBOOK_SHORT=1``) shrinks every stage to a few steps; the notebooks
write only under ``AUTODISTILL_NOTEBOOK_WORKDIR``, here a ``tmp_path``.
"""

import json
import os
import pathlib
import sys
import time

import pytest

try:
  import ipykernel  # noqa: F401  pylint: disable=unused-import
  import nbclient
  import nbformat
except ImportError as error:
  # `make test` installs the notebook extra, so CI must run these; elsewhere they may skip.
  if os.environ.get("CI"):
    raise ImportError(f"{error}: the notebook tests need pip install -e '.[notebook]'") from error
  pytest.skip(f"{error}: pip install -e '.[notebook]' to run the notebook tests",
              allow_module_level=True)

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def _kernel_manager():
  """A manager for this interpreter's ipykernel ("python3" as jupyter_client offers it when no
  kernelspec directory is searched), whatever kernelspecs the machine or the user installed."""
  from jupyter_client import AsyncKernelManager
  from jupyter_client.kernelspec import KernelSpecManager
  specs = KernelSpecManager(kernel_dirs=[])
  if "python3" not in specs.find_kernel_specs():
    message = "no Jupyter kernel for this interpreter: pip install -e '.[notebook]'"
    if os.environ.get("CI"):  # make test installs it: a missing kernel is a failure there
      pytest.fail(message)
    pytest.skip(message)
  return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _execute(name: str, workdir: pathlib.Path, monkeypatch, out_dir: pathlib.Path) -> str:
  """Runs notebooks/<name>.ipynb in short mode; returns the text of every cell's output.

  The kernel inherits this process's environment: conftest's JAX settings (one CPU device, as a
  notebook user has; the shared compilation cache), short mode, the workdir under tmp_path and a
  PYTHONPATH that finds this checkout.
  """
  monkeypatch.setenv("AUTODISTILL_NOTEBOOK_SHORT", "1")
  monkeypatch.setenv("AUTODISTILL_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.delenv("AUTODISTILL_TEACHER_DIR", raising=False)
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(out_dir / "jupyter"))  # the connection file
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  client = nbclient.NotebookClient(nb, km=_kernel_manager(), timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(NOTEBOOKS)}})
  start = time.perf_counter()
  try:
    # Raises CellExecutionError at the first cell that fails; shuts the kernel down either way.
    client.execute(cleanup_kc=True)
  finally:
    nbformat.write(nb, out_dir / f"{name}.executed.ipynb")  # kept for debugging a failure
    print(f"{name}.ipynb ran in {time.perf_counter() - start:.0f} s", file=sys.stderr)
  texts = []
  for cell in nb.cells:
    for output in cell.get("outputs", []):
      if output.get("output_type") == "stream":
        texts.append(output["text"])
      elif "text/plain" in output.get("data", {}):
        texts.append(output["data"]["text/plain"])
  return "".join(texts)


def test_quickstart(tmp_path, monkeypatch, minilm_dir, bbc_dir):
  del minilm_dir, bbc_dir  # skip (or fail in CI) without the offline teacher and corpus
  workdir = tmp_path / "workdir"
  text = _execute("quickstart", workdir, monkeypatch, tmp_path)

  assert "short mode: True" in text
  assert "config: the embedded CPU demo" in text
  for output in ("pareto_front.png", "pareto_front.json", "trials.csv", "summary.txt"):
    assert (workdir / output).stat().st_size > 0, output
  assert "2 trials:" in text and "on the Pareto front" in text
  assert len(list((workdir / "trials").glob("*/result.json"))) == 2

  # The winner's masked-word predictions and its Hugging Face export.
  assert "The government said the new [MASK] would cut taxes" in text
  assert "prediction 5:" in text
  exports = list((workdir / "hf").iterdir())
  assert len(exports) == 1 and (exports[0] / "vocab.txt").exists()
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  model = transformers.MobileBertForPreTraining.from_pretrained(exports[0])
  assert model.config.num_hidden_layers == 2
  tokenizer = transformers.AutoTokenizer.from_pretrained(exports[0])
  assert tokenizer("the government")["input_ids"] == [101, 1996, 2231, 102]  # [CLS] ... [SEP]
  assert "reloaded as MobileBertForPreTraining" in text
  difference = float(text.split("largest logit difference from the Flax model: ")[1].split()[0])
  assert difference < 1e-3

  # finalize: regular distillation of the winner, exported.
  finals = list((workdir / "final").glob("*/hf/config.json"))
  assert len(finals) == 1 and (workdir / "final" / "summary.json").exists()
  assert "regular steps; Hugging Face checkpoint in" in text


def test_custom_space_and_teacher(tmp_path, monkeypatch, minilm_dir):
  del minilm_dir  # the stand-in teacher borrows its vocabulary
  pytest.importorskip("transformers")
  pytest.importorskip("torch")
  workdir = tmp_path / "workdir"
  text = _execute("custom_space_and_teacher", workdir, monkeypatch, tmp_path)

  teacher = workdir / "my_teacher"
  assert (teacher / "config.json").exists() and (teacher / "vocab.txt").exists()
  assert "heads the search fits first: none, it has both" in text
  assert len(list((workdir / "my_corpus").glob("*.txt"))) == 24
  assert "size 16, valid 8" in text
  assert "is not divisible by num_heads=3" in text
  assert "over max_params" in text

  for output in ("pareto_front.png", "trials.csv", "summary.txt"):
    assert (workdir / output).stat().st_size > 0, output
  records = json.loads((workdir / "trials.json").read_text())
  completed = [r for r in records if r["status"] == "completed"]
  assert len(completed) == 2
  assert all(r["params"] <= 1_000_000 for r in completed)  # config.search.max_params
  assert all(r["reason"] for r in records if r["status"] == "infeasible")
  assert "Pareto front: ['Model_" in text
  # The search used the stand-in teacher (2 layers) and the generated corpus.
  assert "from a 2-layer teacher" in text
  assert not (workdir / "teacher").exists()  # it has both heads: nothing to fit and cache
  assert list((workdir / "data_cache").iterdir())

  # The KD-NAS section: the controller's search in a workdir of its own, then a recommendation
  # for the budget (the first search's median latency).
  kdnas = json.loads((workdir / "kdnas" / "trials.json").read_text())
  assert len([r for r in kdnas if r["status"] == "completed"]) == 2
  [row] = json.loads((workdir / "kdnas" / "recommend.json").read_text())
  assert f"budget {row['budget_ms']} ms: {row['name'] or 'no student within it'}" in text
  assert "multi-layer hidden-state distillation steps" in text

  # The AutoDistil section: a SuperLM over 16 BERT-block subnets, all scored, the best extracted.
  out = workdir / "autodistil" / "supernet" / "my_bert_subspace"
  summary = json.loads((out / "summary.json").read_text())
  assert summary["subnets"] == summary["feasible"] == 16
  assert f"16 of 16 subnets scored; best {summary['best']['name']}" in text
  assert (out / "students" / summary["best"]["name"] / "result.json").is_file()
