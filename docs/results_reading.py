"""The results' reading: numbers turned into sentences, each with its SE.

Used by generate_results.py for docs/results.md and the README. Every verdict
(better, worse, tie) comes from ``experiments.statistics_report``'s 2-SE rule.
"""

from experiments import statistics_report
from experiments import sweep_arms

SPARSITIES = ("0.5", "0.9", "0.99")
FASHION_MNIST_CLASSES = 10


def stat(entry: dict, metric: str) -> str:
  """``mean ± std`` of a summary metric, or the mean alone for one seed."""
  value = entry.get(metric)
  if not value:
    return ""
  return (f"{value['mean']:.2f} ± {value['std']:.2f}" if value["n"] > 1
          else f"{value['mean']:.2f}")


def versus(entry: dict, reference: str) -> str:
  """An arm's gap to ``reference`` (``sam`` or ``sgd``), as the summary records it."""
  diff = entry.get(f"vs_{reference}")
  return format_difference(diff) if diff else ""


def format_difference(diff: dict) -> str:
  """``+0.42, +9.0 SE, better`` from a ``statistics_report.difference``."""
  units = "" if diff["se_units"] is None else f", {diff['se_units']:+.1f} SE"
  return f"{diff['mean']:+.2f}{units}, {diff['verdict']}"


MASK_NAMES = {"ssam-f": "SSAM-F", "ssam-d": "SSAM-D", "ssam-random": "the random mask"}


GAIN_KEPT_RULE = (f"An arm keeps SAM's gain when it beats SGD and does not trail SAM "
                  f"(each by at least {statistics_report.TIE_SE:g} SE), and keeps part of "
                  "it when it beats SGD but trails SAM.")


def _gain_kept(entry: dict) -> str | None:
  """How much of SAM's gain over SGD an arm keeps, from its two verdicts."""
  if entry["test_accuracy"]["n"] < 2 or "vs_sam" not in entry or "vs_sgd" not in entry:
    return None
  below_sam = entry["vs_sam"]["verdict"] == "worse"
  above_sgd = entry["vs_sgd"]["verdict"] == "better"
  if not below_sam:
    return "keeps SAM's gain" if above_sgd else "cannot be told from SAM or SGD"
  return "keeps part of SAM's gain" if above_sgd else "loses SAM's gain"


def _and(items: list[str]) -> str:
  return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def sparsity_verdicts(summary: dict) -> str:
  """Per mask, at which sparsities it keeps SAM's gain over SGD."""
  parts = []
  for mask, name in MASK_NAMES.items():
    levels = {}
    for sparsity in SPARSITIES:
      entry = summary["arms"].get(f"{mask} s={sparsity}")
      if entry and (kept := _gain_kept(entry)):
        levels.setdefault(kept, []).append(f"{float(sparsity):.0%}")
    if levels:
      parts.append(f"{name} " + ", ".join(
          f"{kept} at {_and(at)}" for kept, at in levels.items()))
  return "; ".join(parts)


# The arms that are controls rather than sparsity levels, and what each asks.
CONTROL_ARMS = {
    "sgd 2x epochs": "SGD given SAM's gradient budget (2x epochs)",
    "sam 2x weight decay": "SAM with the paper's doubled weight decay (ablation)",
    "ssam-f tensorwise s=0.9": "Tensor-wise SSAM-F with the fast path",
    "ssam-f tensorwise s=0.9 last block":
        "Tensor-wise SSAM-F with the fast path, its choice confined to the last block",
}


def _control(arm: str, perturbs: dict) -> str:
  """What a control arm asks, with what a tensor-wise one perturbs, measured."""
  entry = sweep_arms.arm(arm)
  if not entry.tensorwise:
    return CONTROL_ARMS[arm]
  scope = f"the {entry.leaves}'s" if entry.leaves else "all"
  return (f"{CONTROL_ARMS[arm]} (budget: {100 * (1 - entry.sparsity):.3g} % of {scope} "
          f"parameters; it perturbs {perturbs[arm]} of the network)")


