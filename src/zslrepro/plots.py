"""Figures for the report: seen-unseen curves (with AUSUC) and training curves of one run, and each
method's verdicts (replicates, interval, the paper's value)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd

from .evaluation.metrics import ausuc
from .io import atomic_path, read_jsonl


def seen_unseen_figure(curve_files: list[str | Path], title: str, out: str | Path) -> None:
    """One line per replicate: S against U as calibrated stacking's gamma sweeps."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for path in curve_files:
        c = pd.read_csv(path)
        area = 100 * ausuc(c["U"] / 100, c["S"] / 100)
        ax.step(c["U"], c["S"], where="post", label=f"{Path(path).stem}: AUSUC {area:.1f}")
    ax.set(xlabel="unseen accuracy U (%)", ylabel="seen accuracy S (%)", xlim=(0, 100), ylim=(0, 100), title=title)
    ax.legend(fontsize=8)
    _save(fig, out)


def training_figure(history_files: list[str | Path], title: str, out: str | Path) -> None:
    """Loss and the periodic test T1 / H over the updates, one line per replicate."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    for path in history_files:
        h = pd.DataFrame(read_jsonl(path))
        name = Path(path).parent.name
        ax_loss.plot(h["update"], h["loss"], label=name)
        ax_acc.plot(h["update"], h["T1"], label=f"{name} T1")
        ax_acc.plot(h["update"], h["H"], linestyle="--", label=f"{name} H")
    ax_loss.set(xlabel="update", ylabel="training loss", title=title)
    ax_acc.set(xlabel="update", ylabel="test accuracy (%)", ylim=(0, 100), title="periodic test evaluation")
    ax_acc.legend(fontsize=7)
    _save(fig, out)


def verdict_figure(results_csv: str | Path, method: str, out: str | Path) -> None:
    """One panel per table row and dataset of ``method``, under the authors' protocol: for T1, U, S
    and H the replicates as dots, the 95 % interval as a bar, the paper's value as a red mark, and
    the verdict written beneath."""
    table = pd.read_csv(results_csv, keep_default_na=False, na_values=[""])
    rows = table[(table.method == method) & (table.protocol == "paper") & (table.metric.isin(METRIC_ORDER))]
    panels = list(rows.groupby(["variant", "dataset"], sort=True)) or [(("", "(no results)"), rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, ((variant, dataset), g) in zip(axes[0], panels):
        for x, metric in enumerate(METRIC_ORDER):
            r = g[g.metric == metric]
            if r.empty:
                continue
            r = r.iloc[0]
            values = [float(v) for v in str(r["values"]).split(";") if v]
            ax.plot([x] * len(values), values, "o", color="tab:blue", alpha=0.6, markersize=4)
            if pd.notna(r["low"]):
                ax.vlines(x + 0.15, r["low"], r["high"], color="black", linewidth=2)
            if pd.notna(r["paper"]):
                ax.plot(x + 0.3, r["paper"], marker="_", color="red", markersize=16, markeredgewidth=2)
            ax.annotate(
                str(r.get("verdict") or "").replace(" (", "\n("),
                (x, 0.02),
                xycoords=("data", "axes fraction"),
                ha="center",
                fontsize=6.5,
            )
        ax.set_xticks(range(len(METRIC_ORDER)), METRIC_ORDER)
        ax.set(ylim=(0, 100), ylabel="%", title=f"{dataset}" + (f" ({variant})" if variant else ""))
    fig.suptitle(f"{method}: replicates (dots), 95 % interval (bar), paper (red), verdict", fontsize=10)
    _save(fig, out)


METRIC_ORDER = ("T1", "U", "S", "H")


def _save(fig, out: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
