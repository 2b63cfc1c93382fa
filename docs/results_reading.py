"""The results' reading: a regime summary's paired differences in words.

Used by generate_results.py and radius_section.py for docs/results.md and the
README. Every difference shown is a paired one from the summary
(``experiments.statistics_report.paired_difference``: the two arms on the
seeds both ran, the mean of the per-seed differences with its 95 % t
interval), written ``+3.79 [+2.83, +4.75], n=5, better``. Its verdict is
"better" or "worse" when the interval excludes 0, else "tie"; one shared seed
gives no interval. A difference in **bold** survives Holm's correction over
the regime's paired comparisons of that metric (its ``holm`` entry): only
those are stated as claims in the README.
"""

import json
import pathlib

from experiments import sweep
from experiments import sweep_arms
from experiments import tensorwise_masks

FINAL, EARLY = "test_accuracy", "early_stopped_test_accuracy"
METRIC_NAMES = {FINAL: "final", EARLY: "early-stopped"}
FASHION_MNIST_CLASSES = 10
# What the words of an arm's label mean (``sweep_arms.Arm.label``), for the
# README and the results page.
LABELS = (
    "Arm labels: `s=S` perturbs the fraction 1 - S of the weights that the Fisher mask "
    "(`ssam-f`), dynamic sparse training (`ssam-d`) or chance picks (`ssam-random`, drawn "
    "once; `ssam-random-resampled`, redrawn at every mask refresh, as the Fisher mask is "
    "reselected); a tensor-wise arm names the tensors it perturbs and their share of the "
    "parameters; `own rho`: rho chosen on validation for that arm (otherwise SAM's); "
    "`masked`: ‖eps‖ = rho (`normalize=\"masked\"`) instead of the paper's "
    "‖eps‖ = rho ‖m ⊙ g‖ / ‖g‖; `ascent 1/8 batch`: the first gradient taken on 1/8 of "
    "the batch ([the cheaper ascents](efficient.md)).")
RESULTS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "results"
# Arms with a subsection of their own (docs/radius_section.py).
RADIUS_LABELS = tuple(arm.label for arm in sweep_arms.RADIUS_ARMS)
TENSORWISE_NOTE = (
    "A tensor-wise arm is named by what its mask perturbs, measured, rather than by its "
    "budget (`s=0.9`: at most 10 % of the parameters it may perturb): the tensors, by "
    "Flax's module names (read from the mask after the arm's first training step by "
    "`python -m experiments.tensorwise_masks`, `experiments/results/"
    "tensorwise_masks.json`), and the fraction of all parameters that every epoch of "
    "every seed records. Only tensors that fit the budget whole are taken, so that "
    "fraction can be far below the budget.")


def load_summary(regime: str) -> dict | None:
  """The committed ``<regime>_summary.json``, or None."""
  path = RESULTS / f"{regime}_summary.json"
  return json.loads(path.read_text()) if path.exists() else None


def perturbs_of(regime: str, summary: dict) -> dict[str, str]:
  """What each tensor-wise arm of the summary perturbs: its measured tensors
  (``experiments/results/tensorwise_masks.json``) and recorded density."""
  rows = sweep.rows_by_arm(regime)
  return tensorwise_masks.perturbs(regime, {arm: rows.get(arm, [])
                                            for arm in summary["arms"]})


def stat(entry: dict | None, metric: str) -> str:
  """``mean ± std`` of a summary metric, or the mean alone for one seed."""
  value = (entry or {}).get(metric)
  if not value:
    return ""
  return (f"{value['mean']:.2f} ± {value['std']:.2f}" if value["n"] > 1
          else f"{value['mean']:.2f}")


def compared_metric(summary: dict) -> str:
  """The metric the regime's comparisons are read on: early-stopped test
  accuracy (a reader with a validation split stops at its best epoch), or
  the final one where no run has a validation split."""
  return EARLY if any(EARLY in entry for entry in summary["arms"].values()) else FINAL


def paired(entry: dict | None, reference: str, metric: str) -> dict | None:
  """The summary's paired difference ``entry - reference`` (an arm label)."""
  return (entry or {}).get("paired", {}).get(metric, {}).get(f"vs_{reference}")


def holm_verdict(diff: dict | None) -> str | None:
  """better, worse or tie after Holm's correction; None without an interval."""
  return diff["holm"]["verdict"] if diff and "holm" in diff else None


def format_paired(diff: dict | None, verdict: bool = True) -> str:
  """``+3.79 [+2.83, +4.75], n=5, better``, in bold when it survives Holm;
  ``verdict=False`` leaves out the word. One shared seed: no interval."""
  if not diff:
    return ""
  if diff["n"] == 0:
    return "no shared seed"
  if diff["n"] < 2:
    return f"{diff['mean']:+.2f}, n=1, no interval"
  low, high = diff["ci"]
  text = f"{diff['mean']:+.2f} [{low:+.2f}, {high:+.2f}], n={diff['n']}"
  if verdict:
    text += f", {diff['verdict']}"
  return f"**{text}**" if holm_verdict(diff) in ("better", "worse") else text


