"""File output of the figure commands: JSON of the numbers, PNG figures.

Importing this module selects Matplotlib's non-interactive Agg backend, so
figure modules import it before ``matplotlib.pyplot``.
"""

import json
import os

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position


def to_jsonable(value):
  """NumPy/JAX arrays and scalars to lists and floats, recursively."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (np.ndarray, jax.Array, np.generic)):
    array = np.asarray(value)
    return array.tolist() if array.ndim else array.item()
  return value


def write_json(path: str, data: dict) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(to_jsonable(data), f, indent=1, allow_nan=True)
    f.write("\n")
  return path


def title_lines(*lines: str) -> str:
  """A figure title of the non-empty ``lines`` (a regime's name, then the
  figure's own)."""
  return "\n".join(line for line in lines if line)


def save_figure(figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(figure)
  return path
