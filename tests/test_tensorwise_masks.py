"""Tensor-wise arms are named by what they perturb, measured, not by their budget."""

import json
import pathlib
import sys

import jax
import pytest

from experiments import sweep
from experiments import sweep_arms
from experiments import tensorwise_masks

REPO = pathlib.Path(__file__).resolve().parents[1]
# The small CNN's leaves (width 64), in the params' order.
SMALL_CNN = {"BatchNorm_0/bias": 64, "BatchNorm_0/scale": 64, "BatchNorm_1/bias": 128,
             "BatchNorm_1/scale": 128, "BatchNorm_2/bias": 256, "BatchNorm_2/scale": 256,
             "Conv_0/kernel": 576, "Conv_1/kernel": 73728, "Conv_2/kernel": 294912,
             "Dense_0/bias": 10, "Dense_0/kernel": 2560}
BATCH_NORM = [path for path in SMALL_CNN if path.startswith("BatchNorm")]


@pytest.mark.parametrize("tensors, words", [
    (BATCH_NORM + ["Conv_0/kernel", "Dense_0/bias", "Dense_0/kernel"],
     "all BatchNorm + Conv_0 + Dense_0"),
    (["BatchNorm_2/bias", "BatchNorm_2/scale", "Dense_0/bias", "Dense_0/kernel"],
     "BatchNorm_2 + Dense_0"),
    # A module perturbed in part is named leaf by leaf.
    (["Conv_0/kernel", "Dense_0/kernel"], "Conv_0 + Dense_0/kernel"),
    (BATCH_NORM[:4], "BatchNorm_0 + BatchNorm_1"),
    ([], "nothing"),
])
def test_describe_names_modules_by_kind(tensors, words):
  assert tensorwise_masks.describe(tensors, list(SMALL_CNN)) == words


def test_describe_counts_a_kind_taken_in_part():
  leaves = [f"Block_{b}/Conv_{c}/kernel" for b in range(2) for c in range(2)] + [
      "Dense_0/kernel"]
  taken = leaves[:3]
  assert tensorwise_masks.describe(taken, leaves) == "3 of 4 Conv"


def test_describe_rejects_tensors_the_model_does_not_have():
  with pytest.raises(ValueError, match="Conv_9"):
    tensorwise_masks.describe(["Conv_9/kernel"], list(SMALL_CNN))


def test_density_and_percent():
  tensors = ["BatchNorm_2/bias", "BatchNorm_2/scale", "Dense_0/bias", "Dense_0/kernel"]
  fraction = tensorwise_masks.density(tensors, SMALL_CNN)
  assert fraction == 3082 / 372682
  assert tensorwise_masks.percent(fraction) == "0.827 %"


def _rows(density, seeds=(0, 1)):
  return [{"seed": seed, "epochs": [{"mask_density": density}] * 3} for seed in seeds]


LAST_BLOCK = "ssam-f tensorwise s=0.9 last block"
MASKS = {"regimes": {"overfit": {"leaves": SMALL_CNN, "arms": {LAST_BLOCK: {
    "tensors": ["BatchNorm_2/bias", "BatchNorm_2/scale", "Dense_0/bias",
                "Dense_0/kernel"]}}}}}


def test_perturbs_joins_the_measured_tensors_and_the_recorded_density():
  rows = {"sam": _rows(None)[:0], LAST_BLOCK: _rows(3082 / 372682)}
  found = tensorwise_masks.perturbs("overfit", rows, MASKS)
  assert found == {LAST_BLOCK: "BatchNorm_2 + Dense_0, 0.827 %"}
  names = tensorwise_masks.display_labels("overfit", rows, MASKS)
  assert names == {"sam": "sam",
                   LAST_BLOCK: "ssam-f tensorwise (BatchNorm_2 + Dense_0, 0.827 %)"}


def test_perturbs_refuses_tensors_that_the_records_contradict():
  with pytest.raises(ValueError, match="record"):
    tensorwise_masks.perturbs("overfit", {LAST_BLOCK: _rows(0.01085)}, MASKS)


