"""zsl-repro: reproducible attention-based zero-shot learning."""

__version__ = "0.1.0"
