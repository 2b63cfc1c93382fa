"""Which parameter leaves may be perturbed, and leaves hidden by ``optax.masked``."""

import re
from collections.abc import Callable
from typing import Any, Union

import jax
import numpy as np
import optax

PyTree = Any
LeafFilter = Union[None, PyTree, Callable[[PyTree], PyTree]]


def kernels_only(params: PyTree) -> PyTree:
  """Leaf filter that perturbs only leaves with two or more dimensions.

  Keeps biases and normalisation scales/offsets (all one-dimensional) out of
  the perturbation, a common choice for SAM on networks with BatchNorm.

  >>> import jax.numpy as jnp
  >>> import ssam_jax
  >>> ssam_jax.kernels_only({'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)})
  {'bias': False, 'kernel': True}

  Args:
    params: a pytree of arrays or ``jax.ShapeDtypeStruct``.

  Returns:
    A pytree of Python booleans shaped like ``params``.
  """
  return jax.tree.map(lambda p: len(p.shape) >= 2, params)


def leaf_paths(tree: PyTree) -> list[str]:
  """``"Dense_0/kernel"``-style paths of the leaves of ``tree``, in leaf order."""
  return [jax.tree_util.keystr(path, simple=True, separator="/")
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def leaves_matching(pattern: str) -> Callable[[PyTree], PyTree]:
  """Leaf filter that perturbs the leaves whose path matches a regex.

  Paths join the keys with ``/`` (``"BasicBlock_7/Conv_0/kernel"``) and are
  matched with ``re.search``. Confining a tensorwise mask to the last layers
  lets the fast path (:func:`ssam_jax.value_and_partial_grad`) stop its first
  backward pass there.

  >>> import jax.numpy as jnp
  >>> import ssam_jax
  >>> params = {'Conv_0': {'kernel': jnp.ones((3, 3))}, 'Dense_0': {'bias': jnp.ones(2)}}
  >>> ssam_jax.leaves_matching(r'^Dense_0/')(params)
  {'Conv_0': {'kernel': False}, 'Dense_0': {'bias': True}}

  Args:
    pattern: a regular expression.

  Returns:
    A function from a params pytree to a pytree of Python booleans.

  Raises:
    TypeError: ``pattern`` is not a string; ``re.error`` if it does not compile.
  """
  if not isinstance(pattern, str):
    raise TypeError(f"pattern must be a regular expression string, got {pattern!r}.")
  regex = re.compile(pattern)

  def matching(params):
    flags = [bool(regex.search(path)) for path in leaf_paths(params)]
    return jax.tree.unflatten(jax.tree.structure(params), flags)

  return matching


def _is_masked_node(x) -> bool:
  return isinstance(x, optax.MaskedNode)


def fill_masked(tree: PyTree, full: PyTree) -> PyTree:
  """Replaces the ``optax.MaskedNode`` placeholders of ``tree`` from ``full``.

  Inside ``optax.masked`` or ``optax.multi_transform`` a transformation only
  sees the leaves it is responsible for; the others are ``optax.MaskedNode``.
  A ``grad_fn`` used there receives such a partial tree and can complete it
  from the full parameters it closes over::

    grad_fn = lambda p: jax.grad(loss)(ssam_jax.fill_masked(p, params), batch)

  The gradient it returns may be the full tree: SAM keeps only the leaves it
  is responsible for.

  Args:
    tree: a pytree that may contain ``optax.MaskedNode`` nodes.
    full: a pytree with the same structure where ``tree`` has real leaves.

  Returns:
    ``tree`` with every ``MaskedNode`` replaced by the matching subtree of
    ``full``.
  """
  return jax.tree.map(lambda t, f: f if _is_masked_node(t) else t,
                      tree, full, is_leaf=_is_masked_node)


def restrict_like(tree: PyTree, reference: PyTree) -> PyTree:
  """Drops the parts of ``tree`` that are ``MaskedNode`` in ``reference``."""
  return jax.tree.map(lambda r, t: r if _is_masked_node(r) else t,
                      reference, tree, is_leaf=_is_masked_node)


def resolve_leaf_filter(leaf_filter: LeafFilter, params: PyTree) -> tuple:
  """One static Python bool per leaf of ``params``: may it be perturbed?"""
  treedef = jax.tree.structure(params)
  if leaf_filter is None:
    return (True,) * treedef.num_leaves
  tree = leaf_filter(params) if callable(leaf_filter) else leaf_filter
  try:
    flags = treedef.flatten_up_to(tree)
  except (ValueError, TypeError) as error:
    raise ValueError(
        "perturbed_leaves must be a pytree of booleans with the structure of "
        f"the params (or a callable returning one): {error}") from None
  for flag in flags:
    if not isinstance(flag, (bool, np.bool_)):
      raise TypeError(
          "perturbed_leaves must hold static Python booleans (one per leaf); "
          f"got {flag!r}.")
  return tuple(bool(flag) for flag in flags)


def check_leaf_filter(leaf_filter: LeafFilter) -> None:
  if leaf_filter is not None and not callable(leaf_filter):
    for flag in jax.tree.leaves(leaf_filter):
      if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(
            "perturbed_leaves must be None, a callable, or a pytree of "
            f"Python booleans; found leaf {flag!r}.")
