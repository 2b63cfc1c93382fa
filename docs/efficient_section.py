"""The measured part of docs/efficient.md: what each cheaper ascent buys in R2.

Written by ``docs/generate_results.py`` between the markers ``<!-- MEASURED
-->`` and ``<!-- END MEASURED -->`` of docs/efficient.md, from
``experiments/results/label_noise_summary.json`` and the regime's cost file
(``benchmarks.arm_cost``). The arms are ``sweep_arms.FRONTIER_ARMS``: SGD,
SAM, SSAM-F 50 %, the tensor-wise fast path and the cheaper ascents, each at
its own rho and knob chosen on validation. Accuracy is the early-stopped test
accuracy; every difference is paired on shared seeds (the summary's).

"Which to pick" names, for each budget, the most accurate arm trained at
every seed whose cost fits it, and which arms give SAM's benefit at close to
SGD's cost: at most ``TARGET_COST`` x SGD's cost, at least ``TARGET_KEPT`` of
SAM's gain over early-stopped SGD, and a tie with SAM by the paired interval.
"""

from experiments import sweep
from experiments import sweep_arms
from experiments import sweep_readouts
from radius_section import grid_cell  # pylint: disable=g-importing-member
from results_reading import (  # pylint: disable=g-importing-member
    EARLY, FINAL, display_names, format_paired, join_and, load_summary, paired,
    perturbs_of, stat)

REGIME = "label_noise"
START, END = "<!-- MEASURED -->", "<!-- END MEASURED -->"
TARGET_COST, TARGET_KEPT = 1.15, 0.9
BUDGETS = (1.0, 1.15, 1.3, 2.0)
OWN_RHO_LABELS = tuple(arm.label for arm in sweep_arms.FRONTIER_ARMS if arm.rho_grid)


def inputs() -> tuple[dict | None, dict[str, float], dict[str, str]]:
  """The R2 summary, each arm's cost and display names."""
  summary = load_summary(REGIME)
  names = summary and display_names(summary["arms"], perturbs_of(REGIME, summary))
  return summary, sweep_readouts.training_costs(REGIME), names or {}


def rows(summary: dict, cost: dict[str, float]) -> list[dict]:
  """One row per frontier arm with runs: its cost, seeds and differences."""
  arms, out = summary["arms"], []
  sam_gain = paired(arms.get("sam"), "sgd", EARLY)
  for arm in sweep_arms.FRONTIER_ARMS:
    entry = arms.get(arm.label)
    if not entry or EARLY not in entry:
      continue
    to_sam, to_sgd = paired(entry, "sam", EARLY), paired(entry, "sgd", EARLY)
    kept = (to_sgd["mean"] / sam_gain["mean"] if to_sgd and to_sgd["n"] > 1 and sam_gain
            and sam_gain["mean"] > 0 else None)
    row = {"label": arm.label, "arm": arm, "entry": entry, "cost": cost.get(arm.label),
           "n": entry[EARLY]["n"], "to_sam": to_sam, "to_sgd": to_sgd, "kept": kept}
    row["meets"] = bool(
        row["cost"] is not None and row["cost"] <= TARGET_COST and kept is not None
        and kept >= TARGET_KEPT and to_sam and to_sam["n"] > 1
        and to_sam["verdict"] != "worse" and row["n"] >= len(sweep.REGIMES[REGIME].seeds))
    out.append(row)
  return out


def _cost_cell(cost: float | None) -> str:
  return f"{cost:.2f}" if cost is not None else "not timed"


