"""SAM and SSAM on several devices: data parallel, shard_map, FSDP.

The checks live in the ``sharding`` package next to this file and run in one
subprocess with 8 CPU devices (the device count is fixed when JAX starts,
which this process has already done). Each test reports one case.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
TIMEOUT_S = 600

sys.path.insert(0, str(HERE))
from sharding import runner  # pylint: disable=g-import-not-at-top,wrong-import-position


def _run_cases(tmp_path_factory, names) -> dict:
  """Runs the named cases in one subprocess; returns their results."""
  out = tmp_path_factory.mktemp("sharding") / "results.json"
  # The cases import experiments/, which is not installed: the root goes on
  # the path of the subprocess, which runs from tests/ to find the package.
  path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(path))
  env.pop("XLA_FLAGS", None)
  try:
    run = subprocess.run(
        [sys.executable, "-m", "sharding", str(out), *names],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    pytest.fail(f"python -m sharding exceeded {TIMEOUT_S} s")
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  return json.loads(out.read_text())


CASES = runner.load_cases()
FAST = sorted(set(CASES) - runner.SLOW_CASES)
SLOW = sorted(runner.SLOW_CASES)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  return _run_cases(tmp_path_factory, FAST)


@pytest.fixture(scope="module")
def slow_results(tmp_path_factory):
  return _run_cases(tmp_path_factory, SLOW)


def _check(results, name):
  assert name in results, f"{name} did not run"
  assert results[name] == "ok", results[name]


@pytest.mark.parametrize("name", FAST)
def test_case(results, name):
  _check(results, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_slow_case(slow_results, name):
  _check(slow_results, name)
