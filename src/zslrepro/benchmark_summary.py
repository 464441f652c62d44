"""Compute per job: Snakemake's ``benchmark:`` files (wall time, peak memory, CPU time of the last
session of each job) and, for training jobs, the trainer's own record of all its sessions (a run
killed and resumed shows the time of every session, not only the last)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import layout
from .io import write_text

BENCHMARKS, RUNS = layout.folder("benchmark"), layout.folder("replicate")


def _training_records(compute_files: list[str | Path], runs_root: Path) -> dict[tuple[str, str], dict]:
    """(rule, job) -> compute record; job named as in the benchmark files."""
    out = {}
    for f in compute_files:
        rel = Path(f).relative_to(runs_root).parent  # <method>/<DS>/<run>/rep<k> or .../tuning/point<k>
        if rel.parts[-2] == "tuning":
            key = ("train_validation_point", "/".join((*rel.parts[:-2], rel.parts[-1])))
        else:
            key = ("train_method", "/".join(rel.parts))
        out[key] = json.loads(Path(f).read_text())
    return out


def summarize(
    files: list[str | Path],
    compute_files: list[str | Path] = (),
    root: str | Path = BENCHMARKS,
    runs_root: str | Path = RUNS,
) -> pd.DataFrame:
    records = _training_records(list(compute_files), Path(runs_root))
    rows = []
    for f in files:
        rel = Path(f).relative_to(root).with_suffix("")
        b = pd.read_csv(f, sep="\t").iloc[0]
        rule, job = rel.parts[0], "/".join(rel.parts[1:])
        record = records.get((rule, job), {})
        rows.append(
            {
                "rule": rule,
                "job": job,
                "wall (s)": round(float(b["s"]), 1),
                "peak RSS (MB)": round(float(b["max_rss"]), 0),
                "CPU time (s)": round(float(b["cpu_time"]), 1),
                "training, all sessions (s)": record.get("seconds"),
                "sessions": record.get("sessions"),
            }
        )
    return pd.DataFrame(rows).sort_values(["rule", "job"]).reset_index(drop=True)


def render(
    files: list[str | Path], out_csv: str | Path, out_html: str | Path, compute_files: list[str | Path] = ()
) -> None:
    table = summarize(files, compute_files)
    write_text(out_csv, table.to_csv(index=False))
    write_text(out_html, table.to_html(index=False, border=0, na_rep=""))