def format_paired_holm(diff: dict) -> str:
  """:func:`format_paired` with its verdict, and Holm's where that differs:
  ``+0.46 [+0.26, +0.65], n=5, better (after Holm: tie)``."""
  after = holm_verdict(diff)
  return format_paired(diff) + (f" (after Holm: {after})"
                                if after is not None and after != diff["verdict"] else "")


def holm_note(diff: dict) -> str:
  """``Holm-adjusted p 0.010 over 27 comparisons``."""
  p = diff["holm"]["p"]
  return (f"Holm-adjusted p {'< 0.001' if p < 0.001 else f'{p:.3f}'} over "
          f"{diff['holm']['comparisons']} comparisons")


def _with_holm(diff: dict) -> str:
  """A difference without its verdict word, and what Holm's correction does to it."""
  if diff["verdict"] != "tie" and holm_verdict(diff) == "tie":
    return (f"{format_paired(diff, False)}, whose interval excludes 0 but which does "
            f"not survive Holm's correction ({holm_note(diff)})")
  return f"{format_paired(diff, False)} ({holm_note(diff)})"


def regime_name(summary: dict) -> str:
  """``R1`` of ``R1: clean labels, ...``."""
  return summary["description"].split(":")[0]


def family_size(summary: dict, metric: str) -> int:
  """How many paired comparisons of ``metric`` Holm's correction runs over."""
  return max((diff["holm"]["comparisons"] for entry in summary["arms"].values()
              for diff in entry.get("paired", {}).get(metric, {}).values()
              if "holm" in diff), default=0)


def separates(summary: dict) -> bool:
  """Whether SAM beats SGD in the compared metric after Holm's correction:
  without that, no verdict on keeping SAM's gain is drawn in the regime."""
  gain = paired(summary["arms"].get("sam"), "sgd", compared_metric(summary))
  return holm_verdict(gain) == "better"


KEEPS, BELOW_SAM, NOT_ABOVE_SGD = ("keeps", "below SAM", "not above SGD")


def gain_kept(entry: dict | None, metric: str) -> str | None:
  """Whether an arm keeps SAM's gain over SGD in ``metric``: ``KEEPS`` when
  it ties (or beats) SAM by its interval and beats SGD after Holm's correction,
  ``BELOW_SAM`` when it beats SGD after Holm but its interval to SAM lies
  below 0, ``NOT_ABOVE_SGD`` when it does not beat SGD after Holm; None
  without an interval to both."""
  to_sam, to_sgd = paired(entry, "sam", metric), paired(entry, "sgd", metric)
  if holm_verdict(to_sam) is None or holm_verdict(to_sgd) is None:
    return None
  if holm_verdict(to_sgd) != "better":
    return NOT_ABOVE_SGD
  return KEEPS if to_sam["verdict"] != "worse" else BELOW_SAM


def join_and(items: list[str]) -> str:
  return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def kept_groups(summary: dict, labels, names: dict | None = None,
                intervals: bool = True):
  """The arms ``labels`` by :func:`gain_kept` verdict (those that keep the
  gain with their intervals to SAM and SGD unless ``intervals`` is False),
  and those without an interval."""
  metric, names = compared_metric(summary), names or {}
  groups, unmeasured = {}, []
  for label in labels:
    entry = summary["arms"].get(label)
    kept = gain_kept(entry, metric)
    name = names.get(label, label)
    if kept is None:
      unmeasured.append(name)
      continue
    gaps = "; ".join(f"vs {ref.upper()} {format_paired(paired(entry, ref, metric), False)}"
                     for ref in ("sam", "sgd"))
    groups.setdefault(kept, []).append(
        f"{name} ({gaps})" if kept == KEEPS and intervals else name)
  return groups, unmeasured


def kept_sentence(summary: dict, labels, names: dict | None = None,
                  intervals: bool = True) -> str:
  """Which of the arms ``labels`` keep SAM's gain over SGD in the compared
  metric, with their intervals (``intervals=False``: by name, for a text
  beside a table that shows them); empty if the regime does not separate SAM
  from SGD."""
  if not separates(summary):
    return ""
  metric = compared_metric(summary)
  sgd = "early-stopped SGD" if metric == EARLY else "SGD"
  groups, unmeasured = kept_groups(summary, labels, names, intervals)
  parts = [f"An arm keeps SAM's gain when it ties (or beats) SAM by its interval and "
           f"beats {sgd} after Holm's correction; the lower end of its interval against "
           "SAM bounds how much of the gain it may still lose.",
           f"Keeps it: {join_and(groups.get(KEEPS, ['no arm']))}."]
  if BELOW_SAM in groups:
    parts.append(f"Beats {sgd} after Holm but falls below SAM by its interval: "
                 f"{join_and(groups[BELOW_SAM])}.")
  if NOT_ABOVE_SGD in groups:
    parts.append(f"Not shown to beat {sgd} after Holm: {join_and(groups[NOT_ABOVE_SGD])}.")
  if unmeasured:
    parts.append(f"Fewer than two shared seeds, no interval: {join_and(unmeasured)}.")
  return " ".join(parts)


