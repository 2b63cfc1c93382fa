"""What a sweep record carries beside a run's final metrics.

:func:`derived_fields` reads them from the run's workdir and per-epoch
metrics: the early-stopped test accuracy (``experiments.early_stopping``),
the effective radius ``||eps||`` averaged over training
(``experiments.radius``; every epoch has the same number of steps, so the
mean of the epochs' means is the mean over steps) and the run's provenance
(``experiments.provenance``).
"""

import pathlib
import statistics

from experiments import early_stopping
from experiments import provenance


def mean_radius(epochs: list[dict]) -> dict:
  """``{"effective_radius": mean over epochs}``, or ``{}`` for a run that
  did not record it."""
  if not epochs or not all("effective_radius" in e for e in epochs):
    return {}
  return {"effective_radius": statistics.fmean(e["effective_radius"] for e in epochs)}


def derived_fields(run_dir: pathlib.Path, epochs: list[dict]) -> dict:
  """The record's fields computed from ``run_dir`` and its ``epochs``."""
  return {**early_stopping.early_stopped(epochs), **mean_radius(epochs),
          "provenance": provenance.read(run_dir)}
