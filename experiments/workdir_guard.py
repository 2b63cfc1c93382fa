"""One run per workdir, and the config its checkpoints were made with.

``lock`` holds an exclusive ``flock`` on ``workdir/run.lock`` for the whole
run. The operating system releases it when the process ends in any way, so a
run killed with ``kill -9`` leaves no stale lock behind.

``check_config`` keeps ``workdir/config.json`` equal to the config of the
checkpoints in ``workdir/checkpoints`` (analyses rebuild the model from it).
Resuming with a different config is refused with the differing keys, unless
each of them is named as safe to change. A key that the checkpoints' config
lacks and that this run leaves at its default is no change: keys join the
config with defaults that keep what older programs did. Once the run has saved its first
checkpoint, ``record_config`` appends a record of the run (with the accepted
changes) to ``workdir/config_history.jsonl`` and rewrites ``config.json``.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Any, Iterator, Optional, Sequence

from experiments import errors

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
_MISSING = "<absent>"


class WorkdirBusyError(errors.UsageError):
  """Another live run holds the workdir."""


class ConfigMismatchError(errors.UsageError, ValueError):
  """Resuming with a config that differs from the checkpoints' config."""


class ResumeRefusedError(errors.UsageError, FileExistsError):
  """``resume=False`` on a workdir that holds checkpoints."""


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s run lock; raises :class:`WorkdirBusyError` if taken."""
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      if error.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
      raise WorkdirBusyError(
          f"{workdir} is in use by another run ({holder or 'unknown process'}"
          "); wait for it to finish or pass another --workdir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock


def flat_config(config) -> dict[str, Any]:
  """``{"augment.cutout_size": 16, ...}`` of a ConfigDict or its JSON dict."""
  if not isinstance(config, dict):
    config = json.loads(config.to_json())
  flat = {}
  for key, value in config.items():
    if isinstance(value, dict):
      flat.update({f"{key}.{k}": v for k, v in flat_config(value).items()})
    else:
      flat[key] = value
  return flat


def check_config(config, workdir: str, has_checkpoints: bool,
                 allowed_changes: Sequence[str] = (),
                 defaults: Optional[dict[str, Any]] = None) -> Optional[dict]:
  """Refuses a resume whose config differs from the checkpoints' config.

  Args:
    config: the config of this run.
    workdir: the run's directory.
    has_checkpoints: whether ``workdir`` holds checkpoints to resume from.
    allowed_changes: dotted keys that may differ from the checkpoints' config.
    defaults: every key's default (``flat_config`` of the base config,
      ``experiments/configs/common.py``): a key absent from the checkpoints'
      config and at its default here is no change.

  Returns:
    ``{key: [old, new]}`` of the accepted changes, or None if the workdir has
    checkpoints but no ``config.json`` to compare with.

  Raises:
    ConfigMismatchError: listing every differing key not in ``allowed_changes``.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not has_checkpoints:
    return {}
  if not os.path.exists(path):
    return None
  with open(path) as f:
    old = flat_config(json.load(f))
  new = flat_config(config)
  defaults = defaults or {}
  changed = {key: [old.get(key, _MISSING), new.get(key, _MISSING)]
             for key in sorted(old.keys() | new.keys())
             if old.get(key, _MISSING) != new.get(key, _MISSING)
             and not (key not in old and key in defaults and new.get(key) == defaults[key])}
  refused = [key for key in changed if key not in allowed_changes]
  if refused:
    differences = ", ".join(f"{key}: {changed[key][0]!r} -> "
                            f"{changed[key][1]!r}" for key in refused)
    raise ConfigMismatchError(
        f"{workdir} holds checkpoints made with another config ({path}); "
        f"differing keys: {differences}. Resume with the same config, pass "
        f"--allow_config_change={','.join(refused)} if these changes are "
        "safe, or use another --workdir.")
  return changed


def record_config(config, workdir: str, resumed_step: Optional[int],
                  changed: Optional[dict]) -> None:
  """Appends this run to the history, then writes ``config.json``; call it
  once the run has saved its first checkpoint, so that a run that stops
  earlier (refused, diverged, killed) changes neither."""
  _append_history(workdir, {
      "time": datetime.datetime.now().astimezone().isoformat(
          timespec="seconds"),
      "resumed_from_step": resumed_step,
      "changed": ("unknown: there was no config.json to compare with"
                  if changed is None else changed)})
  _write_atomically(os.path.join(workdir, CONFIG_FILE),
                    config.to_json(indent=1))


def _append_history(workdir: str, record: dict) -> None:
  with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
    f.write(json.dumps(record) + "\n")


def _write_atomically(path: str, text: str) -> None:
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    f.write(text)
  os.replace(temporary, path)
