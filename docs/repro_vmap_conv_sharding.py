"""Per-example conv gradients are wrong when the example axis is sharded.

Found while testing data-parallel SSAM-F (jax 0.10.2, jaxlib 0.10.2, CPU with
4 forced devices): ``jit(vmap(grad(conv_loss)))`` over a batch sharded on a
``data`` axis with automatic sharding returns per-example weight gradients
with errors of order one, without any warning. Replicating the examples
first (``with_sharding_constraint(x, P())`` under ``jax.set_mesh``) gives the
right answer; ``ssam_jax.empirical_fisher`` does this whenever a mesh is in
context. Run: ``python docs/repro_vmap_conv_sharding.py``.
"""

import jax

jax.config.update("jax_num_cpu_devices", 4)

import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top,wrong-import-position


def conv_loss(kernel, example):
  out = jax.lax.conv_general_dilated(example[None], kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.sum(jnp.tanh(out) ** 2)


def per_example_grads(kernel, examples):
  return jax.vmap(jax.grad(conv_loss), in_axes=(None, 0))(kernel, examples)


def replicated_then_per_example_grads(kernel, examples):
  return per_example_grads(kernel, jax.lax.with_sharding_constraint(examples, P()))


def main():
  mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Auto,))
  kernel = jax.random.normal(jax.random.key(0), (3, 3, 2, 4))
  examples = jax.random.normal(jax.random.key(1), (16, 8, 8, 2))
  expected = per_example_grads(kernel, examples)  # one device
  sharded = jax.device_put(examples, NamedSharding(mesh, P("data")))

  def relative_error(got):
    return float(jnp.max(jnp.abs(got - expected)) / jnp.max(jnp.abs(expected)))

  wrong = jax.jit(per_example_grads)(kernel, sharded)
  with jax.set_mesh(mesh):
    right = jax.jit(replicated_then_per_example_grads)(kernel, sharded)
  print(f"sharded examples:    max relative error {relative_error(wrong):.3g}")
  print(f"replicated examples: max relative error {relative_error(right):.3g}")


if __name__ == "__main__":
  main()
