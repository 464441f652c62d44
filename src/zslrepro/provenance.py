"""Where a number came from: the code, config, data and machine that made it.

*Code digests* are per command: the SHA-256 of the ``zslrepro`` source files a command imports
(its import closure, read from the source with :mod:`ast`, imports inside functions included), so
the workflow can make code an input of each rule: changing ``plots.py`` redraws the plots and
retrains nothing, changing a file of a method's package (``methods/<name>/``) retrains that method
and no other (a method's jobs follow the import graph from their own package; changing a shared
helper such as ``methods/regions.py`` retrains the methods that import it). The trainer puts the same digest into its checkpoint
key, so a checkpoint left by other code is not resumed.

A *provenance record* (:func:`record`) goes into every model file and metrics file: the code
(git commit and dirty flag where the package runs from a checkout, the digest of the whole package
source, the command's closure digest), the config digest, the digests of the input data files,
package versions, device, seed, determinism mode and the machine fingerprint (numerics mode, CPU,
kernel choices, library versions, threads, GPU: :func:`zslrepro.numerics.fingerprint`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from .catalog import METHODS_PACKAGE, catalog, method_entry
from .numerics import fingerprint

PKG = Path(__file__).resolve().parent
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "h5py", "pandas")


def module_file(name: str) -> Path | None:
    """The source file of the zslrepro module ``name`` (a package's ``__init__.py``), if any."""
    rel = name.removeprefix("zslrepro").lstrip(".").replace(".", "/")
    path = PKG / rel
    if path.is_dir():
        return path / "__init__.py"
    path = path.with_suffix(".py")
    return path if path.is_file() else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["zslrepro", *parts])


def imported_modules(path: Path) -> set[str]:
    """The zslrepro modules a source file imports, anywhere in it (functions included). A file
    outside the package (a plugin's) contributes its absolute ``zslrepro`` imports; its relative
    imports stay inside the plugin, whose files the digest covers whole."""
    inside = PKG in path.parents
    package = None
    if inside:
        package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "zslrepro"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            elif (node.module or "").split(".")[0] == "zslrepro":
                target = node.module
            else:
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if module_file(f"{target}.{a.name}")}
    # a module imports its parent packages' __init__ too
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:k]) for k in range(2, len(parts))}
    return {m for m in found if module_file(m)}


def import_closure(modules) -> set[str]:
    """Every zslrepro module reachable from ``modules`` through imports (no module imports a
    method's package: the registry imports it by name, so a closure holds a method only from its own
    package's files)."""
    todo, seen = sorted(modules), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo += sorted(imported_modules(module_file(mod)))
    return seen


def method_closure(method: str) -> tuple[set[Path], set[str]]:
    """A method's own files (its package, whichever its origin) and the zslrepro modules they reach."""
    own = set(method_entry(method).files)
    imports = {m for f in own if f.suffix == ".py" for m in imported_modules(f)}
    return own, import_closure(imports)


def command_files(command: str, method: str | None = None) -> list[Path]:
    """The source files behind ``python -m zslrepro <command>``: ``cli.py`` and the import closure
    of its function.

    With ``method``, the closure follows the real import graph from that method's own files (see
    :func:`import_closure`); a plugin's own files are every file of its package (zslrepro.catalog).
    Without ``method``, every built-in method's package is in it when the command builds methods."""
    functions = {n.name: n for n in ast.parse((PKG / "cli.py").read_text()).body if isinstance(n, ast.FunctionDef)}
    name = f"cmd_{command.replace('-', '_')}"
    if name not in functions:
        raise KeyError(f"zslrepro has no command {command!r}")
    # cli.py itself is part of every command; of its imports, those of the command's function and
    # of the cli helpers it calls (e.g. _run_config), not those of the other commands
    used, todo_fns = set(), [name]
    while todo_fns:
        fn = todo_fns.pop()
        if fn in used:
            continue
        used.add(fn)
        todo_fns += [
            n.func.id
            for n in ast.walk(functions[fn])
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions
        ]
    start = {"zslrepro.errors"} | {
        f"zslrepro.{n.module}"
        for fn in used
        for n in ast.walk(functions[fn])
        if isinstance(n, ast.ImportFrom) and n.level == 1
    }
    seen = import_closure(start)
    own: set[Path] = set()
    # a command that builds methods by name (through zslrepro.methods) can build any built-in one
    builds = [e.name for e in catalog().values() if e.builtin] if METHODS_PACKAGE in seen else []
    for name in [method] if method is not None else builds:
        files, reached = method_closure(name)
        own |= files
        seen |= reached
    files = {module_file(m) for m in seen} | {PKG / "cli.py"} | own
    if "zslrepro.config" in seen:  # config validation fills defaults from the shipped schemas
        schemas = ["dataset", "downloads"] + (["method_common"] if method else [])
        files |= {PKG / "schemas" / f"{s}.yaml" for s in schemas}
    return sorted(files)


