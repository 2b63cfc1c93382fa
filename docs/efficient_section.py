"""The measured part of docs/efficient.md: what each cheaper ascent buys in R2.

Written by ``docs/generate_results.py`` between the markers ``<!-- MEASURED
-->`` and ``<!-- END MEASURED -->`` of docs/efficient.md, from
``experiments/results/label_noise_summary.json`` and the regime's cost file
(``benchmarks.arm_cost``). The arms are ``sweep_arms.FRONTIER_ARMS``: SGD,
SAM, SSAM-F 50 %, the tensor-wise arms and the cheaper ascents (the last two
partly at their own rho and knob, chosen on validation). Accuracy is the
early-stopped test accuracy; every difference is paired on shared seeds (the
summary's).

"Which to pick" names, for each budget, the arm with the highest mean among
those trained at every seed whose cost fits it; and the arms that give SAM's
benefit at close to SGD's cost: at most ``TARGET_COST`` x SGD's cost, at
least ``TARGET_KEPT`` of SAM's gain over early-stopped SGD (a point
estimate, on the seeds the arm, SAM and SGD share), and not worse than SAM
by the paired interval, and trained at every seed.
"""

from experiments import sweep
from experiments import sweep_arms
from experiments import sweep_readouts
from radius_section import grid_cell  # pylint: disable=g-importing-member
from results_reading import (  # pylint: disable=g-importing-member
    EARLY, FINAL, display_names, format_paired, join_and, load_summary, paired,
    perturbs_of, separates, stat)

REGIME = "label_noise"
SEEDS = sweep.REGIMES[REGIME].every_seed
START, END = "<!-- MEASURED -->", "<!-- END MEASURED -->"
TARGET_COST, TARGET_KEPT = 1.15, 0.9
BUDGETS = (1.0, 1.15, 1.3, 2.0)
OWN_RHO_LABELS = tuple(arm.label for arm in sweep_arms.FRONTIER_ARMS if arm.rho_grid)


def inputs() -> tuple[dict | None, dict[str, float], dict[str, str], dict[str, tuple]]:
  """The R2 summary, each arm's cost, display names and cost range over the
  benchmark's rounds (``sweep_readouts.training_cost_ranges``)."""
  summary = load_summary(REGIME)
  names = summary and display_names(summary["arms"], perturbs_of(REGIME, summary))
  return (summary, sweep_readouts.training_costs(REGIME), names or {},
          sweep_readouts.training_cost_ranges(REGIME))


def gain_kept(to_sgd: dict | None, sam_gain: dict | None) -> float | None:
  """The arm's paired gain over SGD as a share of SAM's, when both are
  measured on the same seeds (two or more) and SAM's is positive."""
  if not to_sgd or not sam_gain or to_sgd["n"] < 2 or to_sgd["seeds"] != sam_gain["seeds"]:
    return None
  return to_sgd["mean"] / sam_gain["mean"] if sam_gain["mean"] > 0 else None


def rows(summary: dict, cost: dict[str, float], ranges: dict | None = None) -> list[dict]:
  """One row per frontier arm with runs: its cost (and its range over the
  benchmark's rounds, from ``ranges``), seeds and differences."""
  arms, out = summary["arms"], []
  sam_gain = paired(arms.get("sam"), "sgd", EARLY) if separates(summary) else None
  for arm in sweep_arms.FRONTIER_ARMS:
    entry = arms.get(arm.label)
    if not entry or EARLY not in entry:
      continue
    to_sam, to_sgd = paired(entry, "sam", EARLY), paired(entry, "sgd", EARLY)
    row = {"label": arm.label, "arm": arm, "entry": entry, "cost": cost.get(arm.label),
           "cost_range": (ranges or {}).get(arm.label), "n": entry[EARLY]["n"],
           "to_sam": to_sam, "to_sgd": to_sgd, "kept": gain_kept(to_sgd, sam_gain)}
    row["meets"] = bool(
        row["cost"] is not None and row["cost"] <= TARGET_COST and row["n"] >= SEEDS
        and row["kept"] is not None and row["kept"] >= TARGET_KEPT
        and to_sam and to_sam["verdict"] in ("tie", "better"))
    out.append(row)
  return out


