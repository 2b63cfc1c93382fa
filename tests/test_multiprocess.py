"""Two processes (2 CPU devices each) train like one process with 4 devices.

Starts ``experiments/multiprocess.py`` as subprocesses on the loopback
address: processes 0 and 1 of a ``jax.distributed`` job (gloo collectives)
and, concurrently, the single-process 4-device reference. Every process is
killed if the test fails or runs past its time limit.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(args, log_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  log = open(log_path, "w")  # pylint: disable=consider-using-with
  process = subprocess.Popen(
      [sys.executable, "-m", "experiments.multiprocess", *args],
      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
  process.log_path = log_path
  process.log = log
  return process


def wait_all(processes, timeout_s):
  deadline = time.monotonic() + timeout_s
  try:
    for process in processes:
      process.wait(timeout=max(deadline - time.monotonic(), 1))
  except subprocess.TimeoutExpired:
    pytest.fail(f"multi-process run exceeded {timeout_s} s")
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
      process.log.close()
  for process in processes:
    log = pathlib.Path(process.log_path).read_text()
    assert process.returncode == 0, f"{process.args}\n{log[-3000:]}"


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  steps = "3"  # The mask is refreshed on steps 0 and 2.
  coordinator = f"127.0.0.1:{free_port()}"
  two, one = tmp_path / "two.npz", tmp_path / "one.npz"
  processes = [
      start(["--process-id", str(i), "--num-processes", "2",
             "--coordinator", coordinator, "--steps", steps, "--out", str(two)],
            tmp_path / f"process{i}.log")
      for i in range(2)
  ]
  processes.append(start(["--num-processes", "1", "--steps", steps,
                          "--out", str(one)], tmp_path / "single.log"))
  wait_all(processes, TIMEOUT_S)
  for i in range(2):
    log = (tmp_path / f"process{i}.log").read_text()
    assert f"process {i}/2: 2 local devices" in log, log[-2000:]
  assert "process 0/1: 4 local devices" in (tmp_path / "single.log").read_text()

  multi, single = np.load(two), np.load(one)
  assert sorted(multi.files) == sorted(single.files)
  assert any(k.startswith("mask/") for k in single.files)
  for key in single.files:
    if key.startswith("mask/"):
      np.testing.assert_array_equal(multi[key], single[key], err_msg=key)
    else:
      np.testing.assert_allclose(multi[key], single[key], rtol=0, atol=1e-6,
                                 err_msg=key)
  max_diff = max(float(np.max(np.abs(multi[k].astype(np.float64) - single[k])))
                 for k in single.files if k.startswith("params/"))
  print(f"max |params(2 processes) - params(1 process)| = {max_diff:.3g}")
