"""Mean ± std over seeds, and paired differences between arms.

Paired (the ``paired`` key, :func:`paired_difference`): the two arms are
restricted to the seeds both ran, and the per-seed differences ``a_s - b_s``
give a mean ``d``, a sample std ``s_d`` and, with ``n`` shared seeds, the
95 % confidence interval ``d ± t_{0.975, n-1} s_d / sqrt(n)`` of Student's t
with ``n - 1`` degrees of freedom. The verdict is "better" or "worse" when
the interval excludes 0 and "tie" otherwise; with fewer than two shared
seeds there is no interval and no verdict (``None``). The two-sided p-value
of the same paired t-test is kept for the multiple-comparison correction.

Multiple comparisons (:func:`holm`): Holm's step-down procedure, reported as
adjusted p-values (not adjusted intervals). The family of a paired metric is
every paired comparison of the summary that has a verdict (each arm against
SAM and against SGD; SAM against SGD counted once), and each comparison
carries the family's size and its adjusted p-value and verdict under
``"holm"``. A subset of claims (those a page states) is corrected by calling
:func:`holm` on its p-values alone.
"""

import math
import statistics

from scipy import stats as scipy_stats

from experiments import early_stopping

METRICS = ("test_accuracy", "validation_accuracy", "train_accuracy",
           "early_stopped_test_accuracy")
PAIRED_METRICS = ("test_accuracy", "early_stopped_test_accuracy")
CONFIDENCE = 0.95
REFERENCES = ("sam", "sgd")


def describe(values: list[float]) -> dict:
  """``{"mean", "std", "n"}`` of ``values`` (std: sample, ddof 1; 0 if n < 2)."""
  return {"mean": statistics.fmean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "n": len(values)}


def paired_difference(a: dict[int, float], b: dict[int, float],
                      confidence: float = CONFIDENCE) -> dict:
  """``a - b`` on the seeds both have, with its t interval and verdict.

  Args:
    a: one arm's values by seed.
    b: the other arm's values by seed (same units).
    confidence: of the two-sided interval.

  Returns:
    ``{"seeds", "n", "mean", "sd", "se", "df", "t", "p", "ci", "verdict"}``:
    the shared seeds, the mean paired difference, the sample std of the
    differences, its standard error, the degrees of freedom ``n - 1``, the
    t statistic, the two-sided p-value, the interval ``[low, high]`` and
    "better" (``low > 0``), "worse" (``high < 0``) or "tie". Differences
    that are all equal have a zero-width interval (``t`` None; ``p`` 0, or
    1 if they are all 0). With fewer than two shared seeds only ``seeds``,
    ``n``, ``mean`` (None without seeds) and ``verdict`` None.
  """
  seeds = sorted(set(a) & set(b))
  differences = [a[seed] - b[seed] for seed in seeds]
  n = len(differences)
  if n < 2:
    return {"seeds": seeds, "n": n,
            "mean": differences[0] if differences else None, "verdict": None}
  mean = statistics.fmean(differences)
  sd = statistics.stdev(differences)
  se = sd / math.sqrt(n)
  df = n - 1
  if se > 0:
    t = mean / se
    p = 2 * float(scipy_stats.t.sf(abs(t), df))
    half_width = float(scipy_stats.t.ppf((1 + confidence) / 2, df)) * se
  else:
    t, p, half_width = None, (1.0 if mean == 0 else 0.0), 0.0
  low, high = mean - half_width, mean + half_width
  verdict = "better" if low > 0 else "worse" if high < 0 else "tie"
  return {"seeds": seeds, "n": n, "mean": mean, "sd": sd, "se": se, "df": df,
          "t": t, "p": p, "ci": [low, high], "verdict": verdict}


def holm(p_values: dict) -> dict:
  """Holm's step-down adjusted p-values of a family of comparisons.

  With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the
  adjusted ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) p_(j))``. Rejecting
  the comparisons whose adjusted p-value is below ``alpha`` is Holm's test
  at family-wise error rate ``alpha``.

  Args:
    p_values: ``{name: p}`` of the family.

  Returns:
    ``{name: adjusted p}``, in the order of ``p_values``.
  """
  order = sorted(p_values, key=p_values.get)
  m, running, adjusted = len(order), 0.0, {}
  for rank, name in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p_values[name]))
    adjusted[name] = running
  return {name: adjusted[name] for name in p_values}


def _add_holm(comparisons: list[tuple[tuple[str, str], dict]],
              alpha: float = 1 - CONFIDENCE) -> None:
  """Adds ``"holm": {"comparisons", "p", "verdict"}`` to each comparison that
  has a verdict; ``(a, b)`` and ``(b, a)`` are one member of the family."""
  family = {frozenset(pair): diff["p"] for pair, diff in comparisons
            if diff["verdict"] is not None}
  adjusted = holm(family)
  for pair, diff in comparisons:
    if diff["verdict"] is None:
      continue
    p = adjusted[frozenset(pair)]
    diff["holm"] = {"comparisons": len(family), "p": p,
                    "verdict": diff["verdict"] if p < alpha else "tie"}