def _name(row: dict, names: dict) -> str:
  return names.get(row["label"], row["label"])


def _cost_cell(cost: float | None, cost_range: tuple | None = None) -> str:
  if cost is None:
    return "not timed"
  return f"{cost:.2f}" + (f" ({cost_range[0]:.2f}-{cost_range[1]:.2f})" if cost_range else "")


def _cost_text(row: dict) -> str:
  """``1.13x`` or ``1.13x; rounds 1.05-1.19x``."""
  low_high = row["cost_range"]
  return f"{row['cost']:.2f}x" + (f"; rounds {low_high[0]:.2f}-{low_high[1]:.2f}x"
                                  if low_high else "")


def table(found: list[dict], names: dict) -> str:
  lines = ["| arm | cost (x SGD) | rho | n | final test (%) | early-stopped test (%) | "
           "vs SAM | vs early-stopped SGD | SAM's gain kept |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
  for row in found:
    entry = row["entry"]
    kept = f"{100 * row['kept']:.0f} %" if row["kept"] is not None else ""
    rho = f"{entry['rho']:g}" if entry.get("rho") is not None else ""
    lines.append(
        f"| {_name(row, names)} | {_cost_cell(row['cost'], row['cost_range'])} | {rho} | "
        f"{row['n']} | {stat(entry, FINAL)} | {stat(entry, EARLY)} | "
        f"{format_paired(row['to_sam'])} | {format_paired(row['to_sgd'])} | {kept} |")
  return "\n".join(lines)


def _has_knob(arm: sweep_arms.Arm) -> bool:
  """Whether the arm's variant is one value of a knob (k, p, the fraction)."""
  return any(arm.variant in knobs and len(knobs) > 1
             for knobs in sweep_arms.VARIANT_FAMILIES.values())


def selection_table(summary: dict, cost: dict[str, float]) -> str:
  """The own-rho arms' validation grids (seed ``rho_grid_seed``) and knob choice."""
  selection = summary.get("own_rho_selection", {})
  lines = ["| arm | cost (x SGD) | final validation (%) at each rho | knob |",
           "| --- | ---: | --- | --- |"]
  for label in OWN_RHO_LABELS:
    chosen = (selection.get(label) or {}).get("knob_chosen")
    knob = ({True: "chosen", False: "another value chosen", None: "undecided"}[chosen]
            if _has_knob(sweep_arms.arm(label)) and label in selection else "")
    lines.append(f"| {label} | {_cost_cell(cost.get(label))} | "
                 f"{grid_cell(selection.get(label))} | {knob} |")
  return "\n".join(lines)


def best_within(found: list[dict], budget: float) -> dict | None:
  """The arm with the highest mean among those timed at most ``budget`` and
  trained at every seed."""
  fits = [row for row in found
          if row["cost"] is not None and row["cost"] <= budget and row["n"] >= SEEDS]
  return max(fits, key=lambda row: row["entry"][EARLY]["mean"]) if fits else None


def picks(found: list[dict]) -> list[tuple[tuple[float, ...], dict | None]]:
  """``best_within`` each budget, consecutive budgets with the same pick
  grouped: ``(budgets, pick)``."""
  groups = []
  for budget in BUDGETS:
    best = best_within(found, budget)
    if groups and groups[-1][1] is best:
      groups[-1] = (groups[-1][0] + (budget,), best)
    else:
      groups.append(((budget,), best))
  return groups


def pick_line(budgets: tuple[float, ...], row: dict | None, names: dict) -> str:
  """``Up to 1.15x SGD's cost (and up to 1.3x): arm ...``, the smallest budget
  first."""
  also = f" (and up to {budgets[-1]:g}x)" if len(budgets) > 1 else ""
  head = f"Up to {budgets[0]:g}x SGD's cost{also}"
  if row is None:
    return f"{head}: no arm is both timed within it and trained at every seed."
  versus = f"; vs SAM {format_paired(row['to_sam'])}" if row["to_sam"] else ""
  return (f"{head}: {_name(row, names)} ({_cost_text(row)}), "
          f"early-stopped test {stat(row['entry'], EARLY)} %{versus}.")


def _by_median(found: list[dict], names: dict) -> str:
  """The arms meeting the criterion whose cost exceeds ``TARGET_COST`` in some
  round of the benchmark: within it by the median only."""
  over = [_name(row, names) for row in found
          if row["meets"] and row["cost_range"] and row["cost_range"][1] > TARGET_COST]
  return (f" Of those, within {TARGET_COST:g}x by the median over the benchmark's rounds "
          f"only (some rounds cost more): {join_and(over)}." if over else "")


def criterion_sentence(found: list[dict], names: dict) -> str:
  """Which arms give SAM's benefit at close to SGD's cost, by ``TARGET_*``."""
  met = [_name(row, names) for row in found if row["meets"]]
  rule = (f"An arm gives SAM's benefit at close to SGD's cost when it costs at most "
          f"{TARGET_COST:g}x SGD's, keeps at least {100 * TARGET_KEPT:.0f} % of SAM's gain "
          "over early-stopped SGD (point estimate) and is not worse than SAM by the paired "
          f"interval, trained at all {SEEDS} seeds of the regime.")
  if met:
    return f"{rule} Arms that do: {join_and(met)}.{_by_median(found, names)}"
  cheap = [row for row in found if row["cost"] is not None and row["cost"] <= TARGET_COST
           and row["arm"].optimizer != "sgd" and row["n"] >= SEEDS]
  if not cheap:
    return (f"{rule} No sharpness-aware arm within that cost is trained at every seed: "
            "see the rho and knob selection below.")
  best = max(cheap, key=lambda row: row["entry"][EARLY]["mean"])
  return (f"{rule} No arm does. The highest mean within that cost: {_name(best, names)} "
          f"({best['cost']:.2f}x), early-stopped test {stat(best['entry'], EARLY)} %, vs "
          f"SAM {format_paired(best['to_sam'])}.")


def readme_paragraph(summary: dict | None, cost: dict[str, float], names: dict,
                     ranges: dict | None = None) -> str:
  """The README's paragraph on the cheaper ascents: the arm with the highest
  mean within ``TARGET_COST``, and the arms meeting the criterion."""
  if summary is None:
    return ""
  found = rows(summary, cost, ranges)
  complete = [row for row in found if row["cost"] is not None and row["cost"] <= TARGET_COST
              and row["arm"].optimizer != "sgd" and row["n"] >= SEEDS]
  best = best_within(found, TARGET_COST)
  if not complete:
    measured = ("In R2, no cheaper ascent is trained at every seed: the guide shows the "
                "validation grids that choose their rho and knob.")
  elif best["arm"].optimizer == "sgd":
    measured = (f"In R2, within {TARGET_COST:g}x SGD's cost, early-stopped SGD has the "
                f"highest mean: {stat(best['entry'], EARLY)} %.")
  else:
    measured = (f"In R2, of the arms within {TARGET_COST:g}x SGD's cost trained at every "
                f"seed, the highest mean is {_name(best, names)}'s ({_cost_text(best)}): early-stopped test "
                f"{stat(best['entry'], EARLY)} %, vs SAM {format_paired(best['to_sam'])}.")
  met = [_name(row, names) for row in found if row["meets"]]
  if met:
    measured += (f" Within {TARGET_COST:g}x SGD's cost, keeping at least "
                 f"{100 * TARGET_KEPT:.0f} % of SAM's gain (point estimate) and not worse than SAM: "
                 f"{join_and(met)}.{_by_median(found, names)}")
  return ("\n\nCheaper ascents ([docs/efficient.md](docs/efficient.md)): the ascent on a "
          "schedule (every k updates, or with probability p), LookSAM, along the momentum "
          "(MSAM) or on a sub-batch, dense or sparse, each at its own rho and knob chosen on "
          f"validation. {measured}")


def cost_note() -> str:
  """Where the costs come from and how precise they are."""
  report = sweep_readouts.cost_report(REGIME)
  if report is None:
    return "No cost is measured."
  gauge = report["arms"].get("sgd 2x epochs")
  rounds = (gauge or {}).get("ratios_to_nearest_sgd", [])
  spread = (f", its rounds between {min(rounds):.2f}x and {max(rounds):.2f}x"
            if len(rounds) >= 2 else "")
  noise = (f" A second timing of SGD's own epoch (`sgd 2x epochs`, per epoch) comes out "
           f"at {gauge['ratio_to_sgd']:.2f}x SGD's{spread}: cost differences of that size "
           "are noise." if gauge else "")
  source = sweep.REGIMES[REGIME].cost_of
  short = {name: regime.description.split(":")[0] for name, regime in sweep.REGIMES.items()}
  shared = (f" {short[REGIME]} trains the same steps as {short[source]}, so its costs are "
            f"{short[source]}'s." if source else "")
  return ("Cost: the whole training run as a multiple of SGD's, timed on "
          f"{report['backend'].upper()} by `benchmarks/arm_cost.py` "
          f"(`{sweep_readouts.cost_file(REGIME)}`, with each run's method and provenance): "
          "the median over the benchmark's rounds of the arm's epoch as a multiple of "
          "SGD's; in brackets, where the run keeps every round, the lowest and the highest "
          f"round.{noise}{shared}")


def section(summary: dict | None, cost: dict[str, float], names: dict,
            ranges: dict | None = None) -> str:
  """The markdown between the markers."""
  if summary is None:
    return "No R2 summary is committed."
  found = rows(summary, cost, ranges)
  return "\n\n".join([
      f"Measured in the label-noise regime of [the results](results.md), "
      f"{summary['description']} (`experiments/results/{REGIME}_summary.json`): "
      "early-stopped test accuracy (%, mean ± std over the n seeds); vs SAM and vs "
      "early-stopped SGD: paired differences on shared seeds, mean [95 % t interval], "
      "in **bold** where they survive Holm's correction over the regime's comparisons; "
      "SAM's gain kept: the arm's paired gain over early-stopped SGD as a share of SAM's, "
      "on the same seeds. " + cost_note(),
      "### Which to pick", "\n".join(f"- {pick_line(b, row, names)}" for b, row in picks(found)),
      criterion_sentence(found, names),
      "### Every arm", table(found, names),
      "### rho and knob, chosen on validation",
      "Each arm with \"own rho\" in its label starts from a grid of rho and grows it until "
      "the best value is bracketed (`experiments/rho_search.py`); a family's knob (k, p or "
      "the batch fraction) is the one whose chosen rho validates best. `s=0 ... last "
      "block` perturbs the whole last block, its convolution included.",
      selection_table(summary, cost),
      "![accuracy vs cost](../experiments/results/figures/label_noise/accuracy_vs_cost.png)"])


def render(text: str, summary: dict | None, cost: dict[str, float], names: dict,
           ranges: dict | None = None) -> str:
  """``text`` (docs/efficient.md) with the section between its markers."""
  if START not in text or END not in text:
    raise ValueError(f"docs/efficient.md lacks the markers {START} and {END}.")
  start, end = text.index(START), text.index(END)
  return (text[:start + len(START)] + "\n\n" + section(summary, cost, names, ranges) + "\n\n"
          + text[end:])
