"""Parity with Hugging Face ``transformers`` (PyTorch, CPU): same weights, same numbers.

Acceptance (issue 2): hidden states, attention probabilities and MLM/NSP logits agree to
max |diff| <= 1e-4 in float32 for (a) a small random BERT, (b) the real MiniLM teacher on real
sentences, (c) a small MobileBERT and (d) the full 24-block MobileBERT; student -> HF -> student
is exact.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from autodistill.models import MOBILEBERT, BertConfig, StudentConfig, hf  # noqa: E402

TOL = 1e-4

SMALL_BERT = BertConfig(vocab_size=120, hidden_size=48, num_layers=3, num_heads=4,
                        intermediate_size=96, max_position_embeddings=40)
SMALL_STUDENT = StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2,
                              intermediate_size=48, num_ffn=3, num_blocks=3, embedding_size=16,
                              vocab_size=120, max_position_embeddings=40)

SENTENCES = [
    "The central bank raised interest rates for the third time this year.",
    "Shares in the carmaker fell sharply after it warned on profits.",
    "The striker scored twice in the second half to win the cup final.",
    "A new smartphone with a folding screen goes on sale next month.",
]


def _perturb(model, seed, scale=0.05):
  """Adds noise to every parameter so unit norms and zero biases cannot hide a mapping error."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for param in model.parameters():
      param.add_(scale * torch.randn(param.shape, generator=gen))
  return model.eval()


def _hf_mobilebert(config: StudentConfig, seed: int = 0, scale: float = 0.05):
  torch.manual_seed(seed)
  hf_config = transformers.MobileBertConfig(**hf.student_config_to_hf(config))
  hf_config._attn_implementation = "eager"  # the only implementation that returns attentions
  return _perturb(transformers.MobileBertForPreTraining(hf_config), seed, scale)


def _hf_bert(config: BertConfig, seed: int = 0, heads: bool = True):
  torch.manual_seed(seed)
  hf_config = transformers.BertConfig(**config.to_hf())
  hf_config._attn_implementation = "eager"
  cls = transformers.BertForPreTraining if heads else transformers.BertModel
  return _perturb(cls(hf_config), seed)


def _inputs(vocab: int, batch: int = 2, seq: int = 16, seed: int = 0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, vocab, (batch, seq))
  token_types = np.zeros_like(ids)
  token_types[:, seq // 2:] = 1
  mask = np.ones_like(ids)
  mask[-1, seq - 5:] = 0  # padding in the last sequence
  return ids, token_types, mask


def _state(model) -> dict:
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _run_hf(model, ids, token_types, mask):
  with torch.no_grad():
    return model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                 token_type_ids=torch.tensor(token_types), output_hidden_states=True,
                 output_attentions=True)


def _run_ours(checkpoint, ids, token_types, mask):
  return checkpoint.model().apply({"params": checkpoint.params}, jnp.asarray(ids),
                                  jnp.asarray(token_types), jnp.asarray(mask))


def _max_diff(a, b) -> float:
  a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
  return float(np.max(np.abs(a - np.asarray(b))))


def _assert_encoder_parity(hf_out, ours, num_layers):
  assert len(ours.hidden_states) == len(hf_out.hidden_states) == num_layers + 1
  assert len(ours.attentions) == len(hf_out.attentions) == num_layers
  for k, (theirs, mine) in enumerate(zip(hf_out.hidden_states, ours.hidden_states)):
    assert _max_diff(theirs, mine) <= TOL, f"hidden state {k}"
  for k, (theirs, mine) in enumerate(zip(hf_out.attentions, ours.attentions)):
    assert _max_diff(theirs, mine) <= TOL, f"attention probabilities of block {k}"


def _assert_head_parity(hf_out, ours):
  assert _max_diff(hf_out.prediction_logits, ours.mlm_logits) <= TOL
  assert _max_diff(hf_out.seq_relationship_logits, ours.nsp_logits) <= TOL


def _save(model, directory, safe=True):
  if safe:
    model.save_pretrained(directory)
  else:  # a legacy PyTorch pickle, as older checkpoints ship
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(directory / "config.json")
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
  return directory


# (a) a small random BERT with heads, saved with the `bert.` prefix.
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_small_bert_parity(tmp_path, safe):
  model = _hf_bert(SMALL_BERT)
  checkpoint = hf.load_bert(_save(model, tmp_path / "bert", safe))
  assert checkpoint.config == SMALL_BERT
  assert checkpoint.missing == () and checkpoint.complete
  inputs = _inputs(SMALL_BERT.vocab_size)
  hf_out, ours = _run_hf(model, *inputs), _run_ours(checkpoint, *inputs)
  _assert_encoder_parity(hf_out, ours, SMALL_BERT.num_layers)
  _assert_head_parity(hf_out, ours)


