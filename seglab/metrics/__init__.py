"""Metrics: epoch-accumulated confusion matrices (2D) and volumetric scores (CT).

May import ``seglab.metrics.*`` and third-party libraries only.
"""
