"""The required top-level layout is in git (a clean clone must have it)."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_required_top_level_entries_are_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (e.g. an sdist): check the files instead
        tracked = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    for entry in ("workflow/", "src/", "config/", "dvc.yaml", "results/", "tests/", "environment.yml", "README.md"):
        assert any(t == entry or t.startswith(entry) for t in tracked), entry


def test_the_package_has_no_import_circle():
    """No chain of imports leads a module back to itself (a lower layer never imports a higher one),
    function-level imports included; a registry package importing its members is the one allowed
    edge into a package's ``__init__``."""
    import ast

    from zslrepro.provenance import PKG, module_file

    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = name if rel.name == "__init__" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("zslrepro")):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                members = [f"{target}.{a.name}" for a in node.names if module_file(f"{target}.{a.name}")]
                deps |= set(members) if members else {target}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("zslrepro.")}
        graph[name] = deps - {name}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for c in map(cycle_from, sorted(graph)) if c]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles[:3])


def test_every_path_the_workflow_names_is_in_the_layout():
    """The results layout lives in zslrepro.layout: every results/ path the rules and the Snakefile
    spell (their wildcards and f-string fields read as wildcards) is one of its templates."""
    import re

    from zslrepro import layout

    rules = [REPO / "workflow/Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    paths = set()
    for path in rules:
        for literal in re.findall(r"[\"'](results/[^\"']+)[\"']", path.read_text()):
            paths.add(re.sub(r"\{\{?([^}]+)\}?\}", lambda m: "{" + m.group(1).split(".")[-1] + "}", literal))
    assert len(paths) > 20, paths  # the rules' outputs are read
    # a path a function completes (a folder, a prefix of the file's name) is checked as a folder
    outside = sorted(
        p
        for p in paths
        if layout.template_of(p) is None and not any(layout.TEMPLATES[t].startswith(p) for t in layout.TEMPLATES)
    )
    assert not outside, f"results paths not in zslrepro.layout.TEMPLATES: {outside}"
    assert layout.template_of("results/x.txt") is None  # the check can fail


def test_dvc_versions_the_layout_folders():
    """dvc.yaml's outs are folders of zslrepro.layout (DVC cannot import it: a test keeps them in step)."""
    import yaml

    from zslrepro import layout

    outs = {
        str(next(iter(o)) if isinstance(o, dict) else o)
        for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
        for o in stage.get("outs", [])
    }
    results = {o for o in outs if o.startswith("results/")}
    assert results, outs
    folders = {t.split("{", 1)[0].rstrip("/") for t in layout.TEMPLATES.values()}
    assert not {o for o in results if not any(f == o or f.startswith(o + "/") for f in folders)}
