"""Comparing floating-point results of different code paths.

The rule every test in this directory follows:

* Exact equality only where both sides run the same operations in the same
  order: the same function, jitted the same way, on the same inputs (a
  checkpoint restored, a resumed run, a step replayed). Use
  ``chex.assert_trees_all_equal`` or ``np.testing.assert_array_equal``.
* Anywhere else (a fused against an unfused computation, a masked select
  against a skipped one, a jitted against an eager or NumPy computation),
  XLA may fuse and order the floating-point operations differently on
  another CPU, so the results agree only to rounding. Compare them with
  :func:`assert_trees_close`: an absolute tolerance scaled to the magnitude
  of the values compared. A purely relative tolerance fails on entries near
  zero, whose rounding error is set by the large entries they were computed
  from, not by their own size.
* Where the expected value is an independent reference, compute it in
  float64 (NumPy) so that its own rounding error does not count.

The default of 64 machine epsilons covers the reduction orders XLA picks
for the sums in these tests (a sum of n terms rounds to within about
``log2(n)`` epsilons under pairwise summation, ``n`` in the worst case); a
test that needs more passes ``eps_multiple`` and says why.
"""

import jax
import numpy as np

DEFAULT_EPS_MULTIPLE = 64


def tolerance(actual, expected, eps_multiple: float = DEFAULT_EPS_MULTIPLE,
              scale: float | None = None, precision=np.float32) -> float:
  """The absolute tolerance :func:`assert_trees_close` allows for one leaf.

  ``eps_multiple`` machine epsilons of ``precision`` times ``scale``: by
  default the largest magnitude in either leaf, the size of the terms the
  values were computed from. ``precision`` is that of the computation, not
  of the arrays holding its result (a float32 result copied into float64 is
  still float32-accurate); a leaf of a coarser dtype (bfloat16) coarsens it.
  """
  actual, expected = np.asarray(actual), np.asarray(expected)
  eps = max(float(np.finfo(dtype).eps) for dtype in (precision, actual.dtype,
                                                     expected.dtype)
            if np.issubdtype(dtype, np.floating))
  if scale is None:
    scale = max([float(np.max(np.abs(x))) for x in (actual, expected) if x.size]
                or [0.0])
  return eps_multiple * eps * scale


def assert_trees_close(actual, expected, *,
                       eps_multiple: float = DEFAULT_EPS_MULTIPLE,
                       scale: float | None = None, precision=np.float32,
                       what: str = "") -> None:
  """Asserts two pytrees agree to rounding (see the module docstring).

  Args:
    actual: the pytree under test.
    expected: the pytree it must match: the same structure and shapes.
    eps_multiple: how many machine epsilons of ``scale`` a leaf may differ.
    scale: the magnitude the error is relative to; by default, per leaf,
      the largest absolute value in either tree's leaf. Pass it when the
      values were computed from larger ones (a difference of two large
      numbers).
    precision: the floating-point type the compared values were computed
      in: ``np.float64`` for a test that enables ``jax_enable_x64``.
    what: named in the failure message.
  """
  actual_leaves, actual_def = jax.tree.flatten(actual)
  expected_leaves, expected_def = jax.tree.flatten(expected)
  assert actual_def == expected_def, (
      f"{what}: tree structures differ: {actual_def} vs {expected_def}")
  for i, (a, e) in enumerate(zip(actual_leaves, expected_leaves)):
    a, e = np.asarray(a), np.asarray(e)
    assert a.shape == e.shape, f"{what} leaf {i}: shape {a.shape} vs {e.shape}"
    message = f"{what} leaf {i}".strip()
    if not (np.issubdtype(a.dtype, np.inexact)
            or np.issubdtype(e.dtype, np.inexact)):
      np.testing.assert_array_equal(a, e, err_msg=message)
      continue
    atol = tolerance(a, e, eps_multiple, scale, precision)
    np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64),
                               rtol=0, atol=atol, err_msg=message)


def assert_differ(actual, expected, *,
                  eps_multiple: float = DEFAULT_EPS_MULTIPLE) -> None:
  """Asserts two pytrees differ somewhere by more than rounding."""
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a), np.asarray(e)
    if a.size and (np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))
                   > tolerance(a, e, eps_multiple)):
      return
  raise AssertionError("the two trees agree to rounding everywhere")


def assert_clear_top_k(scores, k: int, *,
                       eps_multiple: float = DEFAULT_EPS_MULTIPLE) -> None:
  """Asserts the ``k`` largest ``scores`` are separated from the rest.

  A mask chosen by ranking scores computed on another code path equals the
  reference's mask exactly only when no two scores straddling the cut are
  within rounding of each other; this checks that precondition, so that a
  test may then compare the masks bit for bit.
  """
  scores = np.sort(np.asarray(scores, np.float64).ravel())[::-1]
  finite = scores[np.isfinite(scores)]
  if k <= 0 or k >= finite.size:
    return
  gap = finite[k - 1] - finite[k]
  atol = tolerance(finite[:k + 1], finite[:k + 1], eps_multiple)
  assert gap > atol, (f"scores {k - 1} and {k} (ranked) differ by {gap:.3g}, "
                      f"within rounding ({atol:.3g}): the mask is not determined")
