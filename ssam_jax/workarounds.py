"""JAX and XLA problems the library works around, each explained once.

Other modules refer here instead of repeating the explanation.

**Convolutions inside control flow on XLA:CPU** (`jax-ml/jax#12868
<https://github.com/jax-ml/jax/issues/12868>`_). XLA:CPU runs a convolution
inside the body of ``lax.cond``, ``lax.scan``, ``lax.fori_loop`` or
``lax.while_loop`` several times slower than the same convolution at top
level (``python -m benchmarks.control_flow`` measures the factor on the
machine at hand; ``benchmarks/results`` keeps past measurements). Where the
library would put a convolution inside control flow, the caller can move it
out:

* with ``mask_update_every="manual"``, :func:`ssam_jax.ssam`'s ``update``
  takes ``refresh=`` as a static Python bool, so the mask refresh (and the
  ``fisher_fn`` it calls) is traced at
  top level instead of under ``lax.cond``, at the cost of one compilation
  per value;
* :func:`ssam_jax.scheduled_ascent` and :func:`ssam_jax.looksam` take
  ``every="manual"`` and ``ascend=`` as a static Python bool in the same
  way, so that the update with the ascent and the one without are each
  traced at top level;
* :func:`ssam_jax.empirical_fisher` takes ``unroll=True`` to unroll its scan
  over chunks of examples, at the cost of keeping several chunks alive at
  once;
* :func:`ssam_jax.analysis.hessian.lanczos` runs its iterations from a Python
  loop.

On accelerators the loops are fast and bound memory: keep the defaults.

**Per-example gradients of a convolution over a sharded example axis.** With
automatic sharding, ``jit(vmap(grad(conv_loss)))`` over examples sharded
along a mesh axis returns wrong per-example weight gradients, with no error
(``python docs/repro_vmap_conv_sharding.py`` reproduces it; the closest
upstream report is `jax-ml/jax#32157
<https://github.com/jax-ml/jax/issues/32157>`_). :func:`replicated` gathers
the examples onto every device first; :func:`ssam_jax.empirical_fisher`
applies it to the examples it uses whenever a mesh is known.
"""

import jax


def replicated(x: jax.Array) -> jax.Array:
  """``x`` gathered onto every device, whenever a mesh is known.

  With explicit sharding ``x`` is resharded (``lax.scan`` cannot step along
  a sharded axis either). Under ``jax.set_mesh`` with automatic sharding a
  replicated sharding constraint is added. Without a mesh in context nothing
  is known about the sharding here, and ``x`` is returned as is: callers
  sharding the batch must then trace the step under ``jax.set_mesh``. Inside
  ``shard_map`` ``x`` is already local.

  Args:
    x: an array, possibly traced.

  Returns:
    ``x``, replicated where a mesh says how.
  """
  sharding = jax.typeof(x).sharding
  if jax.sharding.AxisType.Explicit in sharding.mesh.axis_types:
    replicated_sharding = sharding.update(spec=jax.sharding.PartitionSpec())
    return jax.sharding.reshard(x, replicated_sharding)
  context = jax.sharding.get_abstract_mesh()
  if context.empty or jax.sharding.AxisType.Manual in context.axis_types:
    return x
  return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec())
