r"""Step time, FLOPs, memory and mask-refresh cost of SGD, SAM and SSAM.

  python -m benchmarks.step_time --models small_cnn,resnet18 --out benchmarks/results/cpu.json
  python -m benchmarks.step_time --ascents --models resnet18 --out FILE

Every ratio is against SGD measured in the same run, with repetitions
interleaved across optimizers. Writes JSON after each model and prints a
Markdown table. ``--ascents`` times the cheaper ascents instead (SAM and
SSAM-F at 50 %, each with every variant of ``harness.ascent_specs``): a
row's step time is the mean over its cycle of steps with and without the
ascent.
"""

import json
import os
import pathlib
import platform
import sys

import jax
import numpy as np

from benchmarks import harness
from experiments import models

MODELS = {  # name: (input shape, classes, default batch)
    "small_cnn": ((28, 28, 1), 10, 128),
    "resnet18": ((32, 32, 3), 10, 32),
    "wrn28_10": ((32, 32, 3), 10, 8),
}
# The leaves of each model's last block and head (Flax's automatic names): the
# "last block only" row confines the Fisher choice to them, so the fast path's
# first backward pass can stop there.
LAST_BLOCK = {
    "small_cnn": r"^(Conv_2|BatchNorm_2|Dense_0)/",
    "resnet18": r"^(BasicBlock_7|Dense_0)/",
    "wrn28_10": r"^(WideBlock_11|BatchNorm_0|Dense_0)/",
}
PAPER_FLOPS_RATIO = {0.5: 1.65, 0.9: 1.42, 0.95: 1.38, 0.98: 1.32, 0.99: 1.30}
# The paper's Table 1 (ResNet-18, CIFAR-10) gives SAM 2x and SSAM 1.65x at 50%,
# 1.42x at 90%, 1.30x at 99% of SGD's training FLOPs, in theory.


def refresh_specs() -> list[harness.OptimizerSpec]:
  return [harness.OptimizerSpec("ssam-F unstructured s=0.5 refresh every step", "ssam-f",
                                "unstructured", 0.5, mask_update_every=1),
          harness.OptimizerSpec("ssam-D unstructured s=0.5 refresh every step", "ssam-d",
                                "unstructured", 0.5, mask_update_every=1)]


def _paper_flops_ratio(built) -> float | None:
  """Table 1 of the paper: SAM 2x SGD's FLOPs, SSAM by sparsity."""
  hp = built.hyperparams
  if hp.ascent != "always" or hp.ascent_batch_fraction != 1:
    return None  # not in the paper
  if built.entry.has_mask:
    return PAPER_FLOPS_RATIO.get(built.hyperparams.sparsity)
  return 2.0 if built.entry.sharpness_aware else 1.0


def ascent_rows() -> list[harness.OptimizerSpec]:
  """SGD, SAM and SSAM-F at 50 %, then each with every cheaper ascent."""
  return [harness.OptimizerSpec("sgd", "sgd"), harness.OptimizerSpec("sam", "sam"),
          harness.OptimizerSpec("ssam-F unstructured s=0.5", "ssam-f",
                                "unstructured", 0.5)] + harness.ascent_specs()