def _paired(arms: dict, by_seed: dict[str, dict[str, dict[int, float]]],
            contrasts: dict[str, tuple[str, ...]]) -> None:
  """Adds ``entry["paired"][metric]["vs_<reference>"]`` to every arm: SAM,
  SGD and the arm's ``contrasts``."""
  for metric in PAIRED_METRICS:
    comparisons = []
    for arm, entry in arms.items():
      for reference in REFERENCES + tuple(contrasts.get(arm, ())):
        if (reference == arm or reference not in arms
            or metric not in by_seed[arm] or metric not in by_seed[reference]):
          continue
        diff = paired_difference(by_seed[arm][metric], by_seed[reference][metric])
        entry.setdefault("paired", {}).setdefault(metric, {})[f"vs_{reference}"] = diff
        comparisons.append(((arm, reference), diff))
    _add_holm(comparisons)


def arm_statistics(rows_by_arm: dict[str, list[dict]],
                   contrasts: dict[str, tuple[str, ...]] | None = None) -> dict:
  """Per arm: metrics in percent over seeds (the early-stopped test accuracy
  with its epochs, see ``experiments.early_stopping``), the mean effective
  radius where recorded, rho, and paired differences (``paired``) to SAM,
  to SGD and to the arms ``contrasts[arm]`` names; arms without rows are
  left out. Holm's correction runs over every paired comparison of a
  metric."""
  arms, by_seed = {}, {}
  for arm, rows in rows_by_arm.items():
    if not rows:
      continue
    rows = [early_stopping.with_early_stopped(r) for r in rows]
    entry = {metric: describe([100 * r[metric] for r in rows])
             for metric in METRICS if all(metric in r for r in rows)}
    entry["seeds"] = [r["seed"] for r in rows]
    if "early_stopped_test_accuracy" in entry:
      entry["early_stopped_epochs"] = [r["early_stopped_epoch"] for r in rows]
      entry["early_stopped_approximate_seeds"] = [
          r["seed"] for r in rows if r["early_stopped_approximate"]]
    if all("effective_radius" in r for r in rows):
      entry["effective_radius"] = describe([r["effective_radius"] for r in rows])
    entry["rho"] = rows[0]["overrides"].get("rho")
    entry["mean_epoch_seconds"] = statistics.fmean(
        r["mean_epoch_seconds"] for r in rows)
    arms[arm] = entry
    by_seed[arm] = {metric: {r["seed"]: 100 * r[metric] for r in rows}
                    for metric in PAIRED_METRICS if all(metric in r for r in rows)}
  _paired(arms, by_seed, contrasts or {})
  return arms


def _cell(stat: dict | None) -> str:
  if stat is None:
    return ""
  spread = f" ± {stat['std']:.2f}" if stat["n"] > 1 else ""
  return f"{stat['mean']:.2f}{spread}"


def _versus(entry: dict, reference: str, metric: str) -> str:
  diff = entry.get("paired", {}).get(metric, {}).get(f"vs_{reference}")
  if diff is None or diff["verdict"] is None:
    return ""
  low, high = diff["ci"]
  return f"{diff['mean']:+.2f} [{low:+.2f}, {high:+.2f}], n={diff['n']}, {diff['verdict']}"


def markdown_table(rows_by_arm: dict[str, list[dict]]) -> str:
  """Accuracies (%) per arm, with the paired differences to SAM and SGD in
  early-stopped test accuracy (final where no run early-stops); columns no
  run recorded are left out. The last column is the runs' mean wall time
  per epoch as they ran: it includes compilation, resumes and other runs
  sharing the machine, so it is not a cost measure (``benchmarks/arm_cost.py``
  is)."""
  arms = arm_statistics(rows_by_arm)
  metrics = [m for m in METRICS if any(m in e for e in arms.values())]
  compared = PAIRED_METRICS[1] if PAIRED_METRICS[1] in metrics else PAIRED_METRICS[0]
  names = [m.replace("_accuracy", "").replace("_", " ") + " (%)" for m in metrics]
  which = {"test_accuracy": "final", "early_stopped_test_accuracy": "early-stopped"}[compared]
  lines = ["| arm | seeds | " + " | ".join(names) + f" | vs SAM ({which}) | "
           f"vs SGD ({which}) | wall s / epoch (as run) |",
           "| --- | ---: |" + " ---: |" * len(metrics) + " --- | --- | ---: |"]
  for arm, entry in arms.items():
    cells = " | ".join(_cell(entry.get(m)) for m in metrics)
    lines.append(
        f"| {arm} | {entry['test_accuracy']['n']} | {cells} | "
        f"{_versus(entry, 'sam', compared)} | {_versus(entry, 'sgd', compared)} | "
        f"{entry['mean_epoch_seconds']:.1f} |")
  return "\n".join(lines)
