r"""Time of an empirical-Fisher refresh on ResNet-18 by N_F and chunk size.

  python -m benchmarks.fisher_chunks --out benchmarks/results/fisher_chunks_cpu.json

Each setting is ``jax.jit(empirical_fisher(..., unroll=True))`` on random
CIFAR-shaped inputs, timed after compilation (median of ``--repetitions``),
next to one SGD step at the same batch. Written because a refresh with
N_F = 32 in a single chunk of 32 cost 20 SSAM steps on XLA:CPU, while four
chunks of 32 (N_F = 128) cost less than one.
"""

import json
import pathlib

import jax

import ssam_jax
from benchmarks import harness
from experiments import models

SETTINGS = ((32, 32, 32), (32, 32, 8), (32, 32, 1), (128, 128, 32), (128, 128, 8))


def main(argv=None):
  args = harness.argument_parser(
      __doc__, repetitions=3, out="benchmarks/results/fisher_chunks_cpu.json").parse_args(argv)
  rows, benches = [], {}
  for batch, num_samples, chunk_size in SETTINGS:
    if batch not in benches:
      bench = harness.ModelBench(models.create_model("resnet18", 10), (32, 32, 3), 10, batch)
      sgd = harness.RunningStep(bench, harness.OptimizerSpec("sgd", "sgd"))
      benches[batch] = (bench, harness.median_time(sgd.call, args.repetitions)["median_s"])
    bench, sgd_seconds = benches[batch]
    fisher_fn = jax.jit(ssam_jax.empirical_fisher(
        lambda p, ex: bench.loss_fns.example_loss(p, bench.batch_stats, ex), bench.batch,
        num_samples=num_samples, chunk_size=chunk_size, unroll=True))
    fisher_seconds = harness.median_time(lambda: fisher_fn(bench.params),
                                         args.repetitions)["median_s"]
    rows.append({"batch": batch, "num_samples": num_samples, "chunk_size": chunk_size,
                 "fisher_s": fisher_seconds, "sgd_step_s": sgd_seconds,
                 "fisher_in_sgd_steps": fisher_seconds / sgd_seconds})
    print(f"batch {batch}, N_F {num_samples}, chunk {chunk_size}: {fisher_seconds:.2f} s "
          f"= {fisher_seconds / sgd_seconds:.2f} SGD steps", flush=True)
  out = pathlib.Path(args.out)
  out.write_text(json.dumps({"device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
                             "command": harness.command_line("benchmarks.fisher_chunks"),
                             "rows": rows},
                            indent=1))


if __name__ == "__main__":
  main()
