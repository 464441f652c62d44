"""Reference results: a committed snapshot of a run's small result files, a per-cell comparison of a
fresh run against it, and the README/docs tables generated from it (never retyped).

A snapshot (``zslrepro reference``) copies the metrics, test predictions, tuning choices and
attention scores of a finished run, with their provenance inside (each record carries the machine fingerprint of the job
that made it), and writes ``manifest.json`` (when, on what machine, which code, which numerics).
``zslrepro compare`` checks every cell (method, dataset, run, replicate, protocol, metric, and each
tuning choice) of a fresh run against a snapshot. Exact when, file by file, the fingerprint parts
that decide the bits match (zslrepro.numerics.deciding_parts: in portable mode the processor model
is not among them); a cell that moved then is reported as nondeterminism. Otherwise it names the
parts that differ and judges each number by the reference's own statistics: the run's mean over
the same replicates is *consistent* when it lies inside the reference's 95 % interval over seeds
and test images (zslrepro.statistics), *moved* when not. A GPU run learns whether it is within
noise of the CPU reference. Numbers without an interval (AUSUC, attention scores) keep the stated
cross-machine tolerance. On real datasets the reference is the papers' table: ``compare --paper``
prints ours beside it, with intervals and verdicts.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from . import layout
from .errors import ZslError
from .io import write_json, write_text
from .numerics import deciding_parts, fingerprint
from .provenance import code_identity
from .statistics.cells import Resampler
from .statistics.intervals import Settings
from .statistics.verdicts import consistent

METRICS = ("T1", "U", "S", "H", "AUSUC")
INTERVAL_METRICS = ("T1", "U", "S", "H")  # those computed from stored predictions
ATTENTION_SCORES = ("mass_on_object", "pointing", "pcp")
# For numbers without an interval (AUSUC, attention scores) across machine types: on the tiny test
# set one image is 2.8 points, on SYNTH's 0.3-1 point. Our choice, not a measured bound.
CROSS_PLATFORM_TOLERANCE = 5.0


def machine_summary(records: list[dict]) -> dict:
    """The machine of a snapshot's manifest: the fingerprint its jobs recorded (the first one; they
    differ in threads only), else this machine's; without threads."""
    fp = dict(next((r["machine"] for r in records if r.get("machine")), None) or fingerprint())
    fp.pop("threads", None)
    return fp


def _records(value) -> list[dict]:
    """The provenance records (dicts with a ``code`` entry) inside a result file's provenance."""
    if isinstance(value, dict):
        if "code" in value and isinstance(value["code"], dict):
            return [value]
        return [r for v in value.values() for r in _records(v)]
    return []


def deciding_fingerprints(root: Path, rel_files: list[Path]) -> dict[str, dict]:
    """For each result file and each record in its provenance, the fingerprint parts that decide its
    bits (zslrepro.numerics.deciding_parts); {} for a record made before fingerprints existed."""
    out = {}
    for rel in rel_files:
        path = root / rel
        if not path.exists() or path.suffix != ".json":
            continue
        records = _records(json.loads(path.read_text()).get("provenance") or {}) or [{}]
        for k, rec in enumerate(records):
            out[f"{rel}#{k}"] = deciding_parts(rec["machine"]) if rec.get("machine") else {}
    return out


def fingerprint_differences(ref: dict[str, dict], ours: dict[str, dict]) -> list[str]:
    """Which deciding parts differ between the reference's records and ours (empty: none)."""
    parts = set()
    for key, want in ref.items():
        got = ours.get(key)
        if got is None:
            continue
        if not want or not got:
            parts.add("no fingerprint recorded")
            continue
        for name in sorted(set(want) | set(got)):
            if want.get(name) != got.get(name):
                sub = want.get(name), got.get(name)
                if all(isinstance(v, dict) for v in sub):
                    parts |= {f"{name}.{k}" for k in set(sub[0]) | set(sub[1]) if sub[0].get(k) != sub[1].get(k)}
                else:
                    parts.add(name)
    return sorted(parts)


