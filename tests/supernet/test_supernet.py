"""AutoDistil's SuperLM: shared weights, one program for every subnet, resumable training, and
a search that re-reports without retraining."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autodistill import sharding
from autodistill.distill import losses
from autodistill.distill.distillation import load_distilled
from autodistill.models import hf
from autodistill.models.elastic import Envelope, pad_tree, slice_tree
from autodistill.supernet import (SubnetConstraints, SubnetTable, SuperLMConfig, SuperLMLoss,
                                  extract_subnet, held_out_scores, load_superlm, score_subnets,
                                  subnet_records, train_superlm, write_search)
from autodistill.supernet.training import IncompatibleSuperLMError
from autodistill.hardware.cache import LatencySettings
from autodistill.supernet.superlm import context_table
from autodistill.train.optimizers import OptimizerConfig, make_optimizer
from autodistill.train.state import TrainState, make_train_step

from synthetic import kill_then_resume, tiny_data, tiny_supernet_space, tiny_teacher

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("superlm")
  _, train, evaluation = tiny_data(root / "data")
  teacher = tiny_teacher()
  space = tiny_supernet_space()
  students = space.architectures(vocab_size=teacher.config.vocab_size,
                                 max_position_embeddings=teacher.config.max_position_embeddings)
  return root, train, evaluation, teacher, space, students


@pytest.fixture(scope="module")
def trained(setup):
  root, train, evaluation, teacher, space, _ = setup
  config = SuperLMConfig(steps=6, relation_heads=2, warmup_steps=1, checkpoint_every=3,
                         log_every=3, progress=False, eval_batches=2)
  return train_superlm(space, teacher, train, evaluation, root / "superlm", config)


def test_relation_assignment_matches_minilm_and_ignores_padding():
  rng = np.random.RandomState(0)
  q, k, v = (jnp.asarray(rng.randn(2, 6, 3, 4), jnp.float32) for _ in range(3))
  t = tuple(jnp.asarray(rng.randn(2, 6, 4, 6), jnp.float32) for _ in range(3))
  mask = jnp.asarray([[1] * 6, [1] * 4 + [0] * 2])
  # R = 2 divides both widths (12 and 24) and nothing is padded: MiniLM-v2's relations exactly.
  teacher_heads = losses.relation_assignment(4, 6, 2)
  expected = losses.attention_relation_kl(t, (q, k, v), mask, 2)
  got = losses.assigned_relation_kl(t, (q, k, v), mask, teacher_heads,
                                    losses.relation_assignment(3, 4, 2))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # The same student zero-padded to 5 heads of 7: the same loss.
  padded = tuple(jnp.pad(x, ((0, 0), (0, 0), (0, 2), (0, 3))) for x in (q, k, v))
  got_padded = losses.assigned_relation_kl(t, padded, mask, teacher_heads,
                                           losses.relation_assignment(3, 4, 2, 5, 7))
  np.testing.assert_allclose(got_padded, expected, rtol=1e-6)
  # R not dividing the width: near-equal contiguous chunks (12 features -> 3, 3, 3, 3 for R=4;
  # 10 features -> 3, 2, 3, 2 for R=4).
  assert losses.relation_assignment(2, 5, 4)[1].tolist() == [3, 2, 3, 2]
  with pytest.raises(ValueError, match="relation heads do not fit"):
    losses.relation_assignment(1, 2, 3)


def test_superlm_forward_equals_each_extracted_subnet(setup, trained):
  _, _, _, teacher, _, students = setup
  envelope = trained.envelope
  ids = jnp.asarray(np.random.RandomState(1).randint(0, teacher.config.vocab_size, (2, 12)))
  mask = jnp.ones((2, 12), jnp.int32).at[1, 9:].set(0)
  model = envelope.model()
  for student in (students[0], students[5], students[10], students[-1]):
    own = hf.make_model(student).apply(
        {"params": envelope.extract(student, trained.params)}, ids, None, mask)
    big = model.apply({"params": trained.params}, ids, None, mask, arch=envelope.arch(student))
    for a, b in zip(own.hidden_states, big.hidden_states):
      np.testing.assert_allclose(a, b[..., :student.hidden_size], atol=1e-5)
    np.testing.assert_allclose(own.mlm_logits, big.mlm_logits, atol=1e-5)


def test_every_subnet_is_scored_by_one_compiled_program(setup, trained):
  _, _, evaluation, teacher, _, students = setup
  s = trained.summary
  loss = SuperLMLoss(trained.envelope, teacher.config, s["relation_heads"], s["teacher_layer"],
                     "sandwich", 3)
  scores = held_out_scores(loss, trained.params, teacher.params, trained.table,
                           np.arange(len(students)), evaluation, sharding.make_mesh(), 2)
  _, subnet_fn = loss.programs["score"]
  assert subnet_fn._cache_size() == 1  # pylint: disable=protected-access
  # The relations are read at the last block's attention, before its FFN: 1-block subnets that
  # differ only in their (last) FFN's width tie exactly, every other pair differs.
  for i, a in enumerate(students):
    for j, b in enumerate(students[:i]):
      if a.num_blocks == b.num_blocks == 1 and a.replace(intermediate_size=b.intermediate_size) == b:
        np.testing.assert_allclose(scores[i], scores[j], rtol=1e-6)
      else:
        assert scores[i] != scores[j], (a.name, b.name)
  # Scored alone through the same program, a subnet gets the same score.
  alone = held_out_scores(loss, trained.params, teacher.params, trained.table, np.asarray([5]),
                          evaluation, sharding.make_mesh(), 2)
  np.testing.assert_allclose(alone[0], scores[5], rtol=1e-5)


def test_a_step_on_a_small_subnet_changes_only_its_slices(setup, trained):
  _, train, _, teacher, _, students = setup
  small = min(students, key=lambda s: (s.num_blocks, s.hidden_size, s.num_heads,
                                       s.intermediate_size))
  table = SubnetTable.build([small], 2, trained.envelope)
  loss = SuperLMLoss(trained.envelope, teacher.config, 2, 2, "uniform", 1)
  # No weight decay, fresh optimizer state: only gradients move weights (with decay, LAMB would
  # shrink every weight, used or not).
  tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, weight_decay=0.0), 1)
  step = jax.jit(make_train_step(loss, tx))
  params = jax.device_put(trained.params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0))
  batch = next(iter(train.device_batches(sharding.make_mesh())))
  new_state, _ = step(state, batch, {"teacher": teacher.params, "subnets": context_table(table)})
  before, after = jax.device_get(trained.params), jax.device_get(new_state.params)
  used = pad_tree(jax.tree.map(np.ones_like, slice_tree(before, hf.abstract_params(small))),
                  trained.envelope.abstract_params())
  moved = jax.tree.map(lambda a, b: a != b, before, after)
  outside = jax.tree.map(lambda m, u: bool(np.any(m & (u == 0))), moved, used)
  assert not any(jax.tree.leaves(outside)), "a weight outside the subnet moved"
  inside = jax.tree.map(lambda m: bool(np.any(m)), moved["encoder"])
  assert inside["block_0"]["attention"]["query"]["kernel"]
  assert not any(jax.tree.leaves(inside["block_1"]))  # the 1-block subnet lacks block 1


def test_sigkilled_superlm_training_resumes_to_the_uninterrupted_result(tmp_path):
  # Killed at the 5th batch (checkpoints every 2 steps), with uniform sampling: the resumed run
  # must draw the same subnets as the uninterrupted one.
  resumed, uninterrupted, _ = kill_then_resume(HERE / "kill_worker.py", tmp_path, 5,
                                               "superlm.json")
  for k in uninterrupted.files:
    np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)


def test_search_writes_its_outputs_and_reruns_without_retraining(setup, trained, tmp_path):
  root, train, evaluation, teacher, space, students = setup
  lines = []
  again = train_superlm(space, teacher, train, evaluation, root / "superlm",
                        SuperLMConfig(steps=6, relation_heads=2, warmup_steps=1,
                                      checkpoint_every=3, log_every=3, progress=False,
                                      eval_batches=2), log=lines.append)
  assert "training skipped" in lines[0]
  for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(trained.params)):
    np.testing.assert_array_equal(a, b)
  mesh = sharding.make_mesh()
  scores = score_subnets(trained, teacher, evaluation, eval_batches=2, mesh=mesh,
                         progress=False, log=lines.append)
  assert len(scores) == len(students) == 16
  assert score_subnets(trained, teacher, evaluation, eval_batches=2, mesh=mesh, progress=False,
                       log=lines.append) == scores
  assert "read from" in lines[-1]
  # A parameter limit prunes the widest subnets before scoring; the search reports the rest.
  limit = sorted(hf_count(s) for s in students)[8]
  records = subnet_records(space, students, scores, LatencySettings(seq_len=32), None,
                           SubnetConstraints(max_params=limit))
  assert sum(r.feasible for r in records) == sum(hf_count(s) <= limit for s in students)
  assert all("constraint: params" in r.reason for r in records if not r.feasible)
  summary = write_search(records, tmp_path, "flops", "tiny", {})
  for name in ("trials.csv", "trials.json", "pareto_front.json", "pareto_front.png",
               "summary.json"):
    assert (tmp_path / name).is_file(), name
  best = summary["best"]
  feasible = [r for r in records if r.feasible]
  assert best["relation_loss"] == min(r.relation_loss for r in feasible)
  assert summary["front"] and summary["baseline"]["name"] == space.baseline_config(
      vocab_size=teacher.config.vocab_size,
      max_position_embeddings=teacher.config.max_position_embeddings).name
  # The extracted best subnet is a distillation directory the other commands read.
  student = next(s for s in students if s.name == best["name"])
  target = extract_subnet(trained, student, tmp_path / "students" / student.name,
                          relation_loss=best["relation_loss"])
  config, params, result = load_distilled(target)
  assert config == student and result["source"] == "supernet"
  for a, b in zip(jax.tree.leaves(params),
                  jax.tree.leaves(trained.envelope.extract(student, trained.params))):
    np.testing.assert_array_equal(a, b)


def hf_count(student):
  from autodistill.models.params import analytic_param_count
  return analytic_param_count(student, heads=False)


def test_a_superlm_of_another_recipe_is_refused(setup, trained):
  root, train, evaluation, teacher, space, _ = setup
  with pytest.raises(IncompatibleSuperLMError, match="another recipe"):
    train_superlm(space, teacher, train, evaluation, root / "superlm",
                  SuperLMConfig(steps=7, relation_heads=2, progress=False))
  assert load_superlm(root / "nothing_here") is None


def test_the_envelope_refuses_embedding_widths_behind_a_transformation():
  from autodistill.models import StudentConfig
  a = StudentConfig(hidden_size=64, bottleneck_size=32, num_heads=2, intermediate_size=64,
                    num_ffn=1, num_blocks=1, embedding_size=32, vocab_size=50,
                    max_position_embeddings=16)
  with pytest.raises(ValueError, match="vary the embedding width only"):
    Envelope.of([a, a.replace(embedding_size=16)])
