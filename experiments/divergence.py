"""Stops a diverging run before a non-finite state reaches a checkpoint.

The train loop never syncs per step for this: ``check`` runs where the host
waits anyway (before every checkpoint and at the end of every epoch) and
reads the epoch's running loss sum and one all-finite reduction over the
parameters and BatchNorm statistics. A non-finite state is never saved, so
the newest checkpoint is always the last good one.

With ``config.skip_nonfinite_steps = N > 0`` the optimizer is
``ssam(optax.apply_if_finite(base, N), ...)`` (see ``optimizers``): a step
whose sharpness-aware gradient is not finite leaves the parameters and the
base optimizer's state unchanged, so a non-finite loss alone no longer stops
the run (it still shows as a non-finite ``train_loss`` for that epoch).
After N consecutive such steps the update is applied, the parameters become
non-finite and the run stops here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import errors


class DivergedError(errors.RunError):
  """The loss or the parameters became non-finite."""


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf))
                            for leaf in jax.tree.leaves(tree)]))


def check(state, *, steps_per_epoch: int, num_epochs: int,
          skip_nonfinite_steps: int, checkpointer) -> None:
  """Raises :class:`DivergedError` if ``state`` (a ``train.TrainState``) is
  not finite: its parameters, BatchNorm statistics or, unless non-finite
  steps are skipped (``skip_nonfinite_steps > 0``, as the config's), the
  loss summed over the epoch so far. ``num_epochs`` is for the message."""
  problems = []
  if not skip_nonfinite_steps:
    loss_sum, count = jax.device_get((state.epoch_metrics["loss_sum"],
                                      state.epoch_metrics["count"]))
    if count and not np.isfinite(loss_sum):
      problems.append("train loss")
  if not bool(_all_finite(state.params)):
    problems.append("parameters")
  if state.batch_stats and not bool(_all_finite(state.batch_stats)):
    problems.append("BatchNorm statistics")
  if not problems:
    return
  step = int(state.step)
  epoch = max(step - 1, 0) // steps_per_epoch + 1
  last = checkpointer.latest_step()
  last_good = (f"step {last} in {checkpointer.directory}" if last is not None
               else "none saved")
  skip = "" if skip_nonfinite_steps else ", or set config.skip_nonfinite_steps"
  raise DivergedError(
      f"Training diverged: non-finite {' and '.join(problems)} at step {step} "
      f"(epoch {epoch}/{num_epochs}); last good checkpoint: "
      f"{last_good}. To go on from it, lower learning_rate or rho and pass "
      f"--allow_config_change with the changed keys{skip}.")


def skipped_steps(opt_state) -> int:
  """Steps ``optax.apply_if_finite`` has skipped so far in this run."""
  counts = optax.tree.get(opt_state, "total_notfinite")
  return int(jax.device_get(counts))
