"""The committed figures say what they draw: units, intervals, n, regime, scales."""

import json
import math

import matplotlib
import numpy as np
import pytest

from experiments import sweep
from experiments import sweep_arms
from experiments.analysis import accuracy_vs_sparsity
from experiments.analysis import error_bars
from experiments.analysis import evidence
from experiments.analysis import frontier
from experiments.analysis import gradient_ratio
from experiments.analysis import hessian
from experiments.analysis import landscape
from experiments.analysis import output


@pytest.fixture
def saved(monkeypatch):
  """The figures the plot functions save, kept open for inspection."""
  figures = []

  def keep(figure, path):
    figures.append(figure)
    return path

  monkeypatch.setattr(output, "save_figure", keep)
  yield figures
  for figure in figures:
    matplotlib.pyplot.close(figure)


def test_half_width_is_the_t_interval_of_the_mean():
  # t_{0.975, 2} = 4.302653 and t_{0.975, 4} = 2.776445 (tables of Student's t).
  assert error_bars.half_width(1.0, 3) == pytest.approx(4.302653 / math.sqrt(3))
  assert error_bars.half_width(2.0, 5) == pytest.approx(2.776445 * 2 / math.sqrt(5))
  assert error_bars.half_width(1.0, 1) == 0.0
  assert error_bars.seeds([3, 5, 3]) == "n = 3-5" and error_bars.seeds([3]) == "n = 3"


def _bar_half_widths(axis):
  """Half the length of each error bar drawn on ``axis``."""
  widths = []
  for container in axis.containers:
    for collection in container.lines[2]:
      widths += [abs(seg[1][1] - seg[0][1]) / 2 for seg in collection.get_segments()]
  return widths


def test_fig3_draws_95_intervals_with_n_in_percent(saved):
  results = {"metric": "test_accuracy",
             "sparse": {"Fisher (SSAM-F)": [
                 {"sparsity": 0.5, "mean": 84.0, "std": 0.5, "n": 5},
                 {"sparsity": 0.9, "mean": 80.0, "std": 1.0, "n": 3}]},
             "dense": {"SAM": {"mean": 84.3, "std": 0.4, "n": 5}}}
  accuracy_vs_sparsity.plot(results, "unused.png", "R2: label noise")
  axis = saved[0].axes[0]
  assert axis.get_ylabel() == "test accuracy (%)"
  assert axis.get_title() == "R2: label noise"
  np.testing.assert_allclose(sorted(_bar_half_widths(axis)), sorted(
      [error_bars.half_width(0.5, 5), error_bars.half_width(1.0, 3)]))
  legend = [text.get_text() for text in axis.get_legend().get_texts()]
  assert legend == ["SAM (dense, n = 5)", "Fisher (SSAM-F) (n = 3-5)"]
  assert any("95 %" in text.get_text() for text in saved[0].texts)


def _point(arm, cost, mean, n, display=None, std=0.5):
  return {"arm": arm, "display": display or arm, "metric": frontier.METRIC,
          "cost": cost, "mean": mean, "std": std, "n": n}


def test_pareto_front_keeps_the_undominated_points_with_every_seed():
  sgd = _point("sgd", 1.0, 80.6, 5)
  sam = _point("sam", 1.9, 84.4, 5)
  cheap = _point("sam every 10 own rho", 1.1, 83.0, 5)
  dominated = _point("ssam-f s=0.5", 1.9, 84.2, 5)  # SAM's cost, lower mean
  tie_cost = _point("sam looksam 10 own rho", 1.1, 82.0, 5)  # same cost, lower mean
  one_seed = _point("sam msam own rho", 1.0, 90.0, 1)  # would dominate, one seed
  sgd_final = {**_point("sgd", 1.0, 90.5, 5), "metric": "test_accuracy"}  # drawn only
  front = frontier.pareto_front([sam, dominated, sgd, tie_cost, cheap, one_seed, sgd_final], 5)
  assert front == [sgd, cheap, sam]
  twin = _point("sam own rho", 1.9, 84.4, 5)  # equal on both axes: neither dominates
  assert frontier.pareto_front([sam, twin, sgd], 5) == [sgd, sam, twin]


def test_frontier_points_add_sgd_final_epoch_and_skip_arms_without_cost():
  stats = {"mean": 80.0, "std": 1.0, "n": 5}
  arms = {"sgd": {"test_accuracy": {**stats, "mean": 71.0},
                  frontier.METRIC: stats},
          "sam": {"test_accuracy": stats, frontier.METRIC: {**stats, "mean": 84.0}},
          "ssam-f s=0.5": {"test_accuracy": stats, frontier.METRIC: stats},
          "ssam-d s=0.9": {"test_accuracy": stats, frontier.METRIC: stats}}
  found = frontier.points(arms, {}, {"sgd": 1.0, "sam": 1.9, "ssam-d s=0.9": 1.9})
  assert [(p["display"], p["metric"], p["mean"]) for p in found] == [
      ("sgd", frontier.METRIC, 80.0), (frontier.SGD_FINAL, "test_accuracy", 71.0),
      ("sam", frontier.METRIC, 84.0)]  # ssam-d s=0.9 is no frontier arm


