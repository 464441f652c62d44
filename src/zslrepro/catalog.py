"""Which methods exist, where each comes from, and where its schema and default configs are:
read from files and package metadata, without importing any method (so without torch), because
the workflow asks while it parses.

Two origins, one record (:class:`MethodEntry`) each:

* **built in**: the modules that ``zslrepro/methods/__init__.py`` imports to register them; the
  registry name is the string in the module's ``@register("...")``; the schema is
  ``zslrepro/schemas/method_<name>.yaml``; configs live in the project's ``config/methods/``.
* **plugins**: an installed distribution that declares, in its pyproject.toml,
  ``[project.entry-points."zslrepro.methods"] <name> = "<package>.<module>"``. Beside that module
  file lie ``method_<name>.yaml`` (its schema: the ``model`` and ``loss`` sections) and
  ``configs/<DATASET>.yaml`` (its default config per dataset, used where the run's config
  directory has none). Every ``.py`` and ``.yaml`` file of the plugin's top-level package is part
  of its code digest (zslrepro.provenance).

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
    module: str  # importing it registers the method (zslrepro.methods.msdn, ale_zsl.ale)
    module_file: Path
    schema: Path  # the model/loss part of its config schema
    origin: str  # distribution: zsl-repro or the plugin's
    version: str
    default_configs: Path | None = None  # plugins: <module dir>/configs/<DATASET>.yaml
    package_dir: Path | None = None  # plugins: the top-level package, all of it in the digest
    files: tuple[Path, ...] = field(default=())  # plugins: the files of package_dir the digest covers

    @property
    def builtin(self) -> bool:
        return self.package_dir is None

    def default_config(self, dataset: str) -> Path | None:
        if self.default_configs is None:
            return None
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


def builtin_entries() -> dict[str, MethodEntry]:
    """The methods that zslrepro/methods/__init__.py imports to register them."""
    init = PKG / "methods" / "__init__.py"
    modules = [
        a.name
        for node in ast.parse(init.read_text()).body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None
        for a in node.names
    ]
    out, version = {}, _version()
    for mod in modules:
        path = PKG / "methods" / f"{mod}.py"
        name = registered_name(path)
        if name is None:
            raise ConfigError(f'{path}: imported to register a method, but no class in it has @register("...")')
        out[name] = MethodEntry(
            name, f"{METHODS_PACKAGE}.{mod}", path, PKG / "schemas" / f"method_{name}.yaml", DISTRIBUTION, version
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
    module_file = Path(spec.origin).resolve()
    top = importlib.util.find_spec(ep.module.split(".")[0])
    package_dir = Path(top.origin).resolve().parent
    files = tuple(
        sorted(p for p in package_dir.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts)
    )
    entry = MethodEntry(
        ep.name,
        ep.module,
        module_file,
        module_file.parent / f"method_{ep.name}.yaml",
        dist,
        ep.dist.version if ep.dist else "?",
        module_file.parent / "configs",
        package_dir,
        files,
    )
    if not entry.schema.is_file():
        raise ConfigError(f"{where}: no schema {entry.schema} beside its module")
    return entry


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
