"""Where a run came from: code, libraries, machine, device and config.

:func:`collect` describes the running process; the training program appends
it to ``workdir/provenance.jsonl`` each time it starts (:func:`write`: one
line per start, so a resumed run has several), and a sweep record carries
what :func:`read` makes of that file. A run reproduces to the last digit
only under the same commit (and no uncommitted changes), the same library
versions and the same kind of device (for CPUs, the model: XLA compiles for
the host's instruction set); :func:`differences` lists what differs between
two provenances.
"""

import datetime
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
from typing import Any, Optional

from experiments import workdir_guard

FILE = "provenance.jsonl"
LIBRARIES = ("jax", "jaxlib", "optax", "flax", "numpy")
REPO = pathlib.Path(__file__).resolve().parents[1]
# Where the sweep keeps its run records (relative to the repository root).
RECORDS = "experiments/results"
# Compared by ``differences``; time, host and argv (the workdir) always differ.
COMPARED = ("commit", "dirty", "changes", "diff_sha256", "versions", "python",
            "platform", "cpu", "device", "config")


def git_state(repo: pathlib.Path = REPO) -> dict:
  """``{"commit", "dirty", "changes", "diff_sha256"}`` of ``repo``.

  ``dirty``: tracked files differ from the commit, or files git does not
  ignore are untracked, outside the run records (``RECORDS``); ``changes`` lists them (``git status --porcelain``)
  and ``diff_sha256`` identifies the tracked changes (``git diff HEAD``).
  All None where git or the repository is missing.
  """

  def git(*args) -> Optional[str]:
    try:
      return subprocess.run(("git", "-C", str(repo)) + args, check=True,
                            capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
      return None

  commit = git("rev-parse", "HEAD")
  if commit is None:
    return {"commit": None, "dirty": None, "changes": None, "diff_sha256": None}
  # The sweep appends each finished run to experiments/results/: a record
  # written there between runs does not change the code a run executes.
  paths = ("--", ".", f":(exclude){RECORDS}")
  changes = (git("status", "--porcelain", *paths) or "").splitlines()
  diff = git("diff", "HEAD", *paths) or ""
  return {"commit": commit.strip(), "dirty": bool(changes), "changes": changes,
          "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def cpu_model() -> str:
  """The CPU's model name: /proc/cpuinfo, else ``lscpu``, else ``platform``."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
    if match := re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE):
      return match.group(1).strip()
  except OSError:
    pass
  try:
    text = subprocess.run(["lscpu"], check=True, capture_output=True,
                          text=True).stdout
    if match := re.search(r"^Model name:\s*(.+)$", text, re.MULTILINE):
      return match.group(1).strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return platform.processor() or platform.machine()


def versions() -> dict[str, Optional[str]]:
  """Installed versions of ``LIBRARIES`` (None if one is missing)."""
  found = {}
  for name in LIBRARIES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


def device() -> dict:
  """The backend and devices JAX runs on (this initialises JAX's backend)."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {"backend": jax.default_backend(),
          "kind": sorted({d.device_kind for d in devices}),
          "count": jax.device_count(), "processes": jax.process_count()}


def collect(config=None) -> dict:
  """This process's provenance, with ``config`` resolved to plain JSON."""
  resolved = None
  if config is not None:
    resolved = json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)
  return {**git_state(), "versions": versions(),
          "python": platform.python_version(), "platform": platform.platform(),
          "cpu": cpu_model(), "device": device(), "config": resolved,
          "host": platform.node(), "argv": sys.argv,
          "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def write(workdir: str, config) -> dict:
  """Appends :func:`collect` to ``workdir/provenance.jsonl``; returns it."""
  entry = collect(config)
  with open(os.path.join(workdir, FILE), "a") as f:
    f.write(json.dumps(entry) + "\n")
  return entry


def read(workdir) -> Optional[dict]:
  """The provenance of the run in ``workdir`` for its record: the first
  start's, plus ``"resumed"``, the later starts' (if any); None if the run
  wrote none."""
  path = pathlib.Path(workdir) / FILE
  if not path.exists():
    return None
  starts = [json.loads(line) for line in path.read_text().splitlines() if line]
  if not starts:
    return None
  return {**starts[0], **({"resumed": starts[1:]} if len(starts) > 1 else {})}


def differences(recorded: Optional[dict], new: Optional[dict]) -> dict[str, Any]:
  """``{key: [recorded, new]}`` of the ``COMPARED`` keys that differ, the
  config key by key (``config.KEY``); ``{"provenance": [...]}`` saying which
  side has none if either has none."""
  if not recorded or not new:
    return {"provenance": ["recorded" if recorded else None,
                           "recorded" if new else None]}
  changed = {}
  for key in COMPARED:
    old, now = recorded.get(key), new.get(key)
    if key == "config" and isinstance(old, dict) and isinstance(now, dict):
      old, now = workdir_guard.flat_config(old), workdir_guard.flat_config(now)
      changed.update({f"config.{k}": [old.get(k), now.get(k)]
                      for k in sorted(old.keys() | now.keys())
                      if old.get(k) != now.get(k)})
    elif old != now:
      changed[key] = [old, now]
  return changed
