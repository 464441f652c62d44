"""Reference results: a committed snapshot of a run's small result files, a per-cell comparison of a
fresh run against it, and the README/docs tables generated from it (never retyped).

A snapshot (``zslrepro reference``) copies the metrics and tuning choices of a finished run, with
their provenance inside, and writes ``manifest.json`` (when, on what machine type, which code).
``zslrepro compare`` checks every cell (method, dataset, run, replicate, protocol, metric, and each
tuning choice) of a fresh run against a snapshot: exact on the same machine type (same CPU model,
thread count, torch version and platform: the arithmetic is then the same), within a stated
tolerance across machine types. On real datasets the reference is the papers' table:
``compare --paper`` prints ours beside it.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .errors import ZslError
from .io import write_json, write_text
from .provenance import code_identity, versions

METRICS = ("T1", "U", "S", "H", "AUSUC")
ATTENTION_SCORES = ("mass_on_object", "pointing", "pcp")
# Across machine types the float arithmetic differs (kernels, thread count, instruction set); on
# the tiny test set one image is 2.8 points, on SYNTH's 0.3-1 point. Our choice, not a measured bound.
CROSS_PLATFORM_TOLERANCE = 5.0


def machine_type() -> dict:
    """What decides whether two runs do the same float arithmetic."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.machine(), "cpu": cpu, "gpu": gpu, "torch": versions().get("torch")}


def result_files(results: Path) -> list[Path]:
    """The small files a reference holds: metrics, tuning choices and attention scores, relative to ``results``."""
    files = (sorted(results.glob("metrics/*/*/*/rep*.json")) + sorted(results.glob("runs/*/*/*/tuning/selected.json"))
             + sorted(results.glob("attention/*/*/*/scores.json")))
    return [f.relative_to(results) for f in files]


def snapshot(results: str | Path, out: str | Path, note: str = "") -> dict:
    """Copy a finished run's metrics and tuning choices into ``out`` with a manifest."""
    results, out = Path(results), Path(out)
    files = result_files(results)
    if not files:
        raise ZslError(f"no metrics under {results}/metrics: run the workflow first")
    if out.exists():
        shutil.rmtree(out)
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results / rel, out / rel)
    codes = sorted({code_identity((json.loads((results / rel).read_text()).get("provenance") or {}).get("train"))
                    for rel in files if rel.parts[0] == "metrics"})
    manifest = {"created": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine_type(),
                "code": codes, "files": [str(f) for f in files], "note": note}
    write_json(out / "manifest.json", manifest)
    return manifest


def _cells(root: Path, rel_files: list[Path]) -> dict[str, object]:
    """Cell name -> value for every metric and tuning choice in the files."""
    cells: dict[str, object] = {}
    for rel in rel_files:
        path = root / rel
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        if rel.parts[0] == "metrics":
            key = f"{data['method']}/{data['dataset']}/{data['run']}/rep{data['replicate']}"
            for protocol, values in data["protocols"].items():
                for metric in METRICS:
                    if metric in values:
                        cells[f"{key} {protocol} {metric}"] = float(values[metric])
        elif rel.parts[0] == "attention":
            key = f"{data['method']}/{data['dataset']}/{data['run']} attention"
            for kind, values in (data.get("scores") or {}).items():
                for score in ATTENTION_SCORES:
                    if score in values:
                        cells[f"{key} {kind} {score}"] = float(values[score])
            for score in ("iou", "fixed_box_iou"):
                if score in data.get("boxes", {}):
                    cells[f"{key} boxes {score}"] = float(data["boxes"][score])
        else:
            key = f"{data['method']}/{data['dataset']}/{data['run']}"
            cells[f"{key} tuning choice"] = json.dumps(data["selected"], sort_keys=True)
    return cells


