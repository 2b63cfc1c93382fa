"""Orbax checkpoints of the whole training state plus the data position.

A checkpoint holds the train state (step, params, batch_stats, the full optax
state -- mask, Fisher statistics, PRNG keys -- and the running sums of the
current epoch's metrics) and a small JSON record of where the input pipeline
is (epoch and step within it). Saving is synchronous so that a checkpoint is
complete on disk when ``save`` returns; with the small models this program
runs on CPU that costs milliseconds, and it makes kill-and-resume safe.
"""

import os
from typing import Any, Optional

import flax.serialization
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores ``(train_state, data_position)`` under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False,
            create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

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
