"""The method zoo: every method registers itself under its config name."""

# importing the modules registers their methods
from . import dazle, dedn, drmn, msdn, sgma  # noqa: F401
from .registry import AttentionMaps, DataSpec, ZslMethod, build_method, list_methods, register

__all__ = ["AttentionMaps", "DataSpec", "ZslMethod", "build_method", "list_methods", "register"]
