"""Metrics: epoch-accumulated confusion matrices (2D) and volumetric scores (CT)."""
