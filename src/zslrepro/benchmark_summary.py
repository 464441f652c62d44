"""Summary of Snakemake's ``benchmark:`` files: wall time and peak memory per job."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import write_text


def summarize(files: list[str | Path], root: str | Path = "results/benchmarks") -> pd.DataFrame:
    rows = []
    for f in files:
        rel = Path(f).relative_to(root).with_suffix("")
        b = pd.read_csv(f, sep="\t").iloc[0]
        rows.append({"rule": rel.parts[0], "job": "/".join(rel.parts[1:]), "wall (s)": round(float(b["s"]), 1),
                     "peak RSS (MB)": round(float(b["max_rss"]), 0), "CPU time (s)": round(float(b["cpu_time"]), 1)})
    return pd.DataFrame(rows).sort_values(["rule", "job"]).reset_index(drop=True)


def render(files: list[str | Path], out_csv: str | Path, out_html: str | Path) -> None:
    table = summarize(files)
    write_text(out_csv, table.to_csv(index=False))
    write_text(out_html, table.to_html(index=False, border=0))
