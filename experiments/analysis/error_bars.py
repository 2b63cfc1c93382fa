"""The error bars of the figures: a 95 % confidence interval of a mean over seeds.

Every figure that draws a mean over seeds draws ``mean ± half_width(std,
n)``, the interval of Student's t with ``n - 1`` degrees of freedom (the
distribution ``experiments.statistics_report`` uses for its intervals),
writes ``CAPTION`` under the plot and ``n`` in the legend. A single seed has
no interval: its bar has no width, and its legend entry says ``n = 1``.
"""

import math

from scipy import stats

CONFIDENCE = 0.95
CAPTION = ("Error bars and bands: 95 % confidence interval of the mean over "
           "seeds (Student's t, n - 1 degrees of freedom); n in the legend.")


def half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
  """``t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)``; 0 for ``n < 2``.

  Args:
    std: the sample standard deviation over seeds (ddof 1).
    n: the number of seeds.
    confidence: of the two-sided interval.

  Returns:
    The half-width of the interval around the mean.
  """
  if n < 2:
    return 0.0
  return float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)


def seeds(ns) -> str:
  """``"n = 3"``, or ``"n = 3-5"`` when the points of a series differ."""
  ns = list(ns)
  low, high = min(ns), max(ns)
  return f"n = {low}" if low == high else f"n = {low}-{high}"


def add_caption(figure, text: str = CAPTION) -> None:
  """``text`` under the axes (kept by ``bbox_inches="tight"``)."""
  figure.text(0.5, -0.01, text, ha="center", va="top", fontsize=7, wrap=True)
