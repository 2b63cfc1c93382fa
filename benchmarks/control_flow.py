r"""The empirical Fisher at top level vs inside a loop or ``lax.cond`` body.

  python -m benchmarks.control_flow --out benchmarks/results/control_flow_cpu.json

XLA:CPU runs convolutions inside control-flow bodies much more slowly than
the same convolutions at top level (jax-ml/jax#12868). This times
``ssam_jax.empirical_fisher`` on the small CNN (128 examples, chunks of 32)
four ways, interleaved, and reports each as a ratio to the unrolled one:
unrolled, a ``lax.scan`` over the chunks (``unroll=1``), and both inside a
``lax.cond`` whose predicate is true (how ``ssam`` refreshes the mask when
``refresh`` is not passed statically).
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import ssam_jax
from benchmarks import harness
from experiments import models

NUM_EXAMPLES, CHUNK_SIZE = 128, 32


def fisher_variants():
  model = models.create_model("small_cnn", 10)
  bench = harness.ModelBench(model, (28, 28, 1), 10, NUM_EXAMPLES)
  batch = bench.batch

  def fisher(params, unroll):
    return ssam_jax.empirical_fisher(
        lambda p, ex: bench.loss_fns.example_loss(p, bench.batch_stats, ex), batch,
        num_samples=NUM_EXAMPLES, chunk_size=CHUNK_SIZE, unroll=unroll)(params)

  def in_cond(unroll):  # a traced predicate, as ssam's count % T_m == 0
    return lambda p, refresh: jax.lax.cond(refresh, lambda: fisher(p, unroll),
                                           lambda: jax.tree.map(jnp.zeros_like, p))

  top_level = lambda unroll: lambda p, refresh: fisher(p, unroll)

  variants = {"unrolled": top_level(True),
              "scan (unroll=1)": top_level(1),
              "unrolled, inside lax.cond": in_cond(True),
              "scan, inside lax.cond": in_cond(1)}
  return bench.params, {name: jax.jit(f) for name, f in variants.items()}


def main(argv=None):
  args = harness.argument_parser(
      __doc__, repetitions=7, out="benchmarks/results/control_flow_cpu.json").parse_args(argv)
  params, steps = fisher_variants()
  predicate = jnp.asarray(True)
  calls = {name: harness.timed(functools.partial(step, params, predicate))
           for name, step in steps.items()}
  for call in calls.values():
    call()  # compile
  times = harness.time_rounds(calls, args.repetitions)
  base = np.median(times["unrolled"])
  rows = [{"variant": name, **harness.summarize(t), "ratio_to_unrolled": np.median(t) / base}
          for name, t in times.items()]
  print("| Fisher (small CNN, 128 examples) | median (ms) | IQR (ms) | × unrolled |")
  print("| --- | ---: | ---: | ---: |")
  for r in rows:
    print(f"| {r['variant']} | {1e3 * r['median_s']:.1f} | {1e3 * r['iqr_s']:.1f} | "
          f"{r['ratio_to_unrolled']:.2f} |")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
                             "command": harness.command_line("benchmarks.control_flow"),
                             "rows": rows}, indent=1))


if __name__ == "__main__":
  main()
