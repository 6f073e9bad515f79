"""The stopwatch behind every run's time breakdown: nested parts, compilation moved out."""

import time

import jax
import jax.numpy as jnp

from autodistill.timing import COMPILE, Stopwatch, describe


def test_nested_parts_count_once_and_add_up_to_the_wall_time():
  watch = Stopwatch()
  start = time.time()
  with watch("setup"):
    time.sleep(0.05)
    with watch("train"):
      time.sleep(0.1)
      with watch("checkpoint"):
        time.sleep(0.05)
    with watch("evaluate"):
      time.sleep(0.05)
  elapsed = time.time() - start
  seconds = dict(watch.seconds)
  assert seconds["train"] >= 0.1 and seconds["checkpoint"] >= 0.05
  assert seconds["evaluate"] >= 0.05 and seconds["setup"] >= 0.05
  # Exclusive: the outer parts do not also count their inner parts' time.
  assert seconds["setup"] < 0.05 + 0.04 and seconds["train"] < 0.1 + 0.04
  assert abs(sum(seconds.values()) - elapsed) < 0.01


def test_compilation_inside_a_part_is_moved_to_compile():
  watch = Stopwatch()

  @jax.jit
  def fresh(x):  # a new function: traced and compiled on its first call
    for _ in range(20):
      x = jnp.tanh(x @ x)
    return x

  x = jnp.ones((16, 16))
  start = time.time()
  with watch("train"):
    fresh(x).block_until_ready()
  elapsed = time.time() - start
  assert watch.seconds[COMPILE] > 0
  assert abs(watch.seconds[COMPILE] + watch.seconds["train"] - elapsed) < 0.01
  compiled = watch.seconds[COMPILE]
  with watch("train"):
    fresh(x).block_until_ready()  # cached: nothing more to compile
  assert watch.seconds[COMPILE] == compiled


def test_describe_lists_the_largest_part_first():
  assert describe({"train": 1.0, "compile": 3.0}) == "compile 3.0 s (75%), train 1.0 s (25%)"
