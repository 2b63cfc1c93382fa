"""Reading training runs (``metrics.jsonl``) and grouping them over seeds.

A run is named on the command line as ``[OPTIMIZER[@SPARSITY]=]PATH``, where
``PATH`` is a workdir holding ``metrics.jsonl`` (or the file itself). Without
a label, the optimizer, sparsity and seed come from ``run.json`` or
``config.json`` next to the metrics when present (keys ``optimizer``,
``sparsity``, ``seed``); otherwise the optimizer is the directory name and the
sparsity is ``1 - mask_density`` of the last record when it has one (the
training program logs ``mask_density`` for SSAM runs). Runs with the same
optimizer and sparsity are one group; their seeds are averaged.
"""

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Optional

import numpy as np

from experiments import optimizer_table


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: its group and its per-epoch records."""

  optimizer: str
  sparsity: Optional[float]
  path: str
  records: tuple  # of dicts, one per epoch, sorted by epoch


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` file (or of the one in ``path``)."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.jsonl")
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  if not records:
    raise ValueError(f"{path} has no records.")
  return sorted(records, key=lambda r: r.get("epoch", 0))


def _metadata(directory: str) -> dict:
  for name in ("run.json", "config.json"):
    candidate = os.path.join(directory, name)
    if os.path.exists(candidate):
      with open(candidate) as f:
        return json.load(f)
  return {}


def parse_run(spec: str) -> Run:
  """A :class:`Run` from ``[OPTIMIZER[@SPARSITY]=]PATH`` (see module docstring)."""
  label, sep, path = spec.partition("=")
  if not sep:
    label, path = "", spec
  records = tuple(read_metrics(path))
  directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
  meta = _metadata(directory)
  optimizer, _, sparsity = label.partition("@")
  optimizer = optimizer or meta.get("optimizer") or os.path.basename(
      os.path.normpath(directory))
  if sparsity:
    sparsity = float(sparsity)
  elif meta.get("sparsity") is not None:
    sparsity = float(meta["sparsity"])
  elif "mask_density" in records[-1]:
    sparsity = round(1.0 - float(records[-1]["mask_density"]), 4)
  else:
    sparsity = None
  if optimizer in optimizer_table.OPTIMIZERS and not optimizer_table.get(
      optimizer).has_mask:
    sparsity = None
  return Run(optimizer, sparsity, path, records)


def group_name(optimizer: str, sparsity: Optional[float]) -> str:
  return optimizer if sparsity is None else f"{optimizer} ({sparsity:.0%})"


def group_runs(runs: Sequence[Run]) -> dict[tuple, list[Run]]:
  """Runs keyed by ``(optimizer, sparsity)``, in first-seen order."""
  groups: dict[tuple, list[Run]] = {}
  for run in runs:
    groups.setdefault((run.optimizer, run.sparsity), []).append(run)
  return groups


def epoch_statistics(runs: Sequence[Run], key: str) -> dict:
  """Mean and std over runs of ``key`` per epoch (epochs all runs have).

  Returns:
    ``{"epoch": [...], "mean": [...], "std": [...], "num_runs": n}``; the
    std is the sample std over runs (ddof 1; 0 for a single run), as in the
    README's tables.
  """
  per_run = [{r["epoch"]: r[key] for r in run.records if key in r}
             for run in runs]
  epochs = sorted(set.intersection(*(set(p) for p in per_run)))
  values = np.array([[p[e] for e in epochs] for p in per_run], np.float64)
  return {"epoch": epochs, "mean": values.mean(axis=0) if epochs else [],
          "std": sample_std(values) if epochs else [], "num_runs": len(runs)}


def final_statistics(runs: Sequence[Run], key: str) -> dict:
  """Mean and sample std over runs of ``key`` in each run's last record."""
  values = np.array([run.records[-1][key] for run in runs], np.float64)
  return {"mean": float(values.mean()), "std": float(sample_std(values)),
          "values": values, "num_runs": len(runs)}


def sample_std(values: np.ndarray) -> np.ndarray:
  """Std over axis 0 with ddof 1 (seeds are a sample); 0 for one run."""
  return values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])
