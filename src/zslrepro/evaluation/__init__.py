"""Evaluation: the metrics of the ZSL/GZSL protocol and the two reporting protocols."""
