"""Callbacks: the side effects of a run (thread budget, image grids, summaries)."""
