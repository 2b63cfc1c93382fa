"""Per-epoch metrics to ``workdir/metrics.jsonl`` and TensorBoard (tensorboardX)."""

import json
import os
import sys

import tensorboardX
import tqdm

from experiments import distributed


def log(message: str) -> None:
  """Prints a line (process 0 only) without breaking an active tqdm bar."""
  if not distributed.is_main_process():
    return
  tqdm.tqdm.write(message, file=sys.stdout)
  sys.stdout.flush()


def close_progress_bars() -> None:
  """Closes the bars a run that stops with an exception leaves open, so that
  its last message starts on a line of its own."""
  for bar in list(getattr(tqdm.tqdm, "_instances", ())):
    bar.close()


def warn(message: str) -> None:
  """Prints ``Warning: message`` to stderr (process 0 only)."""
  if not distributed.is_main_process():
    return
  tqdm.tqdm.write(f"Warning: {message}", file=sys.stderr)
  sys.stderr.flush()


def epoch_summary(metrics: dict, num_epochs: int) -> str:
  """One line per epoch, e.g. ``epoch 3/10  train loss 0.4123 acc 85.12%
  validation acc 84.90%  test loss 0.4410 acc 84.31%  mask density 0.500
  12.3 s``."""
  parts = [f"epoch {metrics['epoch']}/{num_epochs}",
           f"train loss {metrics['train_loss']:.4f} "
           f"acc {100 * metrics['train_accuracy']:.2f}%"]
  if "validation_accuracy" in metrics:
    parts.append(f"validation acc {100 * metrics['validation_accuracy']:.2f}%")
  if "test_accuracy" in metrics:
    parts.append(f"test loss {metrics['test_loss']:.4f} "
                 f"acc {100 * metrics['test_accuracy']:.2f}%")
  if "mask_density" in metrics:
    parts.append(f"mask density {metrics['mask_density']:.3f}")
  if metrics.get("skipped_steps"):
    parts.append(f"{metrics['skipped_steps']} non-finite steps skipped so far")
  parts.append(f"{metrics['epoch_seconds']:.1f} s")
  return "  ".join(parts)


def where_outputs_are(workdir: str, latest_checkpoint) -> str:
  """The lines of the final summary that say where the run's outputs are."""
  checkpoints = os.path.join(workdir, "checkpoints")
  return "\n".join([
      f"  metrics      {os.path.join(workdir, 'metrics.jsonl')}",
      f"  TensorBoard  tensorboard --logdir {os.path.join(workdir, 'tensorboard')}",
      f"  checkpoints  {checkpoints} (latest: step {latest_checkpoint})"])


class MetricWriter:
  """Appends one JSON record per call and mirrors the numbers to TensorBoard.

  On resume, records written after the restored step (by a run killed after
  logging but before checkpointing) are dropped so the file has no duplicates.
  """

  def __init__(self, workdir: str, resumed_step: int = 0):
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._drop_records_after(resumed_step)
    self._tensorboard = tensorboardX.SummaryWriter(
        os.path.join(workdir, "tensorboard"))

  def _drop_records_after(self, step: int) -> None:
    if not os.path.exists(self.jsonl_path):
      return
    with open(self.jsonl_path) as f:
      kept = [line for line in f if json.loads(line)["step"] <= step]
    with open(self.jsonl_path, "w") as f:
      f.writelines(kept)

  def write(self, step: int, metrics: dict) -> None:
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps({"step": step, **metrics}) + "\n")
    for name, value in metrics.items():
      if isinstance(value, (int, float)):
        self._tensorboard.add_scalar(name, value, step)
    self._tensorboard.flush()

  def close(self) -> None:
    self._tensorboard.close()


class NullWriter:
  """What processes other than 0 write metrics to: nothing."""

  def write(self, step: int, metrics: dict) -> None:
    del step, metrics

  def close(self) -> None:
    pass
