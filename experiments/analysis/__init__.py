"""Figure commands for the analyses of Mi et al. (NeurIPS 2022).

One module per figure, each runnable as ``python -m experiments.analysis.NAME``
and writing a PNG plus the numbers behind it as JSON into ``--out``:

* ``gradient_ratio`` -- Fig. 1, histogram of ``r = log|(g_SAM - g_SGD)/g_SGD|``;
* ``training_curves`` -- Fig. 2, loss/accuracy per epoch from ``metrics.jsonl``;
* ``accuracy_vs_sparsity`` -- Fig. 3, final test accuracy against sparsity;
* ``landscape`` -- Fig. 4, loss contour and surface along filter-normalised
  directions;
* ``hessian`` -- Fig. 5, top Hessian eigenvalues and spectral density;
* ``convergence`` -- Theorems 1-2, ``(1/T) sum_t E||grad f(w_t)||^2`` against
  ``C log T / sqrt(T)`` on a synthetic stochastic non-convex problem.

Means over seeds are drawn with 95 % confidence intervals
(:mod:`experiments.analysis.error_bars`). ``evidence`` draws a sweep
regime's figures from the committed results. ``python -m experiments.analysis
--demo --out DIR`` runs them all on the synthetic demo. The computations live in :mod:`ssam_jax.analysis`; the model
interface in :mod:`experiments.analysis.trained`, the demo in
:mod:`experiments.analysis.demo`.
"""
