"""Data parallel: ``jax.jit`` with a batch sharded by ``NamedSharding``."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import numerics
from experiments import tiny_mlp
import ssam_jax

from . import common
from .runner import NUM_DEVICES, case


def _data_parallel(name, axis_type=None):
  """With ``axis_type`` None, the mesh is Auto: jit + NamedSharding."""
  mesh = jax.make_mesh((NUM_DEVICES,), ("data",),
                       axis_types=(axis_type or AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  built = common.make_optimizer(name)
  params = jax.device_put(tiny_mlp.init_params(), replicated)
  batch = jax.device_put(common.global_batch(), NamedSharding(mesh, P("data")))
  assert len(batch["x"].sharding.device_set) == NUM_DEVICES
  step = jax.jit(common.train_step(built, common.BATCH))
  params, state = common.run_steps(step, params, built.optimizer.init(params), batch)
  for leaf in jax.tree.leaves(params):
    assert leaf.sharding.is_fully_replicated, leaf.sharding
  common.assert_matches_reference(params, state, name)


@case(slow=True)
def data_parallel_sam():
  _data_parallel("sam")


@case
def data_parallel_ssam_fisher():
  _data_parallel("ssam-f")


@case(slow=True)
def data_parallel_ssam_dynamic():
  _data_parallel("ssam-d")


@case(slow=True)
def data_parallel_explicit_ssam_fisher():
  _data_parallel("ssam-f", AxisType.Explicit)


def _conv_example_loss(params, example):
  """A conv layer and a linear read-out, for one NHWC example."""
  features = jax.lax.conv_general_dilated(
      example["x"][None], params["conv"], (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  logits = jnp.tanh(features).mean((1, 2)) @ params["dense"]
  return -jax.nn.log_softmax(logits)[0, example["y"]]


@case(slow=True)
def data_parallel_conv_fisher_under_mesh():
  """The Fisher of a conv net from a sharded batch equals per-example loops.

  Guards the replication in ``ssam_jax.fisher``: without it XLA partitions
  the vmapped per-example conv gradients wrongly (docs/scaling.md).
  """
  mesh = jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(AxisType.Auto,))
  keys = jax.random.split(jax.random.key(0), 3)
  params = {"conv": jax.random.normal(keys[0], (3, 3, 2, 4)),
            "dense": jax.random.normal(keys[1], (4, 3))}
  batch = {"x": jax.random.normal(keys[2], (common.BATCH, 8, 8, 2)),
           "y": jnp.arange(common.BATCH) % 3}
  num_samples = common.BATCH // 2
  per_example = [jax.grad(_conv_example_loss)(
      params, jax.tree.map(lambda a, i=i: a[i], batch)) for i in range(num_samples)]
  expected = jax.tree.map(
      lambda *g: np.mean(np.square(np.asarray(g, np.float64)), axis=0), *per_example)
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  with jax.set_mesh(mesh):
    fisher = jax.jit(lambda p, b: ssam_jax.empirical_fisher(
        _conv_example_loss, b, num_samples, chunk_size=num_samples)(p))(
            params, sharded)
  for name in params:
    numerics.assert_trees_close(fisher[name], expected[name], what=name)
