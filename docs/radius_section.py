"""The "Radius-controlled arms" subsection of a regime in docs/results.md.

The arms are ``experiments.sweep_arms.RADIUS_ARMS``: SSAM-F, SSAM-D and a
random mask redrawn on the Fisher mask's schedule, at 90 % and 99 %
sparsity, with the paper's normalisation (``||eps|| = rho ||m * g|| /
||g||``, which shrinks with the mask) and with ``normalize="masked"``
(``||eps|| = rho`` for every mask), each at its own rho chosen on validation
(``experiments.rho_search``). The section renders whatever the summary
holds: an arm without a chosen rho shows the grid values measured, an arm
with one seed its values without an interval, an arm without runs "not
measured".
"""

from experiments import sweep_arms
from results_reading import (  # pylint: disable=g-importing-member
    EARLY, FINAL, KEEPS, METRIC_NAMES, RADIUS_LABELS, compared_metric, format_paired,
    format_paired_holm, holm_verdict, join_and, kept_groups, kept_sentence, paired,
    separates, stat)

# The regimes whose sweep trains the radius-controlled arms; others show the
# subsection only once their summary holds one.
REGIMES = ("label_noise",)


def measured(summary: dict) -> bool:
  """Whether any radius-controlled arm has a run in the summary."""
  return bool(set(RADIUS_LABELS) & (set(summary["arms"])
                                    | set(summary.get("own_rho_selection", {}))))


def counterpart(label: str) -> str | None:
  """The random-mask arm an arm is paired with (``sweep_arms.CONTRASTS``)."""
  return next(iter(sweep_arms.CONTRASTS.get(label, ())), None)


def grid_cell(selection: dict | None) -> str:
  """``0.1: 78.20, **0.2: 80.18**, 0.5: 79.00; bracketed``: the validation
  accuracy (%) at each measured rho, the chosen one in bold."""
  if not selection:
    return "not measured"
  chosen = selection["selected"]
  cells = [f"**{rho}: {value:.2f}**" if chosen is not None and float(rho) == chosen
           else f"{rho}: {value:.2f}"
           for rho, value in sorted(selection["validation_accuracy"].items(),
                                    key=lambda item: float(item[0]))]
  status = ("no rho chosen: grid incomplete" if chosen is None else
            "bracketed" if selection["bracketed"] else
            "best at the end of the rho ladder: not bracketed")
  return f"{', '.join(cells)}; {status}"


def radius_cell(entry: dict | None) -> str:
  """Mean ||eps|| over training, mean ± std over seeds."""
  radius = (entry or {}).get("effective_radius")
  if not radius:
    return "not recorded" if entry else ""
  return (f"{radius['mean']:.3g} ± {radius['std']:.2g}" if radius["n"] > 1
          else f"{radius['mean']:.3g}")


