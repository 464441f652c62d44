"""Intervals, verdicts and method differences from stored test predictions (docs/verdicts.md)."""