def hessian_reading(models: dict) -> str:
  """What Fig. 5's numbers order: the arms by lambda_1, and whether the ratio
  lambda_1/lambda_k orders them the same way."""
  by_top = sorted(models, key=lambda name: models[name]["top_eigenvalues"][0])
  by_ratio = sorted(models, key=lambda name: models[name]["lambda1_over_lambdak"])
  k = next(iter(models.values()))["k"]
  text = ("Ordered by lambda_1, flattest first: " + ", ".join(
      f"{name} {models[name]['top_eigenvalues'][0]:.1f}" for name in by_top) + ".")
  if by_ratio == by_top:
    return text + f" The ratio lambda_1/lambda_{k} orders them the same way here."
  return (text + f" The ratio lambda_1/lambda_{k} orders them differently ("
          + ", ".join(f"{name} {models[name]['lambda1_over_lambdak']:.2f}"
                      for name in by_ratio)
          + "): " + (f"{by_ratio[0]} has both the smallest ratio and the largest lambda_1"
                     if by_ratio[0] == by_top[-1] else
                     f"{by_ratio[0]} has the smallest ratio, {by_top[0]} the smallest "
                     "lambda_1")
          + ", so the ratio does not rank the arms by flatness; lambda_1 does.")


def display_names(arms, perturbs: dict) -> dict[str, str]:
  """Each arm's display label (``sweep_arms.Arm.display_label``); ``perturbs``:
  what each tensor-wise arm perturbs (``tensorwise_masks.perturbs``)."""
  return {arm: sweep_arms.arm(arm).display_label(perturbs.get(arm)) for arm in arms}


def reading(summary: dict, costs: dict | None = None,
            perturbs: dict | None = None) -> list[str]:
  """Sentences computed from the numbers: no claim without its SE.
  ``perturbs``: what each tensor-wise arm perturbs, measured."""
  arms, out = summary["arms"], []
  perturbs = perturbs or {}
  names = display_names(arms, perturbs)
  single = [names[arm] for arm, entry in arms.items() if entry["test_accuracy"]["n"] < 2]
  if single:
    out.append(f"{', '.join(single)}: one seed so far, so no standard error and no "
               "comparison with these arms yet.")
  noise = summary["settings"]["label_noise"]
  if noise:
    # A relabelled example keeps its true class with probability 1/classes.
    clean = 100 * (1 - noise * (1 - 1 / FASHION_MNIST_CLASSES))
    out.append(f"Memorisation: a model that predicts every true class scores {clean:.0f} % "
               "on the noisy training labels; more means it fits wrong labels. Train "
               "accuracy: " + ", ".join(f"{names[arm]} {entry['train_accuracy']['mean']:.1f}"
                                        for arm, entry in arms.items()) + ".")
  sam, sgd = arms.get("sam"), arms.get("sgd")
  if sam and sgd and "vs_sgd" in sam:
    gain = sam["vs_sgd"]
    small = (gain["se_units"] is not None and 0 < gain["se_units"] < 2 * statistics_report.TIE_SE)
    out.append(f"SAM vs SGD: {versus(sam, 'sgd')}." + (
        f" The gain is under {2 * statistics_report.TIE_SE:g} SE, so an arm halfway "
        "between SAM and SGD would tie with both: in this regime a tie with SAM is weak "
        "evidence that an arm keeps SAM's gain." if small else ""))
  if verdicts := sparsity_verdicts(summary):
    out.append(f"{GAIN_KEPT_RULE} {verdicts[0].upper()}{verdicts[1:]}.")
  for sparsity in SPARSITIES:
    for mask in ("ssam-f", "ssam-d"):
      entry = arms.get(f"{mask} s={sparsity}")
      gaps = [f"vs {ref.upper()} {versus(entry, ref)}" for ref in ("sam", "sgd")
              if entry and f"vs_{ref}" in entry]
      if gaps:
        out.append(f"{mask} at {float(sparsity):.0%} sparsity: {'; '.join(gaps)}.")
      control = arms.get(f"ssam-random s={sparsity}")
      if entry and control and entry["test_accuracy"]["n"] > 1 and control["test_accuracy"]["n"] > 1:
        diff = statistics_report.difference(entry["test_accuracy"], control["test_accuracy"])
        out.append(f"{mask} vs the random mask at {float(sparsity):.0%}: "
                   f"{format_difference(diff)}.")
  for arm in CONTROL_ARMS:
    entry = arms.get(arm)
    if entry and "vs_sam" in entry and "vs_sgd" in entry:
      cost = f", at {costs[arm]:.2f}x SGD's cost" if costs and arm in costs else ""
      out.append(f"{_control(arm, perturbs)}{cost}: vs SAM {versus(entry, 'sam')}; "
                 f"vs SGD {versus(entry, 'sgd')}.")
  return out
