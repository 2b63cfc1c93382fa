"""Orbax checkpoints of the whole training state plus the data position.

A checkpoint holds the train state (step, params, batch_stats, the full optax
state -- mask, Fisher statistics, PRNG keys -- and the running sums of the
current epoch's metrics) and a small JSON record of where the input pipeline
is (epoch and step within it). Saving is synchronous so that a checkpoint is
complete on disk when ``save`` returns, which makes kill-and-resume safe.

Integrity: orbax checks the index of each array shard (crc32c) but not the
data, so a flipped byte in a data file restores silently as wrong numbers.
``save`` therefore writes the SHA-256 and size of every file of the step
directory to ``<step>/sha256sums.json`` (last, so a checkpoint without it is
one whose save did not finish), and ``restore_latest`` restores only a
checkpoint whose files all match (a directory written before checksums
existed is restored unverified, with a warning). Newer checkpoints that do not match are
moved to ``rejected_checkpoints/`` beside the checkpoint directory (so that
the run can save those steps again) with one warning each; if none matches,
it raises :class:`NoIntactCheckpointError` and moves nothing.
"""

import datetime
import hashlib
import json
import os
import shutil
from typing import Any, Callable, Optional

import flax.serialization
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from experiments import distributed
from experiments import errors

CHECKSUM_FILE = "sha256sums.json"


class NoIntactCheckpointError(errors.RunError):
  """Every checkpoint of the directory is damaged or incomplete."""


class CheckpointMismatchError(errors.UsageError):
  """An intact checkpoint that does not fit the state this config builds."""


