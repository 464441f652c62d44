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


# The GPU rules' env switches with config `device` (workflow/rules/common.smk: TORCH_ENV).
SWITCHED = {"TORCH_ENV": ["../envs/torch-cpu.yaml", "../envs/torch-gpu.yaml"]}
TORCH_BUILDS = {"pytorch-cpu": "pytorch", "pytorch-gpu": "pytorch"}  # explicit builds of one package


def rule_envs(text: str) -> list[str]:
    """The env file(s) a rule's conda: directive names: a literal, or both variants of a switch."""
    m = re.search(r'conda:\s*\n\s*(?:"([^"]+)"|(\w+))', text)
    assert m, "no conda: directive"
    return [m.group(1)] if m.group(1) else SWITCHED[m.group(2)]


@pytest.mark.parametrize("rule", sorted(rules()))
def test_rule_names_an_existing_env_that_covers_its_imports(rule):
    text = rules()[rule]
    command = re.search(r"python -m zslrepro ([\w-]+)", text).group(1).replace("-", "_")
    modules, direct = command_imports(command)
    needed = {CONDA_NAME.get(n, n) for n in third_party_imports(modules) | direct}
    for name in rule_envs(text):
        env = (REPO / "workflow/rules" / name).resolve()
        assert env.is_file(), env
        packages = {TORCH_BUILDS.get(p, p) for p in env_packages(env)}
        assert "python" in packages
        assert needed <= packages, f"{env.name} lacks {sorted(needed - packages)} for rule {rule}"


def test_the_gpu_rules_switch_env_and_device_with_the_configuration():
    """The rules that ask for the gpu resource run in the CUDA build's env with --device cuda when the
    run is configured for a GPU, in the CPU build's with the policy as given otherwise; no other rule
    switches. Read from the parsed workflow (Snakemake's API), as a run would see it."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    def parsed(device: str) -> dict:
        with SnakemakeApi(OutputSettings()) as api:
            wf = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=ConfigSettings(config={"device": device}),
                snakefile=REPO / "workflow/Snakefile",
                workdir=REPO,
            )._workflow
            return {
                r.name: (
                    Path(str(r.conda_env)).name if r.conda_env else None,
                    getattr(r.resources.get("device"), "value", None),
                )
                for r in wf.rules
            }

    cuda, cpu, auto = parsed("cuda"), parsed("cpu"), parsed("auto")
    gpu_rules = {name for name, text in rules().items() if "gpu=GPU_PER_JOB" in text}
    assert {"train_method", "extract_features", "method_artefact", "select_hyperparameters"} <= gpu_rules
    for name in gpu_rules:
        assert cuda[name] == ("torch-gpu.yaml", "cuda"), name
        assert cpu[name] == ("torch-cpu.yaml", "cpu"), name
        assert (
            auto[name][1] in ("auto", "cuda")
            and auto[name][0] == {"auto": "torch-cpu.yaml", "cuda": "torch-gpu.yaml"}[auto[name][1]]
        )
    for name in set(cuda) - gpu_rules:
        assert cuda[name] == cpu[name], name


def test_environment_yml_is_the_union_of_the_rule_envs():
    union = set().union(*(env_packages(p) for p in (REPO / "workflow/envs").glob("*.yaml")))
    union = {TORCH_BUILDS.get(p, p) for p in union} - {"cuda-version"}  # environment.yml: one torch, the solver's
    top = env_packages(REPO / "environment.yml")
    assert union <= top, sorted(union - top)
    assert {"snakemake", "pygments"} <= top


def test_every_env_file_is_valid_conda_yaml():
    for path in (REPO / "workflow/envs").glob("*.yaml"):
        env = yaml.safe_load(path.read_text())
        assert set(env) <= {"name", "channels", "dependencies"} and env["channels"][0] == "conda-forge"