def test_frontier_names_arms_in_a_legend_and_hollows_points_with_fewer_seeds(saved):
  points = [
      _point("sam", 1.9, 84.3, 5, std=0.4),
      _point("ssam-f tensorwise s=0.9 last block", 1.3, 75.5, 3,
             display="ssam-f tensorwise (BatchNorm_2 + Dense_0, 0.827 %)", std=0.8)]
  frontier.plot(points, points[:1], 5, "unused.png", "R2: label noise")
  axis = saved[0].axes[0]
  assert not axis.texts  # no inline labels to overlap
  legend = axis.get_legend()
  assert [t.get_text() for t in legend.get_texts()] == [
      "Pareto front of the means (n >= 5)", "sam (n = 5)",
      "ssam-f tensorwise (BatchNorm_2 + Dense_0, 0.827 %) (n = 3)"]
  assert "colour" in legend.get_title().get_text()
  assert axis.get_ylabel() == "early-stopped test accuracy (%)"
  np.testing.assert_allclose(sorted(_bar_half_widths(axis)), sorted(
      [error_bars.half_width(0.4, 5), error_bars.half_width(0.8, 3)]))
  markers = [container.lines[0] for container in axis.containers]
  assert [m.get_markerfacecolor() for m in markers][1] == "none"
  assert markers[0].get_markerfacecolor() != "none"


def test_an_arm_at_its_own_rho_stands_apart_from_its_twin_at_sams():
  at_sams = frontier.style(sweep_arms.arm("ssam-f tensorwise s=0.9 last block"))
  own = frontier.style(sweep_arms.arm("ssam-f tensorwise s=0.9 own rho last block"))
  assert (own["color"], own["marker"]) == (at_sams["color"], at_sams["marker"])
  assert "markeredgecolor" not in at_sams
  # The edge shows on every family's colour, SAM's black included.
  assert own["markeredgecolor"] not in frontier.FAMILY_COLORS.values()


def _landscape_model(scale):
  x = np.linspace(-1, 1, 3)
  return {"x": x, "y": x, "loss": scale * (x[None, :] ** 2 + x[:, None] ** 2) + 1}


def test_landscape_has_one_colour_scale_with_its_colourbar_and_axis_labels(saved):
  landscape.plot({"sgd": _landscape_model(3.0), "sam": _landscape_model(1.0)},
                 "unused.png", "R1")
  figure = saved[0]
  colourbars = [a for a in figure.axes if a.get_ylabel().startswith("training loss")
                and a.name == "rectilinear"]
  assert len(colourbars) == 1
  assert colourbars[0].get_ylim() == pytest.approx((1.0, 7.0))  # both models' range
  contour_axes = [a for a in figure.axes if a.get_title() in ("sgd", "sam")]
  assert all("direction 1" in a.get_xlabel() for a in contour_axes)
  assert "direction 2" in contour_axes[0].get_ylabel()


def _model_jsons():
  ratio = {"bin_edges": [-1.0, 0.0, 1.0], "counts": [3, 1], "num_valid": 4,
           "fraction_below_zero": 0.75}
  surface = {k: np.asarray(v).tolist() for k, v in _landscape_model(1.0).items()}
  spectrum = {"grid": [0.0, 1.0, 2.0], "density": [0.1, 0.5, 0.1],
              "top_eigenvalues": [5.0, 4.0, 3.0, 2.0, 1.0], "k": 5,
              "lambda1_over_lambdak": 5.0}
  return {gradient_ratio: {"figure": "Fig. 1", "rho": 0.05, "dataset": "fashion_mnist",
                           "models": {"sgd": ratio, "ssam-f": ratio}},
          landscape: {"figure": "Fig. 4", "dataset": "fashion_mnist",
                      "models": {"sgd": surface, "ssam-f": surface}},
          hessian: {"figure": "Fig. 5", "dataset": "fashion_mnist",
                    "models": {"sgd": spectrum, "ssam-f": spectrum}}}


def test_redraw_titles_the_regime_and_names_models_by_arm(tmp_path, monkeypatch, saved):
  monkeypatch.setattr(evidence, "FIGURES", tmp_path)
  (tmp_path / "overfit").mkdir()
  for module, data in _model_jsons().items():
    (tmp_path / "overfit" / module.JSON).write_text(json.dumps(data))
  evidence.redraw_model_figures("overfit")
  regime = sweep.REGIMES["overfit"].description
  for figure in saved:
    title = figure._suptitle or figure.axes[0].title  # pylint: disable=protected-access
    assert title.get_text().startswith(regime)
  for module in evidence.MODEL_FIGURES:
    data = json.loads((tmp_path / "overfit" / module.JSON).read_text())
    assert list(data["models"]) == ["sgd", "ssam-f s=0.5"]
