"""The method zoo: one package per method (``methods/<name>/``: its model, its schema, the hooks it
declares), found by zslrepro.catalog, built through :func:`build_method`; beside them the shared
maths every method may import (attention, losses, regions, backbones, logit_bias) and the
interface (registry). This package imports no method.
"""

from .registry import (
    AttentionMaps,
    DataSpec,
    ZslMethod,
    artefact_builder,
    build_method,
    list_methods,
    method_class,
    register,
    release_importer,
)

__all__ = [
    "AttentionMaps",
    "DataSpec",
    "ZslMethod",
    "artefact_builder",
    "build_method",
    "list_methods",
    "method_class",
    "register",
    "release_importer",
]
