"""The GPU step-time parts of docs/results.md and the README, for generate_results.py.

Source: ``benchmarks/results/gpu_step_time.json`` and ``gpu_control_flow.json``,
made by ``scripts/gpu_suite.sh``. A tensor-wise row is named by the tensors it
perturbs (``experiments.tensorwise_masks.describe``) and their share of the
parameters: the row's ``perturbed_tensors``, or, where the GPU file has no
list (older files record it for the fast path only), the same row's list from
its first step on CPU (``cpu_tensorwise_rows.json``, made by
``python -m benchmarks.step_time --only tensorwise --batch 128``, see its
``command``). Where both files list a row's tensors, they must agree.
"""

import json
import pathlib

import numpy as np

from experiments import models as models_lib
from experiments import sweep
from experiments import tensorwise_masks

ROOT = pathlib.Path(__file__).resolve().parents[1]
GPU_STEP_TIME = ROOT / "benchmarks" / "results" / "gpu_step_time.json"
GPU_CONTROL_FLOW = ROOT / "benchmarks" / "results" / "gpu_control_flow.json"
CPU_TENSORWISE_ROWS = ROOT / "benchmarks" / "results" / "cpu_tensorwise_rows.json"
LAST_BLOCK_ROW = "ssam-F tensorwise s=0.9 fast path, last block only"


