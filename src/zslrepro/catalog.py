"""Which methods exist, where each comes from, and where its schema and default configs are:
read from files and package metadata, without importing any method (so without torch), because
the workflow asks while it parses. This is the one registry of methods.

A method is a package, the same for both origins (one :class:`MethodEntry` each): a module whose
class carries ``@register("<name>")``, beside it ``method_<name>.yaml`` (the schema of its config's
``model`` and ``loss`` sections) and optionally ``configs/<DATASET>.yaml`` (default configs, used
where the run's config directory has none); every ``.py`` and ``.yaml`` file of the package is in
its code digest (zslrepro.provenance).

* **built in**: every folder ``zslrepro/methods/<folder>/`` holding ``model.py``; the project's
  configs live in ``config/methods/<name>/``.
* **plugins**: an installed distribution that declares, in its pyproject.toml,
  ``[project.entry-points."zslrepro.methods"] <name> = "<package>.<module>"``; its package is the
  module's top-level package.

docs/adding_a_method.md is the how-to.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

from .errors import ConfigError

ENTRY_POINT_GROUP = "zslrepro.methods"
PKG = Path(__file__).resolve().parent
METHODS_PACKAGE = "zslrepro.methods"
DISTRIBUTION = "zsl-repro"


@dataclass(frozen=True)
class MethodEntry:
    """One registered method, as found without importing it."""

    name: str
    module: str  # importing it defines the method's class (zslrepro.methods.msdn.model, ale_zsl.ale)
    module_file: Path
    origin: str  # distribution: zsl-repro or the plugin's
    version: str
    package_dir: Path  # the method's package: all of it in the digest
    files: tuple[Path, ...] = field(default=())  # the files of package_dir the digest covers

    @property
    def builtin(self) -> bool:
        return self.origin == DISTRIBUTION

    @property
    def schema(self) -> Path:
        """The model/loss part of its config schema, beside its module."""
        return self.module_file.parent / f"method_{self.name}.yaml"

    @property
    def default_configs(self) -> Path:
        return self.module_file.parent / "configs"

    def default_config(self, dataset: str) -> Path | None:
        path = self.default_configs / f"{dataset}.yaml"
        return path if path.is_file() else None


def registered_name(module_file: Path) -> str | None:
    """The name in a module's ``@register("<name>")`` decorator (None if it has none)."""
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ClassDef):
            for dec in node.decorator_list:
                if (
                    isinstance(dec, ast.Call)
                    and getattr(dec.func, "id", getattr(dec.func, "attr", None)) == "register"
                    and dec.args
                    and isinstance(dec.args[0], ast.Constant)
                ):
                    return dec.args[0].value
    return None


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout on PYTHONPATH, not installed
        return "checkout"


def package_files(package_dir: Path) -> tuple[Path, ...]:
    """The files of a method's package that its code digest covers: every .py and .yaml."""
    return tuple(
        sorted(p for p in package_dir.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts)
    )


def _entry(name: str, module: str, module_file: Path, origin: str, version: str, package_dir: Path) -> MethodEntry:
    entry = MethodEntry(name, module, module_file, origin, version, package_dir, package_files(package_dir))
    if not entry.schema.is_file():
        raise ConfigError(f"method {name!r} ({origin}): no schema {entry.schema} beside its module")
    return entry


def builtin_entries() -> dict[str, MethodEntry]:
    """The packages ``zslrepro/methods/<folder>/`` with a ``model.py``."""
    out, version = {}, _version()
    for model in sorted((PKG / "methods").glob("*/model.py")):
        name = registered_name(model)
        if name is None:
            raise ConfigError(f'{model}: a method package\'s model, but no class in it has @register("...")')
        out[name] = _entry(
            name, f"{METHODS_PACKAGE}.{model.parent.name}.model", model, DISTRIBUTION, version, model.parent
        )
    return out


def _plugin_entry(ep) -> MethodEntry:
    dist = ep.dist.name if ep.dist else "?"
    where = f"entry point {ep.name!r} = {ep.value!r} of {dist}"
    try:
        spec = importlib.util.find_spec(ep.module)
    except ImportError as exc:
        raise ConfigError(f"{where}: its module cannot be found ({exc})") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ConfigError(f"{where}: its module {ep.module!r} is not an importable .py file")
    top = importlib.util.find_spec(ep.module.split(".")[0])
    return _entry(
        ep.name,
        ep.module,
        Path(spec.origin).resolve(),
        dist,
        ep.dist.version if ep.dist else "?",
        Path(top.origin).resolve().parent,
    )


@cache
def catalog() -> dict[str, MethodEntry]:
    """Every registered method by name: the built-in ones, then the installed plugins'."""
    entries = builtin_entries()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry = _plugin_entry(ep)
        if entry.name in entries:
            other = entries[entry.name]
            raise ConfigError(
                f"method {entry.name!r} is registered twice: by {other.origin} {other.version} "
                f"({other.module}) and by {entry.origin} {entry.version} ({entry.module})"
            )
        entries[entry.name] = entry
    return entries


def method_names() -> list[str]:
    return sorted(catalog())


def unknown_method(name: str) -> ConfigError:
    return ConfigError(
        f"unknown method {name!r}; registered methods: {', '.join(method_names())} "
        f"(`python -m zslrepro methods` lists them with their origin; a method from "
        f"another package registers through the entry-point group {ENTRY_POINT_GROUP!r})"
    )


def method_entry(name: str) -> MethodEntry:
    entries = catalog()
    if name not in entries:
        raise unknown_method(name)
    return entries[name]


def method_config_path(method: str, dataset: str, config_dir: str | Path) -> Path:
    """The config of a method on a dataset: ``<config_dir>/methods/<method>/<DATASET>.yaml``, or a
    plugin's default config for the dataset where the run's config directory has none."""
    own = Path(config_dir) / "methods" / method / f"{dataset}.yaml"
    if own.is_file():
        return own
    default = method_entry(method).default_config(dataset)
    return default if default is not None else own