def test_bert_without_heads_reports_them_missing(tmp_path):
  model = _hf_bert(SMALL_BERT, heads=False)  # BertModel: no prefix, no heads
  checkpoint = hf.load_bert(_save(model, tmp_path / "encoder"))
  assert checkpoint.missing == ("mlm_head", "nsp_head")
  assert set(checkpoint.params) == {"encoder"}, "missing heads must not be filled silently"
  assert "mlm_head, nsp_head" in checkpoint.describe()
  filled = checkpoint.with_initialized(np.uint32([0, 1]))
  assert filled.initialized == ("mlm_head", "nsp_head") and filled.missing == ()
  inputs = _inputs(SMALL_BERT.vocab_size)
  hf_out, ours = _run_hf(model, *inputs), _run_ours(filled, *inputs)
  _assert_encoder_parity(hf_out, ours, SMALL_BERT.num_layers)
  assert _max_diff(hf_out.pooler_output, ours.pooled_output) <= TOL


# (b) the real MiniLM teacher on real sentences.
def test_minilm_teacher_parity_on_real_sentences(minilm_dir):
  from tokenizers import Tokenizer
  tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
  tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
  encodings = tokenizer.encode_batch([(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], SENTENCES[3]),
                                      (SENTENCES[3], "Short one.")])
  ids = np.array([e.ids for e in encodings])
  token_types = np.array([e.type_ids for e in encodings])
  mask = np.array([e.attention_mask for e in encodings])
  assert mask.min() == 0, "the batch should contain padding"

  checkpoint = hf.load_bert(minilm_dir)
  assert checkpoint.config.num_layers == 6 and checkpoint.config.hidden_size == 384
  assert checkpoint.missing == ("mlm_head", "nsp_head")
  model = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
  hf_out = _run_hf(model, ids, token_types, mask)
  ours = _run_ours(checkpoint.with_initialized(np.uint32([0, 0])), ids, token_types, mask)
  _assert_encoder_parity(hf_out, ours, 6)
  assert _max_diff(hf_out.pooler_output, ours.pooled_output) <= TOL


# (c) a small MobileBERT, in several template variants.
@pytest.mark.parametrize("variant", [
    {},
    dict(normalization="layer_norm", hidden_act="gelu"),
    dict(trigram_input=False, embedding_size=32, hidden_size=32, intermediate_size=40,
         key_query_shared_bottleneck=False),
    dict(use_bottleneck_attention=True, key_query_shared_bottleneck=False, num_ffn=1,
         classifier_activation=False),
    dict(trigram_input=False, embedding_size=32),
    # BERT's block, as AutoDistil's students have it: transformers' use_bottleneck=False.
    dict(use_bottleneck=False, bottleneck_size=64, key_query_shared_bottleneck=False,
         trigram_input=False, embedding_size=64, num_ffn=1, num_heads=4,
         normalization="layer_norm", hidden_act="gelu"),
], ids=["mobilebert", "layernorm-gelu", "plain-qkv", "bottleneck-attention", "no-trigram",
        "bert-block"])
def test_small_mobilebert_parity(variant):
  config = SMALL_STUDENT.replace(**variant)
  model = _hf_mobilebert(config)
  checkpoint = hf._import(config, hf._student_entries(config),
                          hf._normalise_keys(_state(model), "mobilebert."), "in-memory")
  assert checkpoint.missing == ()
  if config.trigram_input or config.embedding_size != config.hidden_size:
    assert checkpoint.unused_keys == ()
  else:  # transformers builds this layer but its forward pass skips it; so does ours
    assert checkpoint.unused_keys == ("embeddings.embedding_transformation.bias",
                                      "embeddings.embedding_transformation.weight")
  inputs = _inputs(config.vocab_size)
  hf_out, ours = _run_hf(model, *inputs), _run_ours(checkpoint, *inputs)
  _assert_encoder_parity(hf_out, ours, config.num_blocks)
  _assert_head_parity(hf_out, ours)


# (d) the full 24-block MobileBERT (encoder outputs).
def test_full_mobilebert_encoder_parity(tmp_path):
  # NoNorm does not renormalise, so large noise compounds over 24 blocks into activations in the
  # the hundreds, where float32 rounding alone exceeds 1e-4; a smaller perturbation keeps them O(1).
  model = _hf_mobilebert(MOBILEBERT, seed=1, scale=0.03)
  checkpoint = hf.load_student(_save(model, tmp_path / "mobilebert"))
  assert checkpoint.config == MOBILEBERT
  inputs = _inputs(MOBILEBERT.vocab_size, batch=2, seq=32)
  hf_out, ours = _run_hf(model, *inputs), _run_ours(checkpoint, *inputs)
  assert max(float(np.abs(h).max()) for h in ours.hidden_states) > 1.0  # not a trivial signal
  _assert_encoder_parity(hf_out, ours, 24)
  assert _max_diff(hf_out.seq_relationship_logits, ours.nsp_logits) <= TOL


