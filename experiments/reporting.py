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