def result_files(results: Path) -> list[Path]:
    """The small files a reference holds: metrics, predictions, tuning choices and attention scores,
    relative to ``results``."""
    files = (
        sorted(results.glob(layout.pattern("metrics")))
        + sorted(results.glob(layout.pattern("predictions")))
        + sorted(results.glob(layout.pattern("selected")))
        + sorted(results.glob(layout.pattern("attention", file="scores.json")))
    )
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
    codes = sorted(
        {
            code_identity((json.loads((results / rel).read_text()).get("provenance") or {}).get("train"))
            for rel in files
            if rel.parts[0] == "metrics"
        }
    )
    records = [
        r
        for rel in files
        if rel.suffix == ".json"
        for r in _records(json.loads((results / rel).read_text()).get("provenance"))
    ]
    modes = sorted({(r.get("machine") or {}).get("numerics", "unrecorded") for r in records})
    manifest = {
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine_summary(records),
        "numerics": modes,
        "code": codes,
        "files": [str(f) for f in files],
        "note": note,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _cells(root: Path, rel_files: list[Path]) -> dict[str, object]:
    """Cell name -> value for every metric and tuning choice in the files."""
    cells: dict[str, object] = {}
    for rel in rel_files:
        path = root / rel
        if not path.exists() or path.suffix != ".json":
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


def predictions_of(metrics_rel: Path) -> Path:
    """Where a metrics file's predictions lie (relative): metrics/<run>/repK.json -> predictions/<run>/repK.npz."""
    return Path("predictions", *metrics_rel.parts[1:]).with_suffix(".npz")


def compare(
    reference: str | Path, results: str | Path, tolerance: float | None = None, settings: Settings | None = None
) -> tuple[pd.DataFrame, dict]:
    """Every cell of ``reference`` against the same cell of ``results``.

    Exact (each replicate's number, tolerance 0) when every result file's fingerprint parts that
    decide its bits (numerics mode, kernel choices, library versions, threads; the CPU model too in
    native mode; the GPU on a GPU) equal the reference's, or when ``tolerance`` is given. Otherwise
    each T1/U/S/H of a run is judged by the reference's interval (module doc: consistent / moved),
    the rest by CROSS_PLATFORM_TOLERANCE. Returns the per-cell table (status ok / consistent /
    moved / missing) and a summary naming the parts that differ.
    """
    reference, results = Path(reference), Path(results)
    manifest_path = reference / "manifest.json"
    if not manifest_path.exists():
        raise ZslError(
            f"{reference} is not a reference snapshot (no manifest.json); make one with `zslrepro reference`"
        )
    manifest = json.loads(manifest_path.read_text())
    files = [Path(f) for f in manifest["files"]]
    differences = fingerprint_differences(
        deciding_fingerprints(reference, files), deciding_fingerprints(results, files)
    )
    same_machine = not differences
    by_interval = tolerance is None and not same_machine
    if tolerance is None:
        tolerance = 0.0 if same_machine else CROSS_PLATFORM_TOLERANCE
    ref, ours = _cells(reference, files), _cells(results, files)
    rows, judged = [], set()
    if by_interval:
        interval_rows = _by_interval(reference, results, files, settings or Settings())
        rows += interval_rows
        judged = {c for r in interval_rows for c in r.pop("covers")}
    for cell, want in ref.items():
        if cell in judged:
            continue
        got = ours.get(cell)
        if got is None:
            rows.append({"cell": cell, "reference": want, "ours": None, "delta": None, "status": "missing"})
        elif isinstance(want, float):
            delta = got - want
            rows.append(
                {
                    "cell": cell,
                    "reference": want,
                    "ours": got,
                    "delta": delta,
                    "status": "ok" if abs(delta) <= tolerance else "moved",
                }
            )
        else:
            rows.append(
                {
                    "cell": cell,
                    "reference": want,
                    "ours": got,
                    "delta": None,
                    "status": "ok" if got == want else "moved",
                }
            )
    table = pd.DataFrame(rows, columns=["cell", "reference", "ours", "delta", "status", "interval"])
    moved = int((table.status == "moved").sum())
    summary = {
        "cells": len(table),
        "moved": moved,
        "missing": int((table.status == "missing").sum()),
        "tolerance": tolerance,
        "by_interval": by_interval,
        "same_machine_type": same_machine,
        "differences": differences,
        "nondeterministic": same_machine and tolerance == 0 and moved > 0,
        "reference_machine": manifest["machine"],
    }
    return table, summary


def _by_interval(reference: Path, results: Path, files: list[Path], settings: Settings) -> list[dict]:
    """One row per run, protocol and T1/U/S/H: our mean over the reference's replicates against the
    reference's interval, computed from its stored predictions. ``covers``: the per-replicate cells
    the row stands for (a run without all its replicates here is left to the per-cell rows: missing)."""
    runs: dict[str, list[tuple[Path, dict]]] = {}
    for rel in files:
        if rel.parts[0] == "metrics" and (reference / predictions_of(rel)).exists():
            data = json.loads((reference / rel).read_text())
            runs.setdefault(f"{data['method']}/{data['dataset']}/{data['run']}", []).append((rel, data))
    resampler, rows = Resampler(settings), []
    for key, members in sorted(runs.items()):
        members.sort(key=lambda m: m[1]["replicate"])
        if not all((results / rel).exists() for rel, _ in members):
            continue
        theirs = [json.loads((results / rel).read_text()) for rel, _ in members]
        dataset = members[0][1]["dataset"]
        for protocol in members[0][1]["protocols"]:
            for metric in INTERVAL_METRICS:
                if metric not in members[0][1]["protocols"][protocol]:
                    continue
                want = [m["protocols"][protocol][metric] for _, m in members]
                got = float(sum(t["protocols"][protocol][metric] for t in theirs) / len(theirs))
                c = resampler.cell(
                    (key, protocol),
                    dataset,
                    protocol,
                    metric,
                    [reference / predictions_of(r) for r, _ in members],
                    want,
                )
                rows.append(
                    {
                        "cell": f"{key} {protocol} {metric} (mean of {c.n})",
                        "reference": c.mean,
                        "ours": got,
                        "delta": got - c.mean,
                        "status": "consistent" if consistent(got, c.low, c.high) else "moved",
                        "interval": f"[{c.low:.2f}, {c.high:.2f}]",
                        "covers": [f"{key}/rep{m['replicate']} {protocol} {metric}" for _, m in members],
                    }
                )
    return rows


def _machine_label(machine: dict) -> str:
    cpu = machine.get("cpu") or {}
    if isinstance(cpu, str):  # a manifest written before fingerprints
        return cpu
    return cpu.get("model_name") or cpu.get("platform") or "unknown CPU"


def report(table: pd.DataFrame, summary: dict) -> str:
    """Text for the terminal: the cells that moved or are missing, then one summary line."""
    lines = []
    bad = table[~table.status.isin(["ok", "consistent"])]
    for _, r in bad.iterrows():
        if r.status == "missing":
            lines.append(f"MISSING {r.cell} (reference {r.reference})")
        elif isinstance(r.reference, str):  # a tuning choice
            lines.append(f"MOVED   {r.cell}: reference {r.reference}, ours {r.ours}")
        elif isinstance(r.interval, str):
            lines.append(
                f"MOVED   {r.cell}: ours {r.ours:.2f} outside the reference's interval {r.interval} "
                f"(its mean {r.reference:.2f})"
            )
        else:
            lines.append(f"MOVED   {r.cell}: reference {r.reference:.2f}, ours {r.ours:.2f} ({r.delta:+.2f})")
    if summary["same_machine_type"]:
        kind = f"same numerics fingerprint: exact, tolerance {summary['tolerance']:g} points"
    elif summary.get("by_interval"):
        kind = (
            f"fingerprints differ: {', '.join(summary['differences'])} (reference made on "
            f"{_machine_label(summary['reference_machine'])}): each T1/U/S/H judged by the reference's "
            f"95 % interval, other numbers by the cross-machine tolerance {summary['tolerance']:g} points"
        )
    else:
        kind = f"tolerance {summary['tolerance']:g} points, as asked"
    lines.append(
        f"{summary['cells'] - summary['moved'] - summary['missing']} of {summary['cells']} cells agree "
        f"({kind}); {summary['moved']} moved, {summary['missing']} missing"
    )
    if summary.get("nondeterministic"):
        lines.append(
            "NONDETERMINISM: the fingerprints that decide the bits match the reference's, yet cells "
            "moved: the same code, data and kernels computed other numbers (docs/reproducibility.md)"
        )
    return "\n".join(lines)


def write_check(table: pd.DataFrame, text: str, reference, out_md, out_csv=None) -> None:
    """The workflow's reference check: the summary, then every cell (status, interval)."""
    shown = table.astype(object).where(table.notna(), "")
    lines = [
        f"# This run against the committed reference `{reference}`",
        "",
        (
            "Same numerics fingerprint: every number of every replicate must match exactly (ok). Another "
            "fingerprint (a GPU, other kernels): each T1/U/S/H is consistent when this run's mean lies "
            "inside the reference's 95 % interval over seeds and test images, moved when not "
            "(docs/verdicts.md)."
        ),
        "",
        "```",
        text,
        "```",
        "",
        shown.to_markdown(index=False) if len(table) else "(no cells)",
        "",
    ]
    write_text(out_md, "\n".join(lines))
    if out_csv:
        write_text(out_csv, table.to_csv(index=False, float_format="%.4f"))


# ---- tables in README and docs, generated from a snapshot ----------------------------------------

BLOCK = re.compile(
    r"(<!-- zslrepro:(?P<name>[\w-]+) begin[^>]*-->\n)(?P<body>.*?)(<!-- zslrepro:(?P=name) end -->)", flags=re.DOTALL
)


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
    metrics = sorted(reference.glob(layout.pattern("metrics")))
    predictions = [reference / predictions_of(m.relative_to(reference)) for m in metrics]
    if not all(p.exists() for p in predictions):
        predictions = None  # a snapshot made before predictions were kept: no intervals
    body = _table_body(lambda out: render(metrics, paper_results, out, predictions)["md"]).replace("## ", "#### ")
    origin = (
        f"Generated by `python -m zslrepro docs-tables` from the reference snapshot `{reference}` "
        f"(made {manifest['created']} on {machine_description(manifest)}; code {', '.join(manifest['code'])}). "
        "Regenerate the run with the main job and check it with `python -m zslrepro compare`."
    )
    return f"{origin}\n\n{body.strip()}\n"


def machine_description(manifest: dict) -> str:
    """'AMD EPYC (x86_64, family 26 model 2), no GPU, torch 2.14.1, portable numerics'."""
    m = manifest["machine"]
    if isinstance(m.get("cpu"), str):  # a manifest written before fingerprints
        return f"{m['cpu']}, {m['platform']}{', ' + m['gpu'] if m.get('gpu') else ', no GPU'}, torch {m['torch']}"
    cpu = m["cpu"]
    gpu = (m.get("gpu") or {}).get("name")
    return (
        f"{cpu.get('model_name')} ({cpu.get('platform')}, {cpu.get('vendor')} family {cpu.get('family')} "
        f"model {cpu.get('model')}), {gpu or 'no GPU'}, torch {m['libraries']['torch']}, "
        f"{'/'.join(manifest.get('numerics', []))} numerics"
    )


def localisation_block(reference: str | Path) -> str:
    """The Markdown localisation table of a snapshot's attention scores, with where it comes from."""
    from .tables import render_localisation

    reference = Path(reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    scores = sorted(reference.glob("attention/*/*/*/scores.json"))
    if not scores:
        return "(the reference snapshot holds no attention scores)\n"
    body = _table_body(lambda out: render_localisation(scores, out)["md"])
    return (
        f"Generated by `python -m zslrepro docs-tables` from the attention scores in `{reference}` "
        f"(made {manifest['created']}, {machine_description(manifest)}).\n\n{body.strip()}\n"
    )


def detectable_block(reference: str | Path, settings: Settings | None = None, ns=(1, 3, 5, 10, 20)) -> str:
    """How many seeds: for each T1 and H of the snapshot (authors' protocol), its seed spread and
    test-image noise, and the smallest difference from a fixed value (a paper's) that n replicates of
    that spread would detect (zslrepro.statistics.intervals.detectable_at)."""
    from .statistics.intervals import detectable_at
    from .tables import collect, row_label, uncertainty

    settings = settings or Settings()
    reference = Path(reference)
    metrics = sorted(reference.glob(layout.pattern("metrics")))
    predictions = [reference / predictions_of(m.relative_to(reference)) for m in metrics]
    if not metrics or not all(p.exists() for p in predictions):
        return "(the reference snapshot holds no predictions)\n"
    cells, _ = uncertainty(collect(metrics, predictions), settings)
    rows = []
    for (method, variant, dataset, protocol, metric, _run), c in sorted(cells.items()):
        if protocol != "paper" or metric not in ("T1", "H") or c.n < 2:
            continue
        row = {
            "method": row_label(method, variant),
            "dataset": dataset,
            "metric": metric,
            "n": c.n,
            "seed std": f"{c.std:.2f}",
            "image SE": f"{c.evaluation_se:.2f}",
        }
        for n in ns:
            value = f"{detectable_at(n, c.std, c.evaluation_se, settings):.1f}"
            row[f"n = {n}"] = f"{value} (images only)" if n == 1 else value
        rows.append(row)
    manifest = json.loads((reference / "manifest.json").read_text())
    return (
        f"Generated by `python -m zslrepro docs-tables` from `{reference}` (made {manifest['created']}, "
        f"{machine_description(manifest)}); {settings.resamples} resamples, level {settings.level}, "
        f"power {settings.power}. n = 1 counts test-image noise only: a single run cannot see its seed "
        f"spread, so its smaller figure is not a better run, only a blind one.\n\n{pd.DataFrame(rows).to_markdown(index=False) if rows else '(no cell with n > 1)'}\n"
    )


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