def table(summary: dict) -> str:
  """SAM's row, then one row per radius-controlled arm."""
  metric, verdicts = compared_metric(summary), separates(summary)
  name = METRIC_NAMES[metric]
  lines = [f"| arm | final validation (%) at each rho, seed {summary['rho_grid_seed']} | "
           "mean ‖eps‖ | n | final test (%) | "
           f"early-stopped test (%) | vs SAM ({name}) | vs SGD ({name}) | "
           f"vs random mask ({name}) |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
  sam = summary["arms"].get("sam")
  if sam:
    rho = summary["selected_rho"]
    radius = radius_cell(sam) if "effective_radius" in sam else f"{rho:g} (= rho)"
    lines.append(f"| sam | rho {rho:g}, chosen on SAM's grid | {radius} | "
                 f"{sam[FINAL]['n']} | {stat(sam, FINAL)} | {stat(sam, EARLY)} |  | "
                 f"{format_paired(paired(sam, 'sgd', metric), verdicts)} |  |")
  selection = summary.get("own_rho_selection", {})
  for label in RADIUS_LABELS:
    entry = summary["arms"].get(label)
    n = entry[FINAL]["n"] if entry else ""
    random = counterpart(label)
    lines.append(
        f"| {label} | {grid_cell(selection.get(label))} | {radius_cell(entry)} | {n} | "
        f"{stat(entry, FINAL)} | {stat(entry, EARLY)} | "
        + " | ".join(format_paired(paired(entry, ref, metric), verdicts)
                     for ref in ("sam", "sgd"))
        + f" | {format_paired(paired(entry, random, metric), verdicts) if random else ''} |")
  return "\n".join(lines)


def _unmeasured(summary: dict, labels) -> list[str]:
  """``label (why)`` for each arm of ``labels`` without runs at a chosen rho."""
  selection = summary.get("own_rho_selection", {})
  return [f"{label} ({'no rho chosen: grid incomplete' if label in selection else 'no run'})"
          for label in labels if label not in summary["arms"]]


def grid_contrast(selection: dict, seed: int) -> str:
  """The sentence on equal radius from the validation grid: each masked arm's
  final validation accuracy minus its random mask's at every rho both
  measured (one seed, so no interval); empty without such a rho."""
  parts = []
  for label in RADIUS_LABELS:
    random = counterpart(label)
    if sweep_arms.arm(label).normalize != "masked" or random is None:
      continue
    ours = (selection.get(label) or {}).get("validation_accuracy", {})
    theirs = (selection.get(random) or {}).get("validation_accuracy", {})
    shared = sorted(set(ours) & set(theirs), key=float)
    if shared:
      parts.append(f"{label}: " + ", ".join(
          f"{rho}: {ours[rho] - theirs[rho]:+.2f}" for rho in shared))
  if not parts:
    return ""
  return (f" At the same radius, on the validation grid (seed {seed}, final "
          "validation accuracy minus the random mask's, points; one seed, no interval): "
          + "; ".join(parts) + ".")


def masked_contrasts(summary: dict) -> list[tuple[str, str, dict | None]]:
  """``(label, random mask's label, paired difference)`` for each arm at equal
  radius (``normalize="masked"``) that has a random-mask counterpart, in the
  compared metric; the difference is None without shared seeds."""
  metric = compared_metric(summary)
  return [(label, random, paired(summary["arms"].get(label), random, metric))
          for label in RADIUS_LABELS
          if sweep_arms.arm(label).normalize == "masked"
          and (random := counterpart(label)) is not None]


def reading(summary: dict) -> list[str]:
  """Answers (a) whether SSAM at 90/99 % keeps SAM's gain at its own rho and
  (b) whether, at equal radius, the Fisher or dynamic mask beats the random
  one, as far as the intervals go."""
  out = []
  measured_labels = [label for label in RADIUS_LABELS if label in summary["arms"]]
  if not separates(summary):
    answer = ("SAM is not separated from SGD in this regime, so no arm is read as "
              "keeping its gain.")
  elif measured_labels:
    answer = kept_sentence(summary, measured_labels)
  else:
    answer = "No radius-controlled arm is measured at a chosen rho."
  if unmeasured := _unmeasured(summary, RADIUS_LABELS):
    answer += f" Not measured: {join_and(unmeasured)}."
  out.append("(a) At its own rho, does SSAM at 90/99 % keep SAM's gain? " + answer)
  pairs, missing = [], []
  for label, random, diff in masked_contrasts(summary):
    if holm_verdict(diff) is None:
      missing.append(label)
      continue
    pairs.append(f"{label} vs {random}: {format_paired_holm(diff)}")
  answer = ("; ".join(pairs) + "." if pairs else
            "no mask is compared with the random one on two shared seeds.")
  if missing:
    answer += f" Not compared on two shared seeds: {join_and(missing)}."
  out.append("(b) At equal radius (`masked`: ‖eps‖ = rho for every mask), does the "
             "Fisher or dynamic mask beat the random one? Each at its own best radius "
             "(its chosen rho), paired over seeds: " + answer
             + grid_contrast(summary.get("own_rho_selection", {}),
                             summary["rho_grid_seed"]))
  out.append("With the paper's normalisation the radius differs between masks as well "
             "(the ‖eps‖ column), so those arms' comparisons with the random mask do not "
             "isolate the mask. The random mask drawn once and never refreshed, at SAM's "
             "rho, is the `ssam-random` rows of the table above.")
  return out


def contrast_sentence(summary: dict) -> str:
  """The README's answer to (b): each equal-radius contrast with the random
  mask, worded as a finding (and bold) only where it survives Holm's
  correction; empty while none has an interval or where the regime does not
  separate SAM from SGD."""
  if not separates(summary):
    return ""
  contrasts = []
  for label, random, diff in masked_contrasts(summary):
    if holm_verdict(diff) is None:
      continue
    after, shown = holm_verdict(diff), format_paired(diff, False)
    if after != "tie":
      contrasts.append(f"{label} {'beats' if after == 'better' else 'falls below'} "
                       f"{random} by {shown}")
    elif diff["verdict"] != "tie":
      contrasts.append(f"{label} vs {random}: {shown}, an interval that excludes 0 "
                       "but does not survive Holm's correction")
    else:
      contrasts.append(f"{label} vs {random}: {shown}, a tie")
  if not contrasts:
    return ""
  return ("At equal radius (`normalize=\"masked\"`, each mask at its own best rho; "
          "[radius-controlled arms](docs/results.md#radius-controlled-arms)): "
          f"{'; '.join(contrasts)}.")


def section(summary: dict, regime: str) -> list[str]:
  """The subsection's lines, or none for a regime without these arms."""
  if regime not in REGIMES and not measured(summary):
    return []
  metric = compared_metric(summary)
  return ["### Radius-controlled arms", "",
          "SSAM-F, SSAM-D and a random mask redrawn on the Fisher mask's schedule "
          "(`ssam-random-resampled`), at 90 % and 99 % sparsity, with the paper's "
          "normalisation (‖eps‖ = rho ‖m ⊙ g‖ / ‖g‖, shrinking with the mask) and with "
          "`masked` (‖eps‖ = rho for every mask). Each arm chooses its own rho on "
          f"validation (seed {summary['rho_grid_seed']}): the grid grows until its best "
          "value has a measured neighbour on both sides; then every seed trains at that "
          "rho. Mean ‖eps‖: the perturbation's norm averaged over training, mean ± std "
          "over seeds; SAM's is its rho. Differences are paired, in "
          f"{METRIC_NAMES[metric]} test accuracy; the random "
          "mask column compares with the random mask of the same sparsity and "
          "normalisation.", "",
          table(summary), ""] + [f"- {line}" for line in reading(summary)] + [""]