def saved_steps(directory: str) -> list[int]:
  """Steps of the finished checkpoints in ``directory`` (no orbax needed)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit()
                and os.path.isdir(os.path.join(directory, name)))


class Checkpointer:
  """Saves and restores ``(train_state, data_position)`` under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._after_next_save: Optional[Callable[[], None]] = None
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False,
            create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def after_next_save(self, callback: Callable[[], None]) -> None:
    """Calls ``callback`` once, after the next checkpoint is complete."""
    self._after_next_save = callback

  def save(self, step: int, state: Any, data_position: dict) -> None:
    """Writes a checkpoint for global ``step`` (a no-op if it already exists)."""
    if step in self._manager.all_steps():
      return
    # Plain nested dicts of arrays: independent of the optax state classes.
    # Global jax.Arrays, not host copies: with several processes orbax
    # coordinates them and writes each replicated array once.
    state_dict = flax.serialization.to_state_dict(state)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state_dict),
        data_position=ocp.args.JsonSave(data_position)))
    self._manager.wait_until_finished()
    if distributed.is_main_process():
      _write_checksums(self._step_directory(step))
    if self._after_next_save is not None:
      callback, self._after_next_save = self._after_next_save, None
      callback()

  def problem(self, step: int) -> Optional[str]:
    """Why checkpoint ``step`` cannot be trusted, or None if its files match
    the checksums written when it was saved."""
    return _checksum_problem(self._step_directory(step))

  def restore_latest(self, like: Any, warn: Callable[[str], None] = print
                     ) -> Optional[tuple[int, Any, dict]]:
    """Restores the newest intact checkpoint: ``(step, state, data_position)``.

    Newer checkpoints that are damaged or incomplete are moved aside, with a
    one-line ``warn`` each. Returns None if there is no checkpoint at all.
    A directory in which no checkpoint has checksums (written before they
    existed) restores its newest checkpoint unverified, with a warning.

    Raises:
      NoIntactCheckpointError: if no checkpoint is intact (nothing is moved).
      CheckpointMismatchError: if the newest intact checkpoint does not fit
        the structure of ``like`` (saved with another optimizer or model).
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if steps and not any(os.path.exists(os.path.join(
        self._step_directory(step), CHECKSUM_FILE)) for step in steps):
      warn(f"The checkpoints in {self.directory} have no checksums (written "
           f"by an older version); restoring step {steps[0]} unverified.")
      return (steps[0],) + self.restore(steps[0], like)
    rejected = []
    for step in steps:
      problem = self.problem(step)
      if problem is not None:
        rejected.append((step, problem))
        continue
      for bad_step, bad_problem in rejected:
        moved_to = self._set_aside(bad_step)
        warn(f"Checkpoint step {bad_step} is not intact ({bad_problem}); "
             f"moved to {moved_to}, resuming from step {step}.")
      if rejected:
        self._manager.reload()
      try:
        state, position = self.restore(step, like)
      except (ValueError, TypeError, KeyError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointMismatchError(
            f"Checkpoint step {step} in {self.directory} is intact but does "
            f"not fit the state this config builds ({type(error).__name__}: "
            f"{detail[:300]}); was it made with another optimizer or model?"
        ) from error
      return step, state, position
    if rejected:
      problems = "; ".join(f"step {step}: {problem}"
                           for step, problem in rejected)
      raise NoIntactCheckpointError(
          f"No intact checkpoint in {self.directory} ({problems}). Move the "
          "directory away to start over, or use another --workdir.")
    return None

  def _step_directory(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _set_aside(self, step: int) -> str:
    """Moves checkpoint ``step`` out of the directory (process 0; all wait)."""
    parent = os.path.join(os.path.dirname(self.directory),
                          "rejected_checkpoints")
    target = os.path.join(parent, f"{step}-" + datetime.datetime.now()
                          .strftime("%Y%m%d-%H%M%S-%f"))
    if distributed.is_main_process():
      os.makedirs(parent, exist_ok=True)
      shutil.move(self._step_directory(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    return target

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """Restores checkpoint ``step`` into the structure (and dtypes) of ``like``."""
    target = flax.serialization.to_state_dict(like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data_position=ocp.args.JsonRestore()))
    state = flax.serialization.from_state_dict(like, restored["state"])
    return state, dict(restored["data_position"])

  def read_state(self, step: int) -> dict:
    """Checkpoint ``step``'s state as nested dicts of numpy arrays, no target
    needed (for inspection and comparisons)."""
    # On this process's first device, whatever mesh the checkpoint was saved
    # from (a multi-device run read on one CPU, say).
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(fallback_sharding=(
            jax.sharding.SingleDeviceSharding(jax.local_devices()[0])))))
    return jax.device_get(restored["state"])

  def close(self) -> None:
    self._manager.close()


def _file_digests(directory: str) -> dict[str, dict]:
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      relative = os.path.relpath(path, directory)
      if relative in (CHECKSUM_FILE, CHECKSUM_FILE + ".tmp"):
        continue
      sha = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          sha.update(block)
      digests[relative] = {"sha256": sha.hexdigest(),
                           "size": os.path.getsize(path)}
  return digests


def _write_checksums(step_directory: str) -> None:
  path = os.path.join(step_directory, CHECKSUM_FILE)
  digests = _file_digests(step_directory)
  with open(path + ".tmp", "w") as f:
    json.dump(digests, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)  # atomic: present means complete


def _checksum_problem(step_directory: str) -> Optional[str]:
  path = os.path.join(step_directory, CHECKSUM_FILE)
  try:
    with open(path) as f:
      expected = json.load(f)
  except FileNotFoundError:
    return (f"no {CHECKSUM_FILE}: its save did not finish, or it was written "
            "without checksums")
  except (OSError, ValueError) as error:
    return f"unreadable {CHECKSUM_FILE}: {error}"
  for relative, want in sorted(expected.items()):
    path = os.path.join(step_directory, relative)
    if not os.path.isfile(path):
      return f"{relative} is missing"
    if os.path.getsize(path) != want["size"]:
      return (f"{relative} has {os.path.getsize(path)} bytes, "
              f"{want['size']} were saved")
  actual = _file_digests(step_directory)
  for relative, want in sorted(expected.items()):
    if actual[relative]["sha256"] != want["sha256"]:
      return f"{relative} does not match its SHA-256"
  return None