def leaf_sizes(model: str) -> dict[str, int]:
  """Every leaf's size of a benchmark model (``benchmarks.step_time.MODELS``),
  in the params' order, from shapes alone."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from benchmarks import step_time
  from experiments import models
  from ssam_jax import leaf_filters
  # pylint: enable=g-import-not-at-top
  shape, classes, _ = step_time.MODELS[model]
  network = models.create_model(model, classes)
  params = jax.eval_shape(lambda: network.init(
      jax.random.key(0), jnp.zeros((1,) + shape), train=False))["params"]
  return {path: int(np.prod(leaf.shape)) for path, leaf in zip(
      leaf_filters.leaf_paths(params), jax.tree.leaves(params))}


def perturbed_tensors(results: list[dict]) -> dict[tuple[str, str], list[str]]:
  """``{(model, row): tensors}`` of every tensor-wise row, from the GPU file or,
  where it has no list, from the CPU one."""
  cpu = {}
  if CPU_TENSORWISE_ROWS.exists():
    cpu = {(result["model"], row["optimizer"]): row["perturbed_tensors"]
           for result in json.loads(CPU_TENSORWISE_ROWS.read_text())["results"]
           for row in result["rows"] if row.get("perturbed_tensors")}
  out = {}
  for result in results:
    for row in result["rows"]:
      key = (result["model"], row["optimizer"])
      gpu = row.get("perturbed_tensors")
      if gpu and key in cpu and sorted(gpu) != sorted(cpu[key]):
        raise ValueError(f"{key}: the GPU file perturbs {gpu}, the CPU one {cpu[key]}.")
      if gpu or key in cpu:
        out[key] = gpu or cpu[key]
  return out


def perturbs(results: list[dict]) -> dict[tuple[str, str], str]:
  """``{(model, row): "BatchNorm_2 + Dense_0, 3.27 %"}`` of every tensor-wise row."""
  tensors = perturbed_tensors(results)
  sizes = {r["model"]: leaf_sizes(r["model"]) for r in results
           if any(model == r["model"] for model, _ in tensors)}
  for result in results:
    if result["model"] in sizes and sum(sizes[result["model"]].values()) != result["num_params"]:
      raise ValueError(f"{result['model']}: {sum(sizes[result['model']].values())} "
                       f"parameters here, {result['num_params']} in the GPU file.")
  return {(model, row): (
      f"{tensorwise_masks.describe(found, list(sizes[model]))}, "
      f"{tensorwise_masks.percent(tensorwise_masks.density(found, sizes[model]))}")
          for (model, row), found in tensors.items()}


def results_section() -> list[str]:
  """Step time of every optimizer on a GPU, from ``scripts/gpu_suite.sh``."""
  if not GPU_STEP_TIME.exists():
    return []
  report = json.loads(GPU_STEP_TIME.read_text())
  results = report["results"]
  by_model = [{row["optimizer"]: row for row in result["rows"]} for result in results]
  names = list(dict.fromkeys(name for rows in by_model for name in rows))
  measured = perturbs(results)
  header = "| optimizer | " + " | ".join(
      f"{r['model']}: ms | x SGD | x SGD FLOPs | perturbs" for r in results) + " |"
  lines = [header, "| --- |" + " ---: | ---: | ---: | --- |" * len(results)]
  for name in names:
    cells = []
    for result, rows in zip(results, by_model):
      row = rows.get(name)
      what = measured.get((result["model"], name),
                          "not recorded" if "tensorwise" in name else "")
      cells.append(f"{1e3 * row['median_s']:.2f} | {row['ratio_to_sgd']:.2f} | "
                   f"{row['flops_ratio_to_sgd']:.2f} | {what}" if row else " | | | ")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  refresh = "; ".join(
      f"{r['model']}: " + ", ".join(
          f"{row['optimizer'].split()[0]} {row['refresh_cost_in_steps']:.1f}"
          for row in r["rows"] if "refresh_cost_in_steps" in row)
      for r in results)
  models = ", ".join(f"{r['model']} ({r['num_params'] / 1e6:.2f} M parameters, batch "
                     f"{r['batch_size']}, {r['repetitions']} repetitions)" for r in results)
  section = ["## Step time on a GPU", "",
             f"One train step of the training program on an {report['device']} (JAX "
             f"{report['jax']}), median over repetitions interleaved across optimizers, "
             f"as a ratio to SGD timed in the same process: {models}. Steps without a "
             "mask refresh; the refresh rows refresh on every step. FLOPs are XLA's "
             "count for the compiled step. "
             "Commands in `benchmarks/results/gpu_step_time.json`; "
             "`OUT=benchmarks/results bash scripts/gpu_suite.sh` reruns them. A "
             "tensor-wise row's budget (`s=0.9`: at most 10 % of the parameters) is not "
             "what it perturbs: the perturbs column names the tensors its mask takes "
             "whole (Flax's module names) and their share of the parameters, from the "
             "row's `perturbed_tensors` or, where the GPU file lists none, from the same "
             "row's first step on CPU (`benchmarks/results/cpu_tensorwise_rows.json`). "
             f"small_cnn is the training program's at its default width, "
             f"{models_lib.SmallCNN.width}, where R1 and R2 train width "
             f"{sweep.regime_config('overfit').model_width}, so the same "
             "tensors are a larger share of its parameters.", "",
             "\n".join(lines), "",
             f"One mask refresh costs, in steps without one: {refresh}. Refreshed once an "
             "epoch (the training program's default, `mask_update_epochs=1`), it adds "
             "that cost divided by the steps in an epoch, e.g. 390 for CIFAR-10 at batch "
             "128.", "",
             "A mask does not make the step cheaper: both gradients are dense, so SSAM "
             "costs SAM's step plus the mask's elementwise work, whatever the sparsity, "
             "and the paper's FLOPs ratios (1.65x SGD at 50 %, 1.30x at 99 %) assume "
             "sparse kernels that dense accelerators do not run. Time falls only with the "
             "tensorwise fast path, where the first backward pass (the gradient that "
             "builds the perturbation) stops at the lowest perturbed tensor. Confined to "
             "the last block, it perturbs only the tensors its row names (" + "; ".join(
                 f"{r['model']}: {measured[r['model'], LAST_BLOCK_ROW]}"
                 for r in results if (r["model"], LAST_BLOCK_ROW) in measured)
             + ") and costs " + ", ".join(
                 f"{r['model']} {rows[LAST_BLOCK_ROW]['ratio_to_sgd']:.2f}x"
                 for r, rows in zip(results, by_model) if LAST_BLOCK_ROW in rows)
             + " SGD's step (see [Choosing a mask](masks.md)).", ""]
  if GPU_CONTROL_FLOW.exists():
    rows = json.loads(GPU_CONTROL_FLOW.read_text())["rows"]
    section += ["The empirical Fisher (small CNN, 128 examples), as a ratio to computing "
                "it unrolled: " + ", ".join(f"{r['variant']} {r['ratio_to_unrolled']:.2f}x"
                                            for r in rows[1:])
                + " on this GPU (`gpu_control_flow.json`). Off CPU the training program "
                "therefore keeps the loop, which bounds the memory of per-example "
                "gradients.", ""]
  return section


def readme_sentence() -> str:
  """One sentence of what a step costs on a GPU, for the README."""
  if not GPU_STEP_TIME.exists():
    return ""
  report = json.loads(GPU_STEP_TIME.read_text())
  result = next((r for r in report["results"] if r["model"] == "resnet18"), None)
  if result is None:
    return ""
  rows = {row["optimizer"]: row["ratio_to_sgd"] for row in result["rows"]}
  shown = {"SAM": "sam", "SSAM-F 50 %": "ssam-F unstructured s=0.5",
           "SSAM-F 99 %": "ssam-F unstructured s=0.99"}
  last_block = perturbs([result]).get((result["model"], LAST_BLOCK_ROW))
  if last_block:
    shown["SSAM-F tensor-wise with the fast path, confined to the last block (it "
          f"perturbs {last_block} of the parameters)"] = LAST_BLOCK_ROW
  costs = ", ".join(f"{label} {rows[name]:.2f}x" for label, name in shown.items()
                    if name in rows)
  return (f"\n\nStep time on an {report['device']}, ResNet-18 at batch "
          f"{result['batch_size']}, as a multiple of SGD's: {costs}. Both gradients stay "
          "dense, so a mask alone does not shorten the step.")
