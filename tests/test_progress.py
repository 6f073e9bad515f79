"""Progress output: a tqdm bar on a terminal, plain lines at most every few seconds in a log."""

import io

from tqdm.auto import tqdm

from autodistill import progress


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_lines_in_a_log_have_no_carriage_returns_and_come_every_20_seconds():
  out, clock = io.StringIO(), _Clock()
  bar = progress.LineProgress(100, initial=10, desc="teacher_adapt", unit="steps", file=out,
                              clock=clock)
  for _ in range(40):  # 40 steps at 1 s each: a line after 20 s and after 40 s
    clock.now += 1.0
    bar.update(1)
    bar.set_postfix(loss="4.8123")
  bar.set_postfix_str("loss 4.7")
  clock.now += 5.0
  bar.close()
  bar.close()  # closing twice prints nothing more
  assert out.getvalue().splitlines() == [
      "teacher_adapt: 30/100 steps, 20 s, loss=4.8123",
      "teacher_adapt: 50/100 steps, 40 s, loss=4.8123",
      "teacher_adapt: 50/100 steps, 45 s, loss 4.7",
  ]
  assert "\r" not in out.getvalue()


def test_short_work_prints_nothing_in_a_log():
  out, clock = io.StringIO(), _Clock()
  bar = progress.LineProgress(10, file=out, clock=clock)
  for _ in range(10):
    clock.now += 0.5
    bar.update(1)
  bar.close()
  assert out.getvalue() == ""


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_a_bar_on_a_terminal_lines_in_a_file_and_nothing_when_disabled(monkeypatch):
  monkeypatch.delitem(__import__("sys").modules, "ipykernel", raising=False)
  assert isinstance(progress.progress_bar(5, file=_Terminal()), tqdm)
  assert isinstance(progress.progress_bar(5, file=io.StringIO()), progress.LineProgress)
  silent = progress.progress_bar(5, file=io.StringIO(), enabled=False)
  assert isinstance(silent, tqdm) and silent.disable
