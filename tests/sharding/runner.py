"""The case registry and the entry point of the multi-device checks.

JAX fixes the number of CPU devices when its backend starts, which the main
pytest process has long done, so the cases run in a fresh process, from
``tests/`` with the repository root on ``PYTHONPATH``::

  python -m sharding OUT.json [CASE ...]

It asks for 8 CPU devices, runs every case (or the named ones), and writes
``{case: "ok" or the traceback}`` to ``OUT.json``. This module imports no JAX
at import time, and :func:`load_cases` imports the case modules (and JAX)
only when called, so that :func:`main` sets the device count first.
"""

import importlib
import json
import traceback

NUM_DEVICES = 8
CASE_MODULES = ("data_parallel", "shard_map", "fsdp")

CASES = {}
# Cases that repeat a covered path (dense SAM, whose perturbation the SSAM-F
# case also runs; another mask strategy or sharding mode): they run with
# ``pytest -m slow``.
SLOW_CASES = set()


def case(fn=None, *, slow=False):
  """Registers ``fn`` as a case, named by its function name; ``slow``: it
  runs only with the slow tests."""
  if fn is None:
    return lambda fn: case(fn, slow=slow)
  CASES[fn.__name__] = fn
  if slow:
    SLOW_CASES.add(fn.__name__)
  return fn


def load_cases() -> dict:
  """Imports the case modules, which register their cases; returns ``CASES``."""
  for name in CASE_MODULES:
    importlib.import_module(f"{__package__}.{name}")
  return CASES


def main(argv):
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_num_cpu_devices", NUM_DEVICES)
  load_cases()
  assert len(jax.devices()) == NUM_DEVICES, jax.devices()
  out, names = argv[0], argv[1:] or list(CASES)
  results = {}
  for name in names:
    try:
      CASES[name]()
      results[name] = "ok"
    except Exception:  # pylint: disable=broad-except
      results[name] = traceback.format_exc()
    print(name, "ok" if results[name] == "ok" else "FAILED", flush=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)
