"""Which parameter leaves may be perturbed, and leaves hidden by ``optax.masked``."""

import re
from collections.abc import Callable
from typing import Any, Optional, Union

import jax
import numpy as np
import optax

PyTree = Any
LeafFilter = Union[None, PyTree, Callable[[PyTree], PyTree]]


def kernels_only(params: PyTree) -> PyTree:
  """Leaf filter that perturbs only leaves with two or more dimensions.

  Keeps biases and normalisation scales/offsets (all one-dimensional) out of
  the perturbation, a common choice for SAM on networks with BatchNorm.

  Args:
    params: a pytree of arrays or ``jax.ShapeDtypeStruct``.

  Returns:
    A pytree of Python booleans shaped like ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import ssam_jax
    >>> ssam_jax.kernels_only({'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)})
    {'bias': False, 'kernel': True}
  """
  return jax.tree.map(lambda p: len(p.shape) >= 2, params)


def leaf_paths(tree: PyTree) -> list[str]:
  """``"Dense_0/kernel"``-style paths of the leaves of ``tree``, in leaf order."""
  return [jax.tree_util.keystr(path, simple=True, separator="/")
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def leaves_matching(regex: str) -> Callable[[PyTree], PyTree]:
  """Leaf filter that perturbs the leaves whose path matches a regex.

  Paths join the keys with ``/`` (``"BasicBlock_7/Conv_0/kernel"``) and are
  matched with ``re.search``. Confining a tensorwise mask to the last layers
  lets the fast path (:func:`ssam_jax.value_and_partial_grad`) stop its first
  backward pass there.

  Args:
    regex: a regular expression.

  Returns:
    A function from a params pytree to a pytree of Python booleans. As
    ``perturbed_leaves``, a regex that matches no leaf raises a ``ValueError``
    at ``init``.

  Raises:
    TypeError: ``regex`` is not a string; ``re.error`` if it does not compile.

  Examples:
    >>> import jax.numpy as jnp
    >>> import ssam_jax
    >>> params = {'Conv_0': {'kernel': jnp.ones((3, 3))}, 'Dense_0': {'bias': jnp.ones(2)}}
    >>> ssam_jax.leaves_matching(r'^Dense_0/')(params)
    {'Conv_0': {'kernel': False}, 'Dense_0': {'bias': True}}
  """
  if not isinstance(regex, str):
    raise TypeError(f"regex must be a regular expression string, got {regex!r}.")
  compiled = re.compile(regex)

  def matching(params):
    flags = [bool(compiled.search(path)) for path in leaf_paths(params)]
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
  """One static Python bool per leaf of ``params``: may it be perturbed?

  Raises a ``ValueError`` when a filter selects none of the leaves (a typo
  in a regex would otherwise turn SAM into plain training at twice the cost).
  """
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
  if flags and not any(flags):
    raise ValueError(
        f"perturbed_leaves selects none of the {len(flags)} leaves of the "
        f"params ({_shortlist(leaf_paths(params))}), so nothing would be "
        "perturbed. Check the filter; to train without SAM, use the base "
        "optimizer.")
  return tuple(bool(flag) for flag in flags)


def check_leaf_filter(leaf_filter: LeafFilter) -> None:
  if leaf_filter is not None and not callable(leaf_filter):
    for flag in jax.tree.leaves(leaf_filter):
      if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(
            "perturbed_leaves must be None, a callable, or a pytree of "
            f"Python booleans; found leaf {flag!r}.")


def _shortlist(paths: list, limit: int = 4) -> str:
  shown = ", ".join(repr(p) for p in paths[:limit])
  return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def path_mismatch(tree: PyTree, reference: PyTree) -> Optional[str]:
  """Which leaf paths ``tree`` lacks or adds, or None if it has the same.

  Containers may differ (e.g. a ``dict`` for a ``FrozenDict``).
  """
  paths, expected = leaf_paths(tree), leaf_paths(reference)
  if paths == expected:
    return None
  missing = [p for p in expected if p not in paths]
  extra = [p for p in paths if p not in expected]
  parts = ([f"missing {_shortlist(missing)}"] if missing else []) + (
      [f"unexpected {_shortlist(extra)}"] if extra else [])
  return "; ".join(parts) or f"leaves in another order: {_shortlist(paths)}"


def shape_mismatch(tree: PyTree, reference: PyTree) -> Optional[str]:
  """The first leaf whose shape differs from ``reference``'s, or None."""
  for path, leaf, like in zip(leaf_paths(reference), jax.tree.leaves(tree),
                              jax.tree.leaves(reference)):
    if np.shape(leaf) != np.shape(like):
      return f"leaf {path!r} has shape {np.shape(leaf)}, not {np.shape(like)}"
  return None
