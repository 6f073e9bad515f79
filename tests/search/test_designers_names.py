"""The designer names load without Vizier; the other public names load their modules on use."""

import pathlib
import subprocess
import sys
import textwrap

import pytest

from autodistill.search import designers

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_designer_names_import_no_vizier_jax_or_grpc():
  # autodistill and autodistill.search import much more than the designers package, so they are
  # replaced by bare packages: only autodistill.search.designers' own imports run.
  code = textwrap.dedent(f"""
      import sys, types
      for name in ("autodistill", "autodistill.search"):
        package = types.ModuleType(name)
        package.__path__ = [{str(ROOT)!r} + "/" + name.replace(".", "/")]
        sys.modules[name] = package
      from autodistill.search.designers import DEFAULT_DESIGNER, DESIGNERS, check_designer
      assert check_designer(DEFAULT_DESIGNER) in DESIGNERS
      print(sorted(m for m in sys.modules if m.split(".")[0] in ("vizier", "jax", "grpc")))
      """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                        cwd=ROOT)
  assert done.stdout.strip() == "[]", done.stdout


def test_lazy_names_come_from_their_modules():
  # pylint: disable-next=import-outside-toplevel
  from autodistill.search.designers import gp_bandit, replay, seeds
  assert designers.make_designer is replay.make_designer
  assert designers.suggest is replay.suggest
  assert designers.call_seed is seeds.call_seed
  assert designers.DiscreteGPBandit is gp_bandit.DiscreteGPBandit
  assert set(designers.__all__) <= set(dir(designers))
  with pytest.raises(AttributeError, match="no attribute 'nelder_mead'"):
    designers.nelder_mead  # pylint: disable=pointless-statement


def test_unknown_designer_names_the_choices():
  with pytest.raises(ValueError, match="nelder_mead") as error:
    designers.check_designer("nelder_mead")
  for name in designers.DESIGNERS:
    assert name in str(error.value)
