"""Example models trained on data sets that ship inside Python packages (no download)."""
