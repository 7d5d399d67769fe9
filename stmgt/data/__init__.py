"""Datasets: the embedded simulator, the generic folder format, importers, windows and splits."""
