"""Datasets: the embedded synthetic benchmark and the ingest of xlsa17-format files."""
