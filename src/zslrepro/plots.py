"""Figures for the report: seen-unseen curves (with AUSUC) and training curves of one run."""

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


def _save(fig, out: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