def table(summary: dict, found: list[dict], names: dict) -> str:
  lines = ["| arm | cost (x SGD) | rho | n | final test (%) | early-stopped test (%) | "
           "vs SAM | vs early-stopped SGD | SAM's gain kept |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
  for row in found:
    entry = row["entry"]
    kept = f"{100 * row['kept']:.0f} %" if row["kept"] is not None else ""
    rho = f"{entry['rho']:g}" if entry.get("rho") is not None else ""
    lines.append(
        f"| {names.get(row['label'], row['label'])} | {_cost_cell(row['cost'])} | {rho} | "
        f"{row['n']} | {stat(entry, FINAL)} | {stat(entry, EARLY)} | "
        f"{format_paired(row['to_sam'])} | {format_paired(row['to_sgd'])} | {kept} |")
  return "\n".join(lines)


def selection_table(summary: dict, cost: dict[str, float]) -> str:
  """The own-rho arms' validation grids (seed ``rho_grid_seed``) and knob choice."""
  selection = summary.get("own_rho_selection", {})
  lines = ["| arm | cost (x SGD) | final validation (%) at each rho | knob |",
           "| --- | ---: | --- | --- |"]
  for label in OWN_RHO_LABELS:
    chosen = (selection.get(label) or {}).get("knob_chosen")
    knob = {True: "chosen", False: "another value chosen", None: "undecided"}[chosen]
    if not sweep_arms.arm(label).variant:
      knob = ""
    lines.append(f"| {label} | {_cost_cell(cost.get(label))} | "
                 f"{grid_cell(selection.get(label))} | {knob} |")
  return "\n".join(lines)


def best_within(found: list[dict], budget: float) -> dict | None:
  """The most accurate arm with every seed whose cost is at most ``budget``."""
  seeds = len(sweep.REGIMES[REGIME].seeds)
  fits = [row for row in found
          if row["cost"] is not None and row["cost"] <= budget and row["n"] >= seeds]
  return max(fits, key=lambda row: row["entry"][EARLY]["mean"]) if fits else None


def picks(found: list[dict]) -> list[tuple[float, dict | None]]:
  """``best_within`` each budget; a budget whose pick the next budget shares
  is left out."""
  best = {budget: best_within(found, budget) for budget in BUDGETS}
  return [(budget, best[budget]) for budget, following in zip(BUDGETS, BUDGETS[1:] + (None,))
          if following is None or best[following] is not best[budget]]


def pick_line(budget: float, row: dict | None, names: dict) -> str:
  if row is None:
    return f"Up to {budget:g}x SGD's cost: no arm is measured at every seed."
  versus = f"; vs SAM {format_paired(row['to_sam'])}" if row["to_sam"] else ""
  return (f"Up to {budget:g}x SGD's cost: {names.get(row['label'], row['label'])} "
          f"({row['cost']:.2f}x), early-stopped test {stat(row['entry'], EARLY)} %{versus}.")


def which_to_pick(found: list[dict], names: dict) -> list[str]:
  return [pick_line(budget, row, names) for budget, row in picks(found)]


def criterion_sentence(found: list[dict], names: dict) -> str:
  """Which arms give SAM's benefit at close to SGD's cost, by ``TARGET_*``."""
  met = [names.get(row["label"], row["label"]) for row in found if row["meets"]]
  rule = (f"An arm gives SAM's benefit at close to SGD's cost when it costs at most "
          f"{TARGET_COST:g}x SGD's, keeps at least {100 * TARGET_KEPT:.0f} % of SAM's gain "
          "over early-stopped SGD and ties SAM by the paired interval, at every seed.")
  if met:
    return f"{rule} Arms that do: {join_and(met)}."
  cheap = [row for row in found if row["cost"] is not None and row["cost"] <= TARGET_COST
           and row["label"] != "sgd"]
  if not cheap:
    return f"{rule} No arm within that cost is measured yet."
  best = max(cheap, key=lambda row: row["entry"][EARLY]["mean"])
  return (f"{rule} No arm does so far. The best within that cost: "
          f"{names.get(best['label'], best['label'])} ({best['cost']:.2f}x, n = {best['n']}), "
          f"early-stopped test {stat(best['entry'], EARLY)} %"
          + (f", vs SAM {format_paired(best['to_sam'])}" if best["to_sam"] else "") + ".")


def readme_paragraph(summary: dict | None, cost: dict[str, float], names: dict) -> str:
  """The README's paragraph on the cheaper ascents: the most accurate arm
  within ``TARGET_COST``, measured, and the arms meeting the criterion."""
  if summary is None:
    return ""
  found = rows(summary, cost)
  best = best_within(found, TARGET_COST)
  if best is None or best["arm"].optimizer == "sgd":
    measured = ("In R2 no cheaper ascent is measured at every seed yet; the guide shows "
                "their rho selection so far.")
  else:
    measured = (f"In R2 the most accurate arm at up to {TARGET_COST:g}x SGD's cost is "
                f"{names.get(best['label'], best['label'])} ({best['cost']:.2f}x): "
                f"early-stopped test {stat(best['entry'], EARLY)} %, vs SAM "
                f"{format_paired(best['to_sam'])}.")
  met = [names.get(row["label"], row["label"]) for row in found if row["meets"]]
  if met:
    measured += (f" Within {TARGET_COST:g}x SGD's cost, keeping at least "
                 f"{100 * TARGET_KEPT:.0f} % of SAM's gain and tying SAM: {join_and(met)}.")
  return ("\n\nCheaper ascents ([docs/efficient.md](docs/efficient.md)): the ascent on a "
          "schedule (every k updates, or with probability p), LookSAM, along the momentum "
          "(MSAM) or on a sub-batch, dense or sparse, each at its own rho and knob chosen on "
          f"validation. {measured}")


def section(summary: dict | None, cost: dict[str, float], names: dict) -> str:
  """The markdown between the markers."""
  if summary is None:
    return "No R2 summary is committed."
  found = rows(summary, cost)
  return "\n\n".join([
      f"Measured in {summary['description']} (`experiments/results/{REGIME}_summary.json`): "
      "early-stopped test accuracy (%, mean ± std over the n seeds); vs SAM and vs "
      "early-stopped SGD: paired differences on shared seeds, mean [95 % t interval], "
      "in **bold** where they survive Holm's correction over the regime's comparisons; "
      "SAM's gain kept: the arm's paired gain over early-stopped SGD as a share of SAM's. "
      "Cost: the whole training run as a multiple of SGD's, timed on CPU by "
      f"`benchmarks/arm_cost.py` (`{sweep_readouts.cost_file(REGIME)}`).",
      "### Which to pick", "\n".join(f"- {line}" for line in which_to_pick(found, names)),
      criterion_sentence(found, names),
      "### Every arm", table(summary, found, names),
      "### rho and knob, chosen on validation",
      "Each cheaper ascent and fast-path arm starts from a grid of rho and grows it until "
      "the best value is bracketed (`experiments/rho_search.py`); a family's knob (k, p or "
      "the batch fraction) is the one whose chosen rho validates best.",
      selection_table(summary, cost),
      "![accuracy vs cost](../experiments/results/figures/label_noise/accuracy_vs_cost.png)"])


def render(text: str, summary: dict | None, cost: dict[str, float], names: dict) -> str:
  start, end = text.index(START), text.index(END)
  return (text[:start + len(START)] + "\n\n" + section(summary, cost, names) + "\n\n"
          + text[end:])