def file_label(path: Path) -> str:
    """A file's name in a digest: relative to the package, or for a plugin's file, to its package's
    parent (``<plugin package>/...``), so a digest does not depend on where things are installed."""
    if PKG in path.parents:
        return str(path.relative_to(PKG))
    for entry in catalog().values():
        if not entry.builtin and entry.package_dir in path.parents:
            return str(path.relative_to(entry.package_dir.parent))
    return path.name


def _digest_files(files) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(file_label(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@cache
def code_digest(command: str, method: str | None = None) -> str:
    """Short digest of the source files behind one command (for one method)."""
    return _digest_files(command_files(command, method))


@cache
def package_digest() -> str:
    """Short digest of the whole package source (modules and schemas)."""
    return _digest_files([*PKG.rglob("*.py"), *PKG.rglob("*.yaml")])


@cache
def git_state() -> dict | None:
    """Commit and dirty flag of the checkout the package runs from (None when not a git checkout)."""
    repo = PKG.parents[1]
    if not (repo / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "src",
                "workflow",
                "config",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def file_digest(path: str | Path, chunk: int = 1 << 24, full: bool = False) -> str:
    """SHA-256 of a file, read in chunks (feature stores are gigabytes); 16 hex digits unless ``full``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest() if full else h.hexdigest()[:16]


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_description(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


def code_record(command: str, method: str | None = None) -> dict:
    return {
        "command": command,
        "closure_digest": code_digest(command, method),
        "package_digest": package_digest(),
        "git": git_state(),
    }


def record(
    command: str,
    *,
    method: str | None = None,
    config: dict | None = None,
    data: dict | None = None,
    seed: int | None = None,
    device=None,
    determinism: dict | None = None,
) -> dict:
    """The provenance of one command's output; ``data`` maps a role to an input file."""
    from .config import config_digest

    out = {"code": code_record(command, method), "versions": versions()}
    if config is not None:
        out["config_digest"] = config_digest(config)
    if data:
        out["data"] = {role: {"path": str(p), "sha256": file_digest(p)} for role, p in sorted(data.items())}
    if seed is not None:
        out["seed"] = seed
    if device is not None:
        out["device"] = device_description(device)
    out["machine"] = fingerprint(device)
    if determinism is not None:
        out["determinism"] = determinism
    return out


def code_identity(prov: dict | None) -> str:
    """A short label of the code behind a provenance record: commit (+dirty) and package digest."""
    if not prov:
        return "unknown"
    code = prov.get("code", {})
    git = code.get("git") or {}
    commit = git.get("commit", "")[:8] + ("+dirty" if git.get("dirty") else "") if git else "no-git"
    return f"{commit}/{code.get('package_digest', '?')[:8]}"


def main(argv=None) -> None:
    """``python -m zslrepro.provenance COMMAND [METHOD]``: print a command's code digest."""
    args = sys.argv[1:] if argv is None else argv
    print(
        json.dumps(
            {"digest": code_digest(*args[:2]), "files": [file_label(p) for p in command_files(*args[:2])]}, indent=1
        )
    )


if __name__ == "__main__":
    main()