def bench_model(name, batch_size, repetitions, spec_filter, ascents=False):
  input_shape, num_classes, _ = MODELS[name]
  bench = harness.ModelBench(models.create_model(name, num_classes), input_shape,
                             num_classes, batch_size)
  rows = (ascent_rows() if ascents
          else harness.standard_specs(LAST_BLOCK[name]) + refresh_specs())
  specs = [s for s in rows if spec_filter(s.name)]
  runners = {}
  for spec in specs:
    print(f"[{name}] compiling {spec.name}", file=sys.stderr, flush=True)
    runners[spec.name] = harness.RunningStep(bench, spec)
  times = harness.interleaved_times(runners, repetitions)
  sgd = runners["sgd"]
  sgd_time = np.median(times["sgd"])
  rows = []
  for spec_name, runner in runners.items():
    summary = harness.summarize(times[spec_name])
    rows.append({
        "optimizer": spec_name,
        **summary,
        "ratio_to_sgd": summary["median_s"] / sgd_time,
        "flops_ratio_to_sgd": runner.costs["flops"] / sgd.costs["flops"],
        "paper_flops_ratio": _paper_flops_ratio(runner.built),
        "temp_bytes": runner.costs["temp_bytes"],
        "state_bytes_per_param": runner.state_bytes / bench.num_params,
        "state_bytes_per_param_above_sgd": (runner.state_bytes - sgd.state_bytes)
                                           / bench.num_params,
        "perturbed_tensors": runner.perturbed_leaf_names,
        "ascent_fraction": runner.ascent_fraction,
    })
  by_name = {row["optimizer"]: row for row in rows}
  for mask in ("F", "D"):
    every_step = by_name.get(f"ssam-{mask} unstructured s=0.5 refresh every step")
    no_refresh = by_name.get(f"ssam-{mask} unstructured s=0.5")
    if every_step and no_refresh:
      every_step["refresh_cost_in_steps"] = (
          (every_step["median_s"] - no_refresh["median_s"]) / no_refresh["median_s"])
  return {"model": name, "batch_size": batch_size, "num_params": bench.num_params,
          "repetitions": repetitions, "rows": rows}


def markdown(result) -> str:
  lines = [f"\n### {result['model']} ({result['num_params'] / 1e6:.2f} M params, "
           f"batch {result['batch_size']}, {result['repetitions']} interleaved repetitions)\n",
           "| optimizer | step (ms) | IQR (ms) | × SGD time | × SGD FLOPs | paper FLOPs | "
           "temp MiB | state B/param above SGD |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in result["rows"]:
    extra = (f" (refresh = {r['refresh_cost_in_steps']:.2f} steps)"
             if "refresh_cost_in_steps" in r else "")
    if r.get("ascent_fraction") is not None:
      extra += f" (ascent on {r['ascent_fraction']:.0%} of steps)"
    lines.append(
        f"| {r['optimizer']}{extra} | {1e3 * r['median_s']:.1f} | {1e3 * r['iqr_s']:.1f} | "
        f"{r['ratio_to_sgd']:.2f} | {r['flops_ratio_to_sgd']:.2f} | "
        f"{r['paper_flops_ratio'] or '':} | {r['temp_bytes'] / 2**20:.0f} | "
        f"{r['state_bytes_per_param_above_sgd']:.2f} |")
  for r in result["rows"]:
    if r["perturbed_tensors"]:
      lines.append(f"\n{r['optimizer']} perturbs: {', '.join(r['perturbed_tensors'])}")
  return "\n".join(lines)


def main(argv=None):
  parser = harness.argument_parser(__doc__, repetitions=10, out="benchmarks/results/cpu.json")
  parser.add_argument("--models", default="small_cnn,resnet18,wrn28_10")
  parser.add_argument("--batch", type=int, default=0, help="0: the model's default")
  parser.add_argument("--only", default="", help="comma-separated substrings of row names")
  parser.add_argument("--exclude", default="", help="comma-separated substrings of row names")
  parser.add_argument("--report", action="store_true",
                      help="only print the tables of the results already in --out")
  parser.add_argument("--ascents", action="store_true",
                      help="time the cheaper ascents instead of the standard rows")
  args = parser.parse_args(argv)
  if args.report:
    for result in json.loads(pathlib.Path(args.out).read_text())["results"]:
      print(markdown(result))
    return
  keep = [s for s in args.only.split(",") if s]
  drop = [s for s in args.exclude.split(",") if s]
  spec_filter = lambda n: n == "sgd" or ((not keep or any(k in n for k in keep))
                                          and not any(d in n for d in drop))
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  report = {"device": str(jax.devices()[0].device_kind), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "command": harness.command_line("benchmarks.step_time"),
            "results": json.loads(out.read_text())["results"] if out.exists() else []}
  for name in args.models.split(","):
    result = bench_model(name, args.batch or MODELS[name][2], args.repetitions, spec_filter,
                         args.ascents)
    result["command"] = report["command"]  # models of one file may come from several runs
    report["results"] = [r for r in report["results"] if r["model"] != name] + [result]
    out.write_text(json.dumps(report, indent=1))
    print(markdown(result), flush=True)


if __name__ == "__main__":
  main()
