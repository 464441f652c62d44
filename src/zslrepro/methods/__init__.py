"""The method zoo: every method registers itself under its config name."""

from .registry import AttentionMaps, DataSpec, ZslMethod, build_method, list_methods, register

# importing the modules registers their methods
from . import dazle, dedn, drmn, msdn, sgma  # noqa: F401,E402

__all__ = ["AttentionMaps", "DataSpec", "ZslMethod", "build_method", "list_methods", "register"]
