"""Device collectives and sharding of state created from the params."""

import jax

def mean_over(axis_name, tree):
  """Mean over the devices of a named axis (``shard_map``, ``pmap``).

  Identity when ``axis_name`` is None: under ``jax.jit`` with sharded arrays
  every reduction is already global.
  """
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def shard_like(x: jax.Array, like) -> jax.Array:
  """``x`` with the sharding of ``like``, an array of the same shape.

  Keeps what is created leaf by leaf from the params (masks, Fisher sums,
  random scores) sharded as the params are, e.g. over an FSDP axis: a
  concrete ``like`` spread over several devices places ``x`` on them, a
  traced one under explicit sharding (``jax.sharding.AxisType.Explicit``)
  reshards ``x`` to its type. Otherwise ``x`` is returned unchanged: on one
  device nothing is to be done, and under automatic sharding the compiler
  propagates shardings itself.
  """
  if not isinstance(like, jax.Array):
    return x
  if not isinstance(like, jax.core.Tracer):
    if len(like.sharding.device_set) > 1:
      return jax.device_put(x, like.sharding)
    return x
  sharding = jax.typeof(like).sharding
  if jax.sharding.AxisType.Explicit in sharding.mesh.axis_types:
    return jax.sharding.reshard(x, sharding)
  return x