def test_student_hf_student_round_trip_is_exact(tmp_path):
  config = SMALL_STUDENT.replace(hidden_act="gelu")
  params = hf.init_params(config, np.uint32([0, 7]))
  exported = hf.export_student(config, params, tmp_path / "export")
  assert not list(exported.glob("*.tmp")), "temporary files must be renamed away"
  back = hf.load_student(exported)
  assert back.config == config and back.missing == () and back.unused_keys == ()
  flat_a = _flatten(params)
  flat_b = _flatten(back.params)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=key)
  assert json.loads((exported / "config.json").read_text())["autodistill_architecture"] == \
      config.name


def test_exported_student_loads_in_transformers_and_matches(tmp_path):
  config = SMALL_STUDENT.replace(normalization="layer_norm")
  params = hf.init_params(config, np.uint32([0, 3]))
  hf.export_student(config, params, tmp_path / "export")
  model, info = transformers.MobileBertForPreTraining.from_pretrained(
      tmp_path / "export", attn_implementation="eager", output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  inputs = _inputs(config.vocab_size, seed=3)
  hf_out = _run_hf(model.eval(), *inputs)
  ours = hf.make_model(config).apply({"params": params}, *map(jnp.asarray, inputs))
  _assert_encoder_parity(hf_out, ours, config.num_blocks)
  _assert_head_parity(hf_out, ours)


def test_inexpressible_student_export_is_refused(tmp_path):
  config = SMALL_STUDENT.replace(key_query_shared_bottleneck=False)  # hidden 64 != bottleneck 32
  assert "intra_bottleneck_size=32" in hf.hf_incompatibility(config)
  assert hf.hf_incompatibility(SMALL_STUDENT) is None
  with pytest.raises(ValueError, match="cannot express this student"):
    hf.export_student(config, hf.init_params(config, np.uint32([0, 1])), tmp_path / "x")
  decoupled = SMALL_STUDENT.replace(num_heads=3, attention_head_size=8)  # 24 wide on 32
  assert "splits that width evenly" in hf.hf_incompatibility(decoupled)
  assert not (tmp_path / "x" / "model.safetensors").exists()


def test_hf_to_student_to_hf_state_dict_is_exact(tmp_path):
  model = _hf_mobilebert(SMALL_STUDENT, seed=5)
  checkpoint = hf.load_student(_save(model, tmp_path / "m"))
  original = _state(model)
  written = hf.student_state_dict(checkpoint.config, checkpoint.params)
  tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
          "mobilebert.embeddings.position_ids"}
  assert set(written) == set(original) - tied
  for key, value in written.items():
    np.testing.assert_array_equal(value, original[key], err_msg=key)


def test_teacher_export_round_trip(tmp_path):
  params = hf.init_params(SMALL_BERT, np.uint32([0, 9]))
  back = hf.load_bert(hf.export_bert(SMALL_BERT, params, tmp_path / "bert"))
  assert back.missing == ()
  for key, value in _flatten(params).items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(_flatten(back.params)[key]))


def test_mismatched_weights_give_a_clear_error(tmp_path):
  directory = _save(_hf_bert(SMALL_BERT), tmp_path / "bert")
  config = json.loads((directory / "config.json").read_text())
  config["intermediate_size"] = 64
  (directory / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"intermediate/kernel has shape \(48, 96\) but"):
    hf.load_bert(directory)


def test_missing_encoder_tensors_and_files_give_clear_errors(tmp_path):
  from safetensors.numpy import load_file, save_file
  directory = _save(_hf_bert(SMALL_BERT), tmp_path / "bert")
  state = load_file(str(directory / "model.safetensors"))
  del state["bert.encoder.layer.1.output.dense.weight"]
  save_file(state, str(directory / "model.safetensors"))
  with pytest.raises(ValueError, match="encoder.layer.1.output.dense.weight"):
    hf.load_bert(directory)
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf.load_bert(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text(json.dumps(SMALL_BERT.to_hf()))
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    hf.load_bert(tmp_path / "empty")
  with pytest.raises(ValueError, match="model_type='bert'"):
    hf.load_student(directory)


def _flatten(tree, prefix=()):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, prefix + (key,)))
    else:
      out["/".join(prefix + (key,))] = value
  return out


