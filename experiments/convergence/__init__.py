"""An empirical check of Theorems 1 and 2 of Mi et al. (SAM/SSAM convergence).

:mod:`~experiments.convergence.problem` is a smooth non-convex stochastic
problem that satisfies Assumptions 1-3, with its constants;
:mod:`~experiments.convergence.rates` runs SGD, SAM and SSAM on it with the
theorems' ``1/sqrt(t)`` schedules and fits the rate of
``(1/T) sum_t E||grad f(w_t)||^2``. The figure: ``python -m
experiments.analysis.convergence``.
"""
