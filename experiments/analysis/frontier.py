"""Accuracy against cost, and the arms no other arm beats at a lower cost.

The frontier figure of a regime (``evidence.make_figures``) places each arm of
``sweep_arms.FRONTIER_ARMS`` (SGD and SGD for twice the epochs, SAM, SSAM-F
50 %, the tensor-wise arms and the cheaper ascents) at the cost of its whole training run, in units
of SGD's (``sweep_readouts.training_cost``), and at its mean early-stopped
test accuracy over seeds with the 95 % interval (``error_bars``). SGD appears
twice: early-stopped and at its final epoch, the baseline a practitioner who
does not early-stop gets.

The Pareto front joins the points that no other point beats on both axes:
none costs at most as much with at least the accuracy, one of them strictly.
It is a front of the means; whether two points on it differ is the paired
intervals' question (``experiments.statistics_report``). Only arms trained at
every seed of the regime enter the front, so that a single lucky seed cannot
set it; the others are drawn hollow.
"""

from experiments import sweep_arms
from experiments.analysis import error_bars
from experiments.analysis import output

import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)

METRIC = "early_stopped_test_accuracy"
SGD_FINAL = "sgd (final epoch)"
# One colour per optimizer family (an arm's optimizer), as in Fig. 3; one
# marker per kind of saving.
FAMILY_COLORS = {"ssam-f": "tab:blue", "ssam-d": "tab:orange", "ssam-random": "tab:green",
                 "sam": "black", "sgd": "dimgray"}
# The edge of an arm at its own rho: unlike every family's colour, so that it
# shows on all of them.
OWN_RHO_EDGE = "gold"
SPARSITY_MARKERS = {0.5: "o", 0.9: "s", 0.99: "^"}
VARIANT_MARKERS = {"every k": ">", "random ascent": "<", "looksam": "v",
                   "msam": "*", "sub-batch ascent": "d"}
FAMILY_OF_VARIANT = {variant: family for family, variants in sweep_arms.VARIANT_FAMILIES.items()
                     for variant in variants}


def style(arm: sweep_arms.Arm) -> dict:
  """Colour by family; marker by the variant's family, tensor-wise ("P",
  "X" when confined to a leaf group), a doubled value ("D") or sparsity; a
  thick gold edge when the arm trains at its own rho, so that it stands
  apart from its twin at SAM's rho."""
  if arm.variant is not None:
    marker = VARIANT_MARKERS[FAMILY_OF_VARIANT[arm.variant]]
  elif arm.tensorwise:
    marker = "X" if arm.leaves else "P"
  elif arm.doubled:
    marker = "D"
  else:
    marker = SPARSITY_MARKERS.get(arm.sparsity, "o")
  own_rho = ({"markeredgecolor": OWN_RHO_EDGE, "markeredgewidth": 1.8}
             if arm.rho_grid is not None else {})
  return {"color": FAMILY_COLORS.get(arm.optimizer, "tab:purple"), "marker": marker,
          **own_rho}


def points(arms: dict, names: dict, costs: dict) -> list[dict]:
  """The figure's points, from the arms' statistics.

  Args:
    arms: ``statistics_report.arm_statistics`` by arm label.
    names: display labels by arm label.
    costs: each arm's training cost (x SGD's) by label; arms without one are
      left out.

  Returns:
    ``{"arm", "display", "metric", "cost", "mean", "std", "n"}`` per point:
    the arms of ``FRONTIER_ARMS`` with early-stopped statistics and a cost,
    and SGD's final epoch.
  """
  out = []
  for arm in sweep_arms.FRONTIER_ARMS:
    entry = arms.get(arm.label)
    if not entry or METRIC not in entry or arm.label not in costs:
      continue
    out.append({"arm": arm.label, "display": names.get(arm.label, arm.label),
                "metric": METRIC, "cost": costs[arm.label], **entry[METRIC]})
    if arm == sweep_arms.SGD:
      out.append({"arm": arm.label, "display": SGD_FINAL, "metric": "test_accuracy",
                  "cost": costs[arm.label], **entry["test_accuracy"]})
  return out


def pareto_front(candidates: list[dict], min_seeds: int) -> list[dict]:
  """The early-stopped points of ``candidates`` with ``n >= min_seeds`` that
  no other such point dominates (cost no higher and mean no lower, one
  strictly), by cost. SGD's final epoch is drawn, not on the front."""
  eligible = [p for p in candidates if p["n"] >= min_seeds and p["metric"] == METRIC]

  def dominated(p):
    return any(q["cost"] <= p["cost"] and q["mean"] >= p["mean"]
               and (q["cost"] < p["cost"] or q["mean"] > p["mean"]) for q in eligible)

  return sorted((p for p in eligible if not dominated(p)), key=lambda p: p["cost"])


def plot(candidates: list[dict], front: list[dict], min_seeds: int, path: str,
         title: str) -> str:
  """The points with their 95 % intervals, hollow when trained on fewer than
  ``min_seeds`` seeds, and the front as a dashed line; a legend names them."""
  figure, axis = plt.subplots(figsize=(10, 5.2))
  for point in candidates:
    arm_style = style(sweep_arms.arm(point["arm"]))
    if point["display"] == SGD_FINAL:
      arm_style["color"] = "silver"
    fill = {} if point["n"] >= min_seeds else {"markerfacecolor": "none"}
    axis.errorbar(point["cost"], point["mean"],
                  yerr=error_bars.half_width(point["std"], point["n"]),
                  capsize=3, linestyle="none", markersize=8, alpha=0.85,
                  label=f"{point['display']} (n = {point['n']})", **arm_style, **fill)
  if front:
    # A step: between two front points, the cheaper one is the best available.
    axis.plot([p["cost"] for p in front], [p["mean"] for p in front], "--",
              drawstyle="steps-post", color="crimson", linewidth=1.2, zorder=0,
              label=f"Pareto front of the means (n >= {min_seeds})")
  axis.set_xlabel("training cost (x SGD's, measured on the machine of the runs)")
  axis.set_ylabel("early-stopped test accuracy (%)")
  axis.set_title(title)
  axis.grid(alpha=0.3)
  axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7,
              title="arm (colour: optimizer family; hollow: fewer seeds; "
              "gold edge: its own rho)",
              title_fontsize=8)
  error_bars.add_caption(figure, error_bars.CAPTION + " SGD's final-epoch accuracy "
                         "in grey; every other point is early-stopped.")
  return output.save_figure(figure, path)
