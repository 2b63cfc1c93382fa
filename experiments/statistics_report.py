"""Mean ± std over seeds and standard errors of differences between arms.

A difference between two arms is reported with the standard error of the
difference of their means, ``sqrt(s_a² / n_a + s_b² / n_b)`` (sample stds,
not paired by seed), once both arms have at least two seeds, and called a
tie when it is within ``TIE_SE`` of them.
"""

import math
import statistics

METRICS = ("test_accuracy", "validation_accuracy", "train_accuracy")
TIE_SE = 2.0
REFERENCES = ("sam", "sgd")


def describe(values: list[float]) -> dict:
  """``{"mean", "std", "n"}`` of ``values`` (std: sample, ddof 1; 0 if n < 2)."""
  return {"mean": statistics.fmean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "n": len(values)}


def difference(a: dict, b: dict) -> dict:
  """``a - b`` of two ``describe`` results, its standard error and verdict."""
  delta = a["mean"] - b["mean"]
  se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
  if se == 0:
    verdict = "tie" if delta == 0 else "undetermined (zero spread)"
  else:
    verdict = ("tie" if abs(delta) < TIE_SE * se
               else "better" if delta > 0 else "worse")
  return {"mean": delta, "se": se,
          "se_units": delta / se if se else None, "verdict": verdict}


def arm_statistics(rows_by_arm: dict[str, list[dict]]) -> dict:
  """Per arm: metrics in percent over seeds, rho, and differences to SAM and
  SGD in test accuracy (arms without rows are left out)."""
  arms = {}
  for arm, rows in rows_by_arm.items():
    if not rows:
      continue
    entry = {metric: describe([100 * r[metric] for r in rows])
             for metric in METRICS if all(metric in r for r in rows)}
    entry["seeds"] = [r["seed"] for r in rows]
    entry["rho"] = rows[0]["overrides"].get("rho")
    entry["mean_epoch_seconds"] = statistics.fmean(
        r["mean_epoch_seconds"] for r in rows)
    arms[arm] = entry
  for arm, entry in arms.items():
    for reference in REFERENCES:
      # A single seed has no spread: no standard error until both arms have two.
      if (reference in arms and arm != reference
          and min(arms[reference]["test_accuracy"]["n"], entry["test_accuracy"]["n"]) > 1):
        entry[f"vs_{reference}"] = difference(entry["test_accuracy"],
                                              arms[reference]["test_accuracy"])
  return arms


def _cell(stat: dict | None) -> str:
  if stat is None:
    return ""
  spread = f" ± {stat['std']:.2f}" if stat["n"] > 1 else ""
  return f"{stat['mean']:.2f}{spread}"


def _versus(entry: dict, reference: str) -> str:
  diff = entry.get(f"vs_{reference}")
  if diff is None:
    return ""
  if diff["se_units"] is None:
    return f"{diff['mean']:+.2f} ({diff['verdict']})"
  return f"{diff['mean']:+.2f} ({diff['se_units']:+.1f} SE, {diff['verdict']})"


def markdown_table(rows_by_arm: dict[str, list[dict]]) -> str:
  """Accuracies (%) per arm, with the SAM and SGD gaps; columns no run
  recorded are left out."""
  arms = arm_statistics(rows_by_arm)
  metrics = [m for m in METRICS if any(m in e for e in arms.values())]
  names = [m.replace("_accuracy", "") + " (%)" for m in metrics]
  lines = ["| arm | seeds | " + " | ".join(names) + " | vs SAM | vs SGD | s / epoch |",
           "| --- | ---: |" + " ---: |" * len(metrics) + " ---: | ---: | ---: |"]
  for arm, entry in arms.items():
    cells = " | ".join(_cell(entry.get(m)) for m in metrics)
    lines.append(
        f"| {arm} | {entry['test_accuracy']['n']} | {cells} | "
        f"{_versus(entry, 'sam')} | {_versus(entry, 'sgd')} | "
        f"{entry['mean_epoch_seconds']:.1f} |")
  return "\n".join(lines)
