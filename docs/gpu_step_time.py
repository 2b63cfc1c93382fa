"""The GPU step-time parts of docs/results.md and the README, for generate_results.py.

Source: ``benchmarks/results/gpu_step_time.json`` and ``gpu_control_flow.json``,
made by ``scripts/gpu_suite.sh``.
"""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
GPU_STEP_TIME = ROOT / "benchmarks" / "results" / "gpu_step_time.json"
GPU_CONTROL_FLOW = ROOT / "benchmarks" / "results" / "gpu_control_flow.json"
LAST_BLOCK_ROW = "ssam-F tensorwise s=0.9 fast path, last block only"


def results_section() -> list[str]:
  """Step time of every optimizer on a GPU, from ``scripts/gpu_suite.sh``."""
  if not GPU_STEP_TIME.exists():
    return []
  report = json.loads(GPU_STEP_TIME.read_text())
  results = report["results"]
  by_model = [{row["optimizer"]: row for row in result["rows"]} for result in results]
  names = list(dict.fromkeys(name for rows in by_model for name in rows))
  header = "| optimizer | " + " | ".join(
      f"{r['model']}: ms | x SGD | x SGD FLOPs" for r in results) + " |"
  lines = [header, "| --- |" + " ---: | ---: | ---: |" * len(results)]
  for name in names:
    cells = []
    for rows in by_model:
      row = rows.get(name)
      cells.append(f"{1e3 * row['median_s']:.2f} | {row['ratio_to_sgd']:.2f} | "
                   f"{row['flops_ratio_to_sgd']:.2f}" if row else " | | ")
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
             "`OUT=benchmarks/results bash scripts/gpu_suite.sh` reruns them.", "",
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
             "the last block it costs " + ", ".join(
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
           "SSAM-F 99 %": "ssam-F unstructured s=0.99",
           "SSAM-F with only the last block perturbable (tensor-wise fast path, the "
           "variant `ssam-f tensorwise s=0.9 last block`)": LAST_BLOCK_ROW}
  costs = ", ".join(f"{label} {rows[name]:.2f}x" for label, name in shown.items()
                    if name in rows)
  return (f"\n\nStep time on an {report['device']}, ResNet-18 at batch "
          f"{result['batch_size']}, as a multiple of SGD's: {costs}. Both gradients stay "
          "dense, so a mask alone does not shorten the step.")
