"""Analyses over fits, above the pipeline: each runs :func:`magbayes.fit.fit` and reads its results.

``answer`` (every shipped model on one cohort, one question), ``sensitivity`` (refits over
a grid of early-sural definitions and prior scales, on Dask) and ``prior_sensitivity``
(the spec's prior alternatives refitted, and ArviZ's power-scaling).
"""
