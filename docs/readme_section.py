"""README.md's results block, between ``<!-- RESULTS TABLE -->`` and
``<!-- END RESULTS TABLE -->``.

One table, of the regime where SAM beats early-stopped SGD after Holm's
correction (a regime that cannot separate them gets its verdict in one
sentence and no table: no SSAM verdict is drawn from it). The table holds
the arms at SAM's rho (``HEADLINE_ARMS``), the radius-controlled arms at
their own rho (``results_reading.RADIUS_LABELS``) and the cheaper ascents
that give SAM's benefit at close to SGD's cost (``efficient_section``), each
with its rho, radius, accuracies, paired differences and cost; the sentences
below it name the arms by what their intervals support. docs/results.md has
everything else.
"""

from efficient_section import readme_paragraph, rows  # pylint: disable=g-importing-member
import gpu_step_time
from radius_section import contrast_sentence, radius_cell  # pylint: disable=g-importing-member
from results_reading import (  # pylint: disable=g-importing-member
    EARLY, FINAL, LABELS, METRIC_NAMES, RADIUS_LABELS, compared_metric, display_names,
    family_size, format_paired, kept_sentence, load_summary, paired, perturbs_of,
    regime_name, sam_vs_sgd, separates, stat)

START, END = "<!-- RESULTS TABLE -->", "<!-- END RESULTS TABLE -->"
REGIMES = ("overfit", "label_noise")
# The arms at SAM's rho that the README shows, baselines first.
HEADLINE_ARMS = ("sgd", "sam", "ssam-f s=0.5", "ssam-d s=0.5", "ssam-random s=0.5",
                 "ssam-f s=0.9", "ssam-d s=0.9", "ssam-random s=0.9",
                 "ssam-f s=0.99", "ssam-d s=0.99", "ssam-random s=0.99",
                 "ssam-f tensorwise s=0.9 last block")


def _radius(label: str, entry: dict) -> str:
  """Mean ||eps|| over training; SAM's is its rho."""
  if "effective_radius" in entry:
    return radius_cell(entry)
  return f"{entry['rho']:g}" if label == "sam" else ""


def table(summary: dict, labels, names: dict, costs: dict) -> str:
  """One row per arm of ``labels`` with runs: rho, mean ||eps||, n, test
  accuracies, the paired differences to SAM and SGD in the compared metric
  (in bold where they survive Holm's correction) and the cost."""
  metric = METRIC_NAMES[compared_metric(summary)]
  lines = [f"| arm | rho | mean ‖eps‖ | n | final test (%) | {metric} test (%) | "
           f"vs SAM | vs {metric} SGD | cost (x SGD) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
  for label in labels:
    entry = summary["arms"].get(label)
    if not entry:
      continue
    rho, cost = entry.get("rho"), costs.get(label)
    lines.append(
        f"| {names.get(label, label)} | {'' if rho is None else f'{rho:g}'} | "
        f"{_radius(label, entry)} | {entry[FINAL]['n']} | {stat(entry, FINAL)} | "
        f"{stat(entry, compared_metric(summary))} | "
        + " | ".join(format_paired(paired(entry, ref, compared_metric(summary)), False)
                     for ref in ("sam", "sgd"))
        + f" | {'' if cost is None else f'{cost:.2f}'} |")
  return "\n".join(lines)


def regime(summary: dict, efficient: tuple) -> str:
  """A regime's part: its table and what the intervals support, or, where
  SAM and SGD do not separate, that verdict alone."""
  head = (f"**{summary['description']}**, SAM's rho {summary['selected_rho']:g}; Holm's "
          f"family: {family_size(summary, compared_metric(summary))} paired comparisons.")
  if not separates(summary):
    anchor = "-".join(summary["description"].lower().replace(":", "").replace(",", "")
                      .split())
    return (f"{head} {sam_vs_sgd(summary)} Its table is in "
            f"[docs/results.md](docs/results.md#{anchor}).")
  names = display_names(summary["arms"], perturbs_of(summary["regime"], summary))
  cheap = []
  if efficient[0] is not None and efficient[0]["regime"] == summary["regime"]:
    cheap = [row["label"] for row in rows(*efficient[:2], efficient[3]) if row["meets"]]
  labels = [*HEADLINE_ARMS, *RADIUS_LABELS, *cheap]
  costs = efficient[1] if efficient[0] is not None else {}
  shown = [label for label in labels
           if label not in ("sam", "sgd") and label in summary["arms"]]
  return "\n\n".join(filter(None, [
      head, table(summary, labels, names, costs), sam_vs_sgd(summary),
      kept_sentence(summary, shown, names, intervals=False), contrast_sentence(summary)]))


def block(efficient: tuple) -> str:
  """The README's results block; ``efficient``: ``efficient_section.inputs()``."""
  summaries = [summary for name in REGIMES if (summary := load_summary(name)) is not None]
  if not summaries:
    return "No results are committed; see docs/results.md."
  summaries.sort(key=lambda summary: not separates(summary))
  settings = summaries[0]["settings"]
  legend = (
      f"Real Fashion-MNIST, a small CNN of width {settings['model_width']}, "
      f"{settings['num_epochs']} epochs on CPU; every rho is chosen on a validation split "
      "carved from the training set. Test accuracy (%), mean ± std over the n seeds: final "
      "at the last epoch, early-stopped at the epoch of best validation accuracy. vs SAM "
      "and vs SGD: the paired difference in early-stopped test accuracy on the seeds both "
      "arms ran, mean [95 % t interval], n; in **bold** where it survives Holm's "
      "correction over the regime's paired comparisons. Only bold differences are stated "
      "as findings; a tie means the interval contains 0, not that the arms are equal. "
      "Mean ‖eps‖: the perturbation's norm averaged over training, where every seed "
      "recorded it. Cost: the whole training run as a multiple of SGD's, timed on CPU "
      "([docs/efficient.md](docs/efficient.md)); blank where not timed. "
      + LABELS.replace("](efficient.md)", "](docs/efficient.md)"))
  return ("\n\n".join([legend, *(regime(summary, efficient) for summary in summaries)])
          + "\n\n[docs/results.md](docs/results.md) has every arm, the final-epoch "
          "differences, the rho grids and the radius-controlled arms' reading."
          + gpu_step_time.readme_sentence() + readme_paragraph(*efficient))


def render(readme: str, efficient: tuple) -> str:
  """``readme`` with its results block rewritten."""
  start, end = readme.index(START), readme.index(END)
  return readme[:start + len(START)] + "\n\n" + block(efficient) + "\n\n" + readme[end:]