# (e) RoBERTa and XLM-R teachers (issue 21): position ids offset past the padding index, one
# token type, an LM head with exact GELU whatever the encoder's activation, no NSP head.
def _small_roberta(model_type: str, **changes) -> BertConfig:
  return BertConfig(vocab_size=120, hidden_size=48, num_layers=3, num_heads=4,
                    intermediate_size=96, max_position_embeddings=42, type_vocab_size=1,
                    layer_norm_eps=1e-5, model_type=model_type, pad_token_id=1, **changes)


def _hf_roberta(config: BertConfig, seed: int = 0):
  torch.manual_seed(seed)
  xlm = config.model_type == "xlm-roberta"
  hf_config = (transformers.XLMRobertaConfig if xlm else transformers.RobertaConfig)(
      **config.to_hf())
  hf_config._attn_implementation = "eager"
  model = (transformers.XLMRobertaForMaskedLM if xlm else transformers.RobertaForMaskedLM)
  return _perturb(model(hf_config), seed)


def _padded_inputs(config: BertConfig, seed: int = 0):
  """Ids that avoid the special tokens, with the last row padded by the pad id (as the data
  pipeline pads): RoBERTa's position ids depend on where the padding is."""
  ids, _, mask = _inputs(config.vocab_size, seed=seed)
  ids = np.where(ids <= 4, ids + 5, ids)
  ids[:, 0] = 0  # <s>
  ids = np.where(mask == 1, ids, config.pad_token_id)
  return ids, np.zeros_like(ids), mask


@pytest.mark.parametrize("config", [
    _small_roberta("roberta"),
    _small_roberta("xlm-roberta"),
    _small_roberta("roberta", hidden_act="relu"),
], ids=["roberta", "xlm-roberta", "roberta-relu-encoder"])
def test_roberta_and_xlmr_teacher_parity(tmp_path, config):
  model = _hf_roberta(config)
  checkpoint = hf.load_bert(_save(model, tmp_path / "m"))
  assert checkpoint.config == config
  assert checkpoint.missing == ("pooler", "nsp_head")  # RobertaForMaskedLM has neither
  assert checkpoint.unused_keys == ()
  ids, types, mask = _padded_inputs(config)
  with torch.no_grad():  # no token_type_ids: transformers' default, one token type
    hf_out = model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                   output_hidden_states=True, output_attentions=True)
  ours = _run_ours(checkpoint.with_initialized(np.uint32([0, 2])), ids, types, mask)
  _assert_encoder_parity(hf_out, ours, config.num_layers)
  assert _max_diff(hf_out.logits, ours.mlm_logits) <= TOL
  # The offset matters: BERT's 0-based positions give other hidden states.
  as_bert = checkpoint.with_initialized(np.uint32([0, 2]))
  shifted = hf.make_model(config.replace(model_type="bert")).apply(
      {"params": as_bert.params}, *map(jnp.asarray, (ids, types, mask)))
  assert _max_diff(hf_out.hidden_states[1], shifted.hidden_states[1]) > 1e-2


def test_roberta_teacher_export_round_trip_loads_in_transformers(tmp_path):
  config = _small_roberta("roberta")
  params = hf.init_params(config, np.uint32([0, 4]))
  directory = hf.export_bert(config, params, tmp_path / "roberta")
  assert json.loads((directory / "config.json").read_text())["architectures"] == \
      ["RobertaForMaskedLM"]
  back = hf.load_bert(directory)
  assert back.config == config and back.missing == ()  # the fitted pooler and NSP head too
  for key, value in _flatten(params).items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(_flatten(back.params)[key]))
  model, info = transformers.RobertaForMaskedLM.from_pretrained(
      directory, attn_implementation="eager", output_loading_info=True)
  assert not info["missing_keys"], info
  extras = {"roberta.pooler.dense.weight", "roberta.pooler.dense.bias",
            "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
  assert set(info["unexpected_keys"]) <= extras, info
  ids, types, mask = _padded_inputs(config, seed=1)
  with torch.no_grad():
    hf_out = model.eval()(torch.tensor(ids), attention_mask=torch.tensor(mask))
  ours = hf.make_model(config).apply({"params": params}, *map(jnp.asarray, (ids, types, mask)))
  assert _max_diff(hf_out.logits, ours.mlm_logits) <= TOL


def test_unsupported_teacher_types_are_refused():
  with pytest.raises(ValueError, match=r"model_type='deberta-v2'.*\['bert', 'roberta', "
                     r"'xlm-roberta'\]"):
    BertConfig.from_hf({"model_type": "deberta-v2"})
  assert BertConfig.from_hf(_small_roberta("roberta").to_hf()).max_sequence_length == 40
