"""Nothing outside a method's own package names a method: a method is added or removed by its folder
alone. Read from the code itself: identifiers and string literals of the package source and of the
workflow; comments and docstrings (which cite papers) aside."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from zslrepro.catalog import builtin_entries
from zslrepro.provenance import PKG

REPO = PKG.parents[1]
# Where a method may be named: its own package (methods/<name>/), nowhere else in src/ or workflow/.
ALLOWED_OUTSIDE_PACKAGES: dict[str, str] = {}


def _pattern() -> re.Pattern:
    names = "|".join(sorted(builtin_entries()))
    return re.compile(rf"(?i)(?<![a-z0-9])({names})(?![a-z0-9])")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def names_in_python(path: Path, pattern: re.Pattern, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.alias)):
            text = node.name
        if text and pattern.search(text):
            hits.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}: {text[:80]!r}")
    return hits


def names_in_workflow(path: Path, pattern: re.Pattern) -> list[str]:
    """Snakemake files by tokens: names and strings, triple-quoted strings (docstrings) aside."""
    hits = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        docstring = tok.type == tokenize.STRING and tok.string.lstrip("rfbuRFBU").startswith(('"""', "'''"))
        if tok.type in (tokenize.NAME, tokenize.STRING) and not docstring and pattern.search(tok.string):
            hits.append(f"{path.relative_to(REPO)}:{tok.start[0]}: {tok.string[:80]!r}")
    return hits


def test_no_code_outside_a_method_package_names_a_method():
    pattern = _pattern()
    packages = {PKG / "methods" / e.module_file.parent.name for e in builtin_entries().values()}
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        if any(p in path.parents for p in packages) or str(path.relative_to(PKG)) in ALLOWED_OUTSIDE_PACKAGES:
            continue
        hits += names_in_python(path, pattern)
    for path in sorted([REPO / "workflow/Snakefile", *(REPO / "workflow/rules").glob("*.smk")]):
        hits += names_in_workflow(path, pattern)
    assert not hits, "a method named outside its package:\n" + "\n".join(hits)


def test_the_check_sees_a_name_in_code_and_not_in_a_docstring(tmp_path):
    name = min(builtin_entries())
    path = tmp_path / "probe.py"
    path.write_text(f'"""Cites {name.upper()}."""\n\n# {name} in a comment\nX = "{name}"\n')
    assert [h.split(": ", 1)[1] for h in names_in_python(path, _pattern(), tmp_path)] == [repr(name)]


# what reads a file: the builtin, the project's readers, torch's and numpy's loaders, torchvision's
# weight loading; a model gets what it needs through DataSpec (artefacts, pretrained state dicts)
READS = {
    "open",
    "load",
    "load_torch",
    "load_torchvision",
    "read_pretrained",
    "verified_weights",
    "read_artefacts",
    "File",
}


def calls_that_read(path: Path, root: Path = REPO) -> list[str]:
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in READS or (name.startswith(("read_", "load_")) and name != "load_state_dict"):
                hits.append(f"{path.relative_to(root)}:{node.lineno}: {name}()")
    return hits


def test_model_files_do_no_io():
    models = [e.module_file for e in builtin_entries().values()]
    assert len(models) >= 7
    hits = [h for path in models for h in calls_that_read(path)]
    assert not hits, "a model file reads a file (pass it in through DataSpec):\n" + "\n".join(hits)


def test_the_io_check_sees_a_read(tmp_path):
    probe = tmp_path / "model.py"
    probe.write_text("import torch\nx = torch.load('w.pt')\ny = open('f')\nz = net.load_state_dict(s)\n")
    found = [h.split(": ", 1)[1] for h in calls_that_read(probe, tmp_path)]
    assert found == ["load()", "open()"]