def test_perturbs_refuses_densities_that_change_during_training():
  rows = _rows(3082 / 372682)
  rows[1]["epochs"] = [{"mask_density": 0.5}]
  with pytest.raises(ValueError, match="change"):
    tensorwise_masks.perturbs("overfit", {LAST_BLOCK: rows}, MASKS)


def test_perturbs_says_how_to_measure_a_missing_arm():
  with pytest.raises(ValueError, match="experiments.tensorwise_masks --regime overfit"):
    tensorwise_masks.perturbs(
        "overfit", {"ssam-f tensorwise s=0.9": _rows(0.01)}, MASKS)


def test_display_labels_name_what_a_tensorwise_arm_perturbs():
  assert sweep_arms.SAM.display_label() == "sam"
  assert sweep_arms.arm("sgd 2x epochs").display_label("ignored") == "sgd 2x epochs"
  arm = sweep_arms.arm(LAST_BLOCK)
  assert arm.display_label("BatchNorm_2 + Dense_0, 0.827 %") == (
      "ssam-f tensorwise (BatchNorm_2 + Dense_0, 0.827 %)")
  with pytest.raises(ValueError, match="perturbs"):
    arm.display_label()


@pytest.mark.parametrize("regime", ["overfit", "label_noise", "augmented"])
def test_committed_measurements_match_the_committed_records(regime):
  """Every tensor-wise arm with runs has measured tensors, and they add up to
  the density every epoch of every seed recorded."""
  rows = sweep.rows_by_arm(regime)
  found = tensorwise_masks.perturbs(regime, rows)
  tensorwise = {label for label, arm_rows in rows.items()
                if arm_rows and sweep_arms.arm(label).tensorwise}
  assert tensorwise and set(found) == tensorwise
  # The budget s=0.9 is not what they perturb: about 1 %, not 10 %.
  for label in tensorwise - {"ssam-f tensorwise s=0.5"}:
    assert tensorwise_masks.recorded_density(rows[label]) < 0.05, label


def test_results_page_names_tensorwise_arms_by_what_they_perturb():
  sys.path.insert(0, str(REPO / "docs"))
  import efficient_section  # pylint: disable=g-import-not-at-top
  import generate_results  # pylint: disable=g-import-not-at-top
  import readme_section  # pylint: disable=g-import-not-at-top
  page = generate_results.render()
  assert "| ssam-f tensorwise s=0.9" not in page
  assert "| ssam-f tensorwise (" in page
  readme = readme_section.block(efficient_section.inputs())
  assert "tensorwise s=0.9 last block |" not in readme


def test_gpu_rows_name_their_tensors_and_the_two_files_agree():
  sys.path.insert(0, str(REPO / "docs"))
  import gpu_step_time  # pylint: disable=g-import-not-at-top
  results = json.loads(gpu_step_time.GPU_STEP_TIME.read_text())["results"]
  found = gpu_step_time.perturbs(results)  # raises if the GPU and CPU lists differ
  tensorwise = {(r["model"], row["optimizer"]) for r in results for row in r["rows"]
                if "tensorwise" in row["optimizer"]}
  assert set(found) == tensorwise
  last_block = found["resnet18", gpu_step_time.LAST_BLOCK_ROW]
  assert "Conv" not in last_block and "Dense_0" in last_block


@pytest.mark.slow  # compiles a benchmark step
def test_benchmark_rows_record_what_every_tensorwise_mask_perturbs():
  """Not only the fast-path rows: the GPU table names every tensor-wise row."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from ssam_jax import leaf_filters  # pylint: disable=g-import-not-at-top
  bench = harness.ModelBench(models.create_model("small_cnn", 10, 4), (28, 28, 1), 10, 8)
  sizes = dict(zip(leaf_filters.leaf_paths(bench.params),
                   (int(x.size) for x in jax.tree.leaves(bench.params))))
  row = harness.RunningStep(bench, harness.OptimizerSpec(
      "t", "ssam-f", "tensorwise", 0.9))
  assert row.perturbed is None  # the step itself takes both full gradients
  assert row.perturbed_leaf_names
  assert 0 < tensorwise_masks.density(row.perturbed_leaf_names, sizes) <= 0.1