def compare(reference: str | Path, results: str | Path, tolerance: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Every cell of ``reference`` against the same cell of ``results``.

    ``tolerance`` None: exact (0) when this machine is of the reference's type, else
    CROSS_PLATFORM_TOLERANCE. Returns the per-cell table (status ok / moved / missing) and a summary.
    """
    reference, results = Path(reference), Path(results)
    manifest_path = reference / "manifest.json"
    if not manifest_path.exists():
        raise ZslError(f"{reference} is not a reference snapshot (no manifest.json); make one with `zslrepro reference`")
    manifest = json.loads(manifest_path.read_text())
    files = [Path(f) for f in manifest["files"]]
    same_machine = manifest["machine"] == machine_type()
    if tolerance is None:
        tolerance = 0.0 if same_machine else CROSS_PLATFORM_TOLERANCE
    ref, ours = _cells(reference, files), _cells(results, files)
    rows = []
    for cell, want in ref.items():
        got = ours.get(cell)
        if got is None:
            rows.append({"cell": cell, "reference": want, "ours": None, "delta": None, "status": "missing"})
        elif isinstance(want, float):
            delta = got - want
            rows.append({"cell": cell, "reference": want, "ours": got, "delta": delta,
                         "status": "ok" if abs(delta) <= tolerance else "moved"})
        else:
            rows.append({"cell": cell, "reference": want, "ours": got, "delta": None,
                         "status": "ok" if got == want else "moved"})
    table = pd.DataFrame(rows, columns=["cell", "reference", "ours", "delta", "status"])
    summary = {"cells": len(table), "moved": int((table.status == "moved").sum()),
               "missing": int((table.status == "missing").sum()), "tolerance": tolerance,
               "same_machine_type": same_machine, "reference_machine": manifest["machine"]}
    return table, summary


def report(table: pd.DataFrame, summary: dict) -> str:
    """Text for the terminal: the cells that moved or are missing, then one summary line."""
    lines = []
    bad = table[table.status != "ok"]
    for _, r in bad.iterrows():
        if r.status == "missing":
            lines.append(f"MISSING {r.cell} (reference {r.reference})")
        elif isinstance(r.reference, str):  # a tuning choice
            lines.append(f"MOVED   {r.cell}: reference {r.reference}, ours {r.ours}")
        else:
            lines.append(f"MOVED   {r.cell}: reference {r.reference:.2f}, ours {r.ours:.2f} ({r.delta:+.2f})")
    kind = ("same machine type: exact" if summary["same_machine_type"] else
            f"another machine type ({summary['reference_machine']['cpu']}): tolerance")
    lines.append(f"{summary['cells'] - summary['moved'] - summary['missing']} of {summary['cells']} cells agree "
                 f"({kind} {summary['tolerance']:g} points); {summary['moved']} moved, {summary['missing']} missing")
    return "\n".join(lines)


# ---- tables in README and docs, generated from a snapshot ----------------------------------------

BLOCK = re.compile(r"(<!-- zslrepro:(?P<name>[\w-]+) begin[^>]*-->\n)(?P<body>.*?)(<!-- zslrepro:(?P=name) end -->)",
                   flags=re.S)


def _table_body(render_md) -> str:
    """The Markdown a table renderer writes (``render_md(folder)`` returns its .md path), without
    its title line; rendered in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(render_md(Path(tmp))).read_text().split("\n", 2)[2]


def results_block(reference: str | Path, paper_results: str | Path) -> str:
    """The Markdown of the results tables of a snapshot, with where it comes from."""
    from .tables import render

    reference = Path(reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    metrics = sorted(reference.glob("metrics/*/*/*/rep*.json"))
    body = _table_body(lambda out: render(metrics, paper_results, out)["md"]).replace("## ", "#### ")
    m = manifest["machine"]
    origin = (f"Generated by `python -m zslrepro docs-tables` from the reference snapshot `{reference}` "
              f"(made {manifest['created']} on {m['cpu']}, {m['platform']}"
              f"{', ' + m['gpu'] if m.get('gpu') else ', no GPU'}, torch {m['torch']}; code {', '.join(manifest['code'])}). "
              "Regenerate the run with the main job and check it with `python -m zslrepro compare`.")
    return f"{origin}\n\n{body.strip()}\n"


def localisation_block(reference: str | Path) -> str:
    """The Markdown localisation table of a snapshot's attention scores, with where it comes from."""
    from .tables import render_localisation

    reference = Path(reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    scores = sorted(reference.glob("attention/*/*/*/scores.json"))
    if not scores:
        return "(the reference snapshot holds no attention scores)\n"
    body = _table_body(lambda out: render_localisation(scores, out)["md"])
    return (f"Generated by `python -m zslrepro docs-tables` from the attention scores in `{reference}` "
            f"(made {manifest['created']}, {manifest['machine']['cpu']}).\n\n{body.strip()}\n")


def update_blocks(paths: list[str | Path], blocks: dict[str, str], check: bool = False) -> list[Path]:
    """Replace each ``<!-- zslrepro:NAME begin -->...<!-- zslrepro:NAME end -->`` block of the given
    files by ``blocks[NAME]``; with ``check``, change nothing and return the files that differ."""
    stale = []
    for path in map(Path, paths):
        text = path.read_text()

        def fill(m):
            if m.group("name") not in blocks:
                return m.group(0)
            return m.group(1) + blocks[m.group("name")] + m.group(4)

        new = BLOCK.sub(fill, text)
        if new != text:
            stale.append(path)
            if not check:
                write_text(path, new)
    return stale
