"""Every figure command runs end to end and writes a PNG and its JSON."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.analysis import accuracy_vs_sparsity
from experiments.analysis import convergence
from experiments.analysis import demo
from experiments.analysis import gradient_ratio
from experiments.analysis import hessian
from experiments.analysis import landscape
from experiments.analysis import trained
from experiments.analysis import training_curves
import experiment_helpers as testing
from experiments import train

DEMO = ["--demo", "--demo-epochs", "2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_outputs(paths):
  png, json_path = paths
  with open(png, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  assert os.path.getsize(png) > 5000
  with open(json_path) as f:
    return json.load(f)


@pytest.mark.slow
def test_gradient_ratio_demo(tmp_path):
  data = _check_outputs(gradient_ratio.main(DEMO + ["--out", str(tmp_path)]))
  assert data["dataset"] == demo.SYNTHETIC
  assert set(data["models"]) == {"sgd", "sam", "ssam-f (50%)"}
  for stats in data["models"].values():
    assert 0 <= stats["fraction_below_zero"] <= 1
    assert sum(stats["counts"]) == stats["num_valid"]


@pytest.mark.slow  # trains the demo models
def test_landscape_demo(tmp_path):
  data = _check_outputs(landscape.main(
      DEMO + ["--num-points", "5", "--chunk-size", "8", "--out", str(tmp_path)]))
  for model in data["models"].values():
    loss = np.array(model["loss"])
    assert loss.shape == (5, 5) and np.all(np.isfinite(loss))
    assert loss[2, 2] == pytest.approx(model["center_loss"], rel=1e-5)


@pytest.mark.slow
def test_hessian_demo(tmp_path):
  data = _check_outputs(hessian.main(
      DEMO + ["--lanczos-steps", "12", "--out", str(tmp_path)]))
  for model in data["models"].values():
    top = model["top_eigenvalues"]
    assert len(top) == 5 and top == sorted(top, reverse=True)
    assert model["lambda1_over_lambdak"] == pytest.approx(top[0] / top[4])


def _write_run(directory, test_accuracies, mask_density=None):
  os.makedirs(directory)
  with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
    for epoch, accuracy in enumerate(test_accuracies, 1):
      record = {"step": 10 * epoch, "epoch": epoch, "train_loss": 1.0 / epoch,
                "train_accuracy": accuracy, "test_loss": 2.0 / epoch,
                "test_accuracy": accuracy}
      if mask_density is not None:
        record["mask_density"] = mask_density
      f.write(json.dumps(record) + "\n")
  return str(directory)


@pytest.fixture
def runs(tmp_path):
  return [
      "sam=" + _write_run(tmp_path / "sam0", [0.5, 0.7]),
      "sam=" + _write_run(tmp_path / "sam1", [0.5, 0.9]),
      "ssam-f=" + _write_run(tmp_path / "f50_0", [0.4, 0.6], mask_density=0.5),
      "ssam-f=" + _write_run(tmp_path / "f50_1", [0.6, 0.8], mask_density=0.5),
      "ssam-f@0.9=" + _write_run(tmp_path / "f90_0", [0.3, 0.75]),
  ]


def test_training_curves_group_over_seeds(tmp_path, runs):
  data = _check_outputs(training_curves.main(
      ["--run", *runs, "--out", str(tmp_path / "out")]))
  groups = data["groups"]
  assert set(groups) == {"sam", "ssam-f (50%)", "ssam-f (90%)"}
  sam = groups["sam"]["test_accuracy"]
  assert sam["epoch"] == [1, 2] and sam["num_runs"] == 2
  np.testing.assert_allclose(sam["mean"], [0.5, 0.8])
  np.testing.assert_allclose(sam["std"], [0.0, 0.1 * np.sqrt(2)])  # ddof 1


def test_accuracy_vs_sparsity_uses_the_last_epoch_in_percent(tmp_path, runs):
  data = _check_outputs(accuracy_vs_sparsity.main(
      ["--run", *runs, "--out", str(tmp_path / "out")]))
  assert data["dense"]["sam"]["mean"] == pytest.approx(80.0)
  points = data["sparse"]["ssam-f"]
  assert [p["sparsity"] for p in points] == [0.5, 0.9]
  assert points[0]["mean"] == pytest.approx(70.0)
  assert points[0]["std"] == pytest.approx(10 * np.sqrt(2))  # ddof 1
  assert points[1]["n"] == 1


@pytest.mark.slow  # trains the demo models
def test_metrics_figures_with_demo_runs(tmp_path):
  demo_args = DEMO + ["--demo-seeds", "1"]
  data = _check_outputs(training_curves.main(demo_args + ["--out", str(tmp_path)]))
  assert data["dataset"] == demo.SYNTHETIC and len(data["groups"]) == 4
  data = _check_outputs(accuracy_vs_sparsity.main(
      demo_args + ["--demo-sparsities", "0.5", "--out", str(tmp_path)]))
  assert set(data["sparse"]) == {"ssam-f", "ssam-d"} and "sam" in data["dense"]


@pytest.mark.slow
def test_convergence_command(tmp_path):
  data = _check_outputs(convergence.main(
      ["--num-steps", "300", "--num-seeds", "2", "--optimizers",
       "sam,ssam-f-accumulated", "--out", str(tmp_path)]))
  assert set(data["curves"]) == {"sam", "ssam-f-accumulated"}
  for name, value in data["estimates"].items():
    assert 0 < value <= data["analytic_bounds"][name]
  assert data["theorem2_condition_rho0_le_G_eta0_over_2"]


def test_module_entry_point(tmp_path, runs):
  subprocess.run([sys.executable, "-m", "experiments.analysis.training_curves",
                  "--run", *runs, "--out", str(tmp_path / "cli")],
                 cwd=ROOT, check=True, capture_output=True)
  assert os.path.exists(tmp_path / "cli" / "fig2_training_curves.png")


@pytest.mark.slow  # trains a real run first; -m slow runs it
@testing.requires_fashion_mnist
def test_figure_commands_read_training_program_checkpoints(tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(testing.tiny_config(optimizer="sam", num_epochs=1), workdir)
  model = trained.load_checkpoint(workdir, "sam", num_examples=64)
  assert model.name == "sam" and model.dataset == "fashion_mnist"
  assert np.isfinite(float(model.loss_fn(model.params)))
  png, data = landscape.main(["--checkpoint", f"sam={workdir}", "--num-points", "3",
                              "--out", str(tmp_path / "figures")])
  assert os.path.getsize(png) > 0 and os.path.getsize(data) > 0


def test_loading_a_directory_without_a_run_says_so(tmp_path):
  with pytest.raises(FileNotFoundError):
    trained.load_checkpoint(str(tmp_path), "sam")
