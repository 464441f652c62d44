"""Conda: every rule names an env file that exists, each env lists what its rules' code imports,
and environment.yml is their union. (conda itself cannot be installed here; see README.)"""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src/zslrepro"
CONDA_NAME = {"torch": "pytorch", "PIL": "pillow", "yaml": "pyyaml"}
# Optional packages pandas imports on our modules' behalf: to_markdown needs tabulate, to_latex jinja2.
IMPLIED = {"zslrepro.tables": {"tabulate", "jinja2"}}


def rules() -> dict[str, str]:
    """Rule name -> its text, for every rule in workflow/rules/*.smk."""
    out = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.MULTILINE)
        out.update(dict(zip(parts[1::2], parts[2::2])))
    return out


def env_packages(path: Path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return {re.split(r"[<>=!\s]", d)[0] for d in deps if isinstance(d, str)}


def module_path(name: str) -> Path:
    rel = name.removeprefix("zslrepro").lstrip(".").replace(".", "/")
    p = PKG / rel
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def _module_level(tree: ast.Module):
    """Nodes executed on import: the module body, not the bodies of functions and classes."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))


def third_party_imports(start: list[str]) -> set[str]:
    """Third-party packages imported, transitively, by the given zslrepro modules on import."""
    seen, todo, found = set(), list(start), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        found |= IMPLIED.get(mod, set())
        path = module_path(mod)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in _module_level(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                    if module_path(target).exists():
                        todo.append(target)
                    for a in node.names:  # "from . import msdn"
                        if module_path(f"{target}.{a.name}").exists():
                            todo.append(f"{target}.{a.name}")
                    continue
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top == "zslrepro":
                    todo.append(n)
                elif top not in sys.stdlib_module_names:
                    found.add(top)
    return found


def command_imports(command: str) -> tuple[list[str], set[str]]:
    """The zslrepro modules and the third-party packages the CLI function of ``command`` imports."""
    tree = ast.parse((PKG / "cli.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"cmd_{command}")
    mods, packages = ["zslrepro.errors"], set()  # cli.py's top level imports only the standard library
    for node in ast.walk(fn):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            mods.append(f"zslrepro.{node.module}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            packages |= {n.split(".")[0] for n in names if n.split(".")[0] not in sys.stdlib_module_names}
    return mods, packages


@pytest.mark.parametrize("rule", sorted(rules()))
def test_rule_names_an_existing_env_that_covers_its_imports(rule):
    text = rules()[rule]
    m = re.search(r'conda:\s*\n\s*"([^"]+)"', text)
    assert m, f"rule {rule} has no conda: directive"
    env = (REPO / "workflow/rules" / m.group(1)).resolve()
    assert env.is_file(), env
    command = re.search(r"python -m zslrepro ([\w-]+)", text).group(1).replace("-", "_")
    modules, direct = command_imports(command)
    needed = {CONDA_NAME.get(n, n) for n in third_party_imports(modules) | direct}
    packages = env_packages(env)
    assert "python" in packages
    assert needed <= packages, f"{env.name} lacks {sorted(needed - packages)} for rule {rule}"


def test_environment_yml_is_the_union_of_the_rule_envs():
    union = set().union(*(env_packages(p) for p in (REPO / "workflow/envs").glob("*.yaml")))
    top = env_packages(REPO / "environment.yml")
    assert union <= top, sorted(union - top)
    assert {"snakemake", "pygments"} <= top


def test_every_env_file_is_valid_conda_yaml():
    for path in (REPO / "workflow/envs").glob("*.yaml"):
        env = yaml.safe_load(path.read_text())
        assert set(env) <= {"name", "channels", "dependencies"} and env["channels"][0] == "conda-forge"