def sam_vs_sgd(summary: dict) -> str:
  """SAM against SGD in the compared and the final metric, and what the
  regime can say."""
  sam, metric = summary["arms"].get("sam"), compared_metric(summary)
  gains = {m: paired(sam, "sgd", m) for m in dict.fromkeys((metric, FINAL))}
  gains = {m: diff for m, diff in gains.items() if holm_verdict(diff)}
  if metric not in gains:
    return "SAM vs SGD: not measured on two shared seeds, so no interval."
  sgd = "early-stopped SGD" if metric == EARLY else "SGD"
  final = (f"; at the final epoch, {_with_holm(gains[FINAL])}"
           if metric != FINAL and FINAL in gains else "")
  if separates(summary):
    return f"SAM beats {sgd} by {_with_holm(gains[metric])}{final}."
  name = regime_name(summary)
  if holm_verdict(gains[metric]) == "worse":
    return (f"In {name}, {sgd} beats SAM: SAM - SGD {_with_holm(gains[metric])}{final}. "
            f"No verdict on the SSAM arms keeping a gain is drawn from {name}.")
  return (f"{name} cannot separate SAM from SGD in {METRIC_NAMES[metric]} test accuracy, "
          f"the accuracy every comparison reads: SAM - SGD "
          f"{_with_holm(gains[metric])}{final}. No verdict on the SSAM arms is drawn "
          f"from {name}: its differences are numbers only.")


def early_stopping_note(summary: dict) -> str:
  """How many runs' early-stopped value is taken off the best validation
  epoch, because test was evaluated only on some epochs."""
  arms = [e for e in summary["arms"].values() if EARLY in e]
  approximate = sum(len(e.get("early_stopped_approximate_seeds", [])) for e in arms)
  runs = sum(e[EARLY]["n"] for e in arms)
  if not approximate:
    return ""
  return (f" In {approximate} of {runs} runs test accuracy is evaluated only every few "
          "epochs and the epoch of best validation accuracy has none; there the "
          "early-stopped value is taken at the best validation epoch among the epochs "
          "with a test evaluation.")


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
  """The regime's reading, one sentence group per item: no difference
  without its interval, no verdict that the intervals do not carry.
  ``perturbs``: what each tensor-wise arm perturbs, measured."""
  arms, out = summary["arms"], []
  perturbs = perturbs or {}
  names = display_names(arms, perturbs)
  metric = compared_metric(summary)
  single = [names[arm] for arm, entry in arms.items() if entry[FINAL]["n"] < 2]
  if single:
    out.append(f"{join_and(single)}: one seed, so no interval.")
  noise = summary["settings"]["label_noise"]
  if noise:
    # A relabelled example keeps its true class with probability 1/classes.
    clean = 100 * (1 - noise * (1 - 1 / FASHION_MNIST_CLASSES))
    out.append(f"Memorisation: a model that predicts every true class scores {clean:.0f} % "
               "on the noisy training labels; more means it fits wrong labels. Train "
               "accuracy: " + ", ".join(f"{names[arm]} {entry['train_accuracy']['mean']:.1f}"
                                        for arm, entry in arms.items()) + ".")
  out.append(sam_vs_sgd(summary))
  shown = [arm for arm in arms if arm not in ("sam", "sgd", *RADIUS_LABELS)]
  if kept := kept_sentence(summary, shown, names):
    out.append(kept)
  if separates(summary):
    for arm in CONTROL_ARMS:
      entry = arms.get(arm)
      if paired(entry, "sam", metric) and paired(entry, "sgd", metric):
        cost = f", at {costs[arm]:.2f}x SGD's cost" if costs and arm in costs else ""
        out.append(f"{_control(arm, perturbs)}{cost}: " + "; ".join(
            f"vs {ref.upper()} {format_paired_holm(paired(entry, ref, metric))}"
            for ref in ("sam", "sgd")) + ".")
  out.append("The masks of the table differ in more than how they choose entries: at "
             "SAM's rho, with the paper's normalisation, the perturbation's radius "
             "shrinks with the mask and differs between masks, and the random mask "
             "(`ssam-random`) is drawn once and never refreshed. The table therefore "
             "does not compare masks; the radius-controlled arms do"
             + (", below." if set(RADIUS_LABELS) & (
                 set(arms) | set(summary.get("own_rho_selection", {})))
                else " (not measured in this regime)."))
  return out
