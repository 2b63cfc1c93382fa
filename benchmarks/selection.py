r"""Time of the global top-k selection on ResNet-18's parameter shapes.

  python -m benchmarks.selection --out benchmarks/results/selection_cpu.json

Compares ``ssam_jax.topk_mask`` (bisection over the leaves, no sort, no
concatenation) with ``jax.lax.top_k`` on the concatenated 11 M scores, and
checks that both select the same set.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import ssam_jax
from benchmarks import harness
from experiments import models


def resnet18_shapes():
  model = models.create_model("resnet18", 10)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                             train=False))["params"]
  return [leaf.shape for leaf in jax.tree.leaves(params)]


def main(argv=None):
  parser = harness.argument_parser(__doc__, repetitions=7,
                                   out="benchmarks/results/selection_cpu.json")
  parser.add_argument("--sparsity", type=float, default=0.5)
  args = parser.parse_args(argv)
  shapes = resnet18_shapes()
  keys = jax.random.split(jax.random.key(0), len(shapes))
  scores = [jax.random.normal(k, s) ** 2 for k, s in zip(keys, shapes)]  # Fisher-like
  total = sum(int(np.prod(s)) for s in shapes)
  k = int((1 - args.sparsity) * total)

  bisection = jax.jit(lambda s: ssam_jax.topk_mask(s, k))
  top_k = jax.jit(lambda s: jax.lax.top_k(jnp.concatenate([x.ravel() for x in s]), k)[1])
  ours = harness.median_time(lambda: bisection(scores), args.repetitions)
  theirs = harness.median_time(lambda: top_k(scores), max(2, args.repetitions // 3))

  chosen = np.concatenate([np.asarray(m).ravel() for m in bisection(scores)])
  reference = np.zeros(total, bool)
  reference[np.asarray(top_k(scores))] = True
  result = {"num_params": total, "k": k, "device": jax.devices()[0].device_kind,
            "topk_mask_s": ours["median_s"], "topk_mask_iqr_s": ours["iqr_s"],
            "lax_top_k_s": theirs["median_s"], "lax_top_k_iqr_s": theirs["iqr_s"],
            "same_selection": bool((chosen == reference).all()),
            "command": harness.command_line("benchmarks.selection")}
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
