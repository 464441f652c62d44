"""Results tables: method x dataset rows, T1/U/S/H per protocol, mean +- std over replicates and
the 95 % interval over seeds and test images, with the paper's number, our delta and, under the
authors' protocol, the verdict beside each cell (zslrepro.statistics, docs/verdicts.md); and the
pairwise table of which differences between methods are real.

A method trained as separate runs (e.g. DEDN's ZSL and GZSL runs) contributes to each column only
from the run its config's ``report`` names (recorded as ``reports`` in each metrics file). A run
with a ``table_row`` (a variant, e.g. DRMN on cached features) gets a row of its own.

Writes ``results.csv`` (long form: one row per method, dataset, protocol and metric),
``results.md``, ``results.tex`` and ``results.html`` (one wide table per protocol), and
``pairwise.csv``/``.md``/``.html``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .io import write_text
from .provenance import code_identity
from .statistics.cells import Resampler, pairwise
from .statistics.intervals import Settings
from .statistics.verdicts import verdict

METRICS = ("T1", "U", "S", "H")
LEGEND = (
    "Values in %, mean ± std over replicates (n), then [the 95 % interval over seeds and test images]. "
    "'paper' = the number the paper reports, Δ = ours − paper; blank where the paper gives none. "
    "Verdicts (authors' protocol, against the paper's number; the rule: docs/verdicts.md): reproduced "
    "= the paper's value inside our interval; within the seed range = outside it but between our "
    "lowest and highest replicate; below / above = outside both; 'evaluation noise only' = one "
    "replicate, the interval holds test-image noise only. Detectable Δ: the smallest difference from "
    "the paper's value this run's n and spread detect (80 % power, 5 % level). AUSUC: mean ± std only."
)
PROTOCOL_TITLES = {
    "paper": "Authors' protocol (best evaluation on the test set; H and T1 maximised separately, or T1 at the best H where the authors did so)",
    "clean": "Clean protocol (final model, no selection on the test set, fixed gamma)",
}


def load_paper_results(path: str | Path) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return data.get("methods", {})


def code_ids(m: dict) -> str:
    """The code versions behind one metrics file: training's and evaluation's, ';'-joined if they differ."""
    prov = m.get("provenance") or {}
    ids = dict.fromkeys(code_identity(prov.get(step)) for step in ("train", "evaluate"))
    return "; ".join(ids)


def collect(metric_files: list[str | Path], prediction_files: list[str | Path] | None = None) -> pd.DataFrame:
    """One row per (metrics file, protocol, reported metric); ``prediction_files``, one per metrics
    file in the same order, give each row its predictions (intervals, verdicts)."""
    rows = []
    if prediction_files is not None and len(prediction_files) != len(metric_files):
        raise ValueError(f"{len(metric_files)} metrics files but {len(prediction_files)} prediction files")
    for k, f in enumerate(metric_files):
        m = json.loads(Path(f).read_text())
        code = code_ids(m)
        reported = set(m.get("reports", [*METRICS, "AUSUC"]))
        for protocol, values in m["protocols"].items():
            for metric in (*METRICS, "AUSUC"):
                if metric in values and metric in reported:
                    rows.append(
                        {
                            "method": m["method"],
                            "variant": m.get("table_row") or "",
                            "dataset": m["dataset"],
                            "protocol": protocol,
                            "metric": metric,
                            "run": m.get("run", "main"),
                            "replicate": m["replicate"],
                            "value": values[metric],
                            "code": code,
                            "chosen_on_test": m.get("chosen_on_test") or "",
                            "predictions": str(prediction_files[k]) if prediction_files else "",
                        }
                    )
    return pd.DataFrame(
        rows,
        columns=[
            "method",
            "variant",
            "dataset",
            "protocol",
            "metric",
            "run",
            "replicate",
            "value",
            "code",
            "chosen_on_test",
            "predictions",
        ],
    )


KEYS = ["method", "variant", "dataset", "protocol", "metric", "run"]
INTERVAL_COLUMNS = ["low", "high", "min", "max", "evaluation_se", "se", "detectable", "basis"]


def row_label(method: str, variant: str) -> str:
    return f"{method} — {variant}" if variant else method


def uncertainty(runs: pd.DataFrame, settings: Settings) -> tuple[dict, dict]:
    """Each cell's interval (zslrepro.statistics) from its replicates' predictions, keyed like the
    table's groups; and each cell's replicate values. Cells without predictions (AUSUC, or metrics
    given without prediction files) are left out."""
    resampler, cells, observed = Resampler(settings), {}, {}
    rows = runs[(runs.predictions != "") & (runs.metric != "AUSUC")]
    for key, g in rows.groupby(KEYS, sort=True):
        g = g.sort_values("replicate")
        method, variant, dataset, protocol, metric, run = key
        cells[key] = resampler.cell(
            (row_label(method, variant), run, metric), dataset, protocol, metric, list(g.predictions), list(g.value)
        )
        observed[key] = g.value.to_numpy()
    return cells, observed


def summarize(runs: pd.DataFrame, paper: dict, cells: dict | None = None) -> pd.DataFrame:
    """Mean, std and count over replicates, each cell's interval and spread (``cells``, from
    :func:`uncertainty`), joined with the paper's numbers and, under the authors' protocol, the verdict."""
    grouped = runs.groupby(KEYS, sort=True)
    table = (
        grouped["value"]
        .agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan, n="count")
        .reset_index()
    )
    table["code"] = grouped["code"].agg(lambda v: "; ".join(sorted(set("; ".join(v).split("; "))))).values
    table["chosen_on_test"] = grouped["chosen_on_test"].agg(lambda v: next((x for x in v if x), "")).values
    table["values"] = grouped["value"].agg(lambda v: ";".join(f"{x:.4f}" for x in v)).values  # replicates, in order
    cells = cells or {}
    for column in INTERVAL_COLUMNS:
        table[column] = [
            getattr(cells[k], column) if k in cells else (np.nan if column != "basis" else "")
            for k in table[KEYS].itertuples(index=False, name=None)
        ]

    def paper_value(row):
        method = paper.get(row["method"], {})
        # a variant row may have numbers of its own (e.g. the released models' README numbers)
        results = method.get("variants", {}).get(row["variant"], {}).get("results") or method.get("results", {})
        entry = results.get(row["dataset"], {})
        value = entry.get(row["metric"])
        return np.nan if value is None else float(value)

    table["paper"] = table.apply(paper_value, axis=1) if len(table) else []
    table["delta"] = table["mean"] - table["paper"]

    def verdict_of(row):
        if row["protocol"] != "paper" or row["metric"] == "AUSUC" or np.isnan(row["low"]):
            return ""
        return str(verdict(row["paper"], row["low"], row["high"], row["min"], row["max"], int(row["n"])))

    table["verdict"] = table.apply(verdict_of, axis=1) if len(table) else []
    return table


def _fmt_cell(mean: float, std: float, low: float = np.nan, high: float = np.nan) -> str:
    text = f"{mean:.1f}" if np.isnan(std) else f"{mean:.1f} ± {std:.1f}"
    return text if np.isnan(low) else f"{text} [{low:.1f}, {high:.1f}]"


def _fmt(x: float, signed: bool = False) -> str:
    if x is None or np.isnan(x):
        return ""
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def wide(table: pd.DataFrame, protocol: str, paper: dict) -> pd.DataFrame:
    sub = table[table.protocol == protocol]
    metrics = [m for m in (*METRICS, "AUSUC") if m in set(sub.metric)]
    rows = []
    for (method, variant, dataset), g in sub.groupby(["method", "variant", "dataset"], sort=True):
        info = paper.get(method, {})
        row = {
            "Method": info.get("title", method)
            + (f" [{info['label']}]" if info.get("label") else "")
            + (f" — {variant}" if variant else "")
            + (" ⚠test-tuned" if any(g.chosen_on_test) else ""),
            "Dataset": dataset,
            "n": int(g.n.max()),
        }
        codes = sorted(set("; ".join(g.code).split("; ")))
        row["Code"] = codes[0] if len(codes) == 1 else "⚠ mixed: " + ", ".join(codes)
        for metric in metrics:
            r = g[g.metric == metric]
            if r.empty:
                continue
            r = r.iloc[0]
            row[metric] = _fmt_cell(r["mean"], r["std"], r["low"], r["high"])
            if metric != "AUSUC":
                row[f"{metric} paper"] = _fmt(r["paper"])
                row[f"Δ{metric}"] = _fmt(r["delta"], signed=True)
                if protocol == "paper" and r["verdict"]:
                    row[f"{metric} verdict"] = r["verdict"]
        detectable = [g[g.metric == m].iloc[0]["detectable"] for m in METRICS if m in set(g.metric)]
        if protocol == "paper" and detectable and not np.isnan(detectable).all():
            row["detectable Δ (T1, U, S, H)"] = ", ".join(_fmt(d) for d in detectable)
        rows.append(row)
    out = pd.DataFrame(rows)
    empty = [c for c in out.columns if (c.endswith(" paper") or c.startswith("Δ")) and (out[c] == "").all()]
    return out.drop(columns=empty)  # no paper number for any row (e.g. SYNTH): no paper/Δ columns


def render(
    metric_files: list[str | Path],
    paper_results: str | Path,
    out_dir: str | Path,
    prediction_files: list[str | Path] | None = None,
    settings: Settings | None = None,
) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paper = load_paper_results(paper_results)
    settings = settings or Settings()
    runs = collect(metric_files, prediction_files)
    cells, observed = uncertainty(runs, settings)
    table = summarize(runs, paper, cells)
    paths = {ext: out_dir / f"results.{ext}" for ext in ("csv", "md", "tex", "html")}
    paths |= render_pairwise(cells, observed, settings, out_dir)
    write_text(paths["csv"], table.to_csv(index=False, float_format="%.4f"))
    md, tex, html = ["# Results", ""], [], []
    for protocol in ("paper", "clean"):
        w = wide(table, protocol, paper)
        if w.empty:
            continue
        md += [f"## {PROTOCOL_TITLES[protocol]}", "", w.to_markdown(index=False), ""]
        html += [f"<h3>{PROTOCOL_TITLES[protocol]}</h3>", w.to_html(index=False, border=0)]
        tex += [
            f"% {PROTOCOL_TITLES[protocol]}",
            w.to_latex(index=False, caption=PROTOCOL_TITLES[protocol], label=f"tab:{protocol}"),
            "",
        ]
    versions = sorted(set("; ".join(table.code).split("; "))) if len(table) else []
    provenance_line = (
        f"Code (commit/package digest, from each metrics file's provenance): {versions[0]}, all rows."
        if len(versions) == 1
        else f"⚠ Mixed provenance: these rows come from {len(versions)} code versions "
        f"({', '.join(versions)}); rerun the workflow to bring them to one."
    )
    md += [provenance_line, ""]
    html += [f"<p>{provenance_line}</p>"]
    tuned = table[table.chosen_on_test != ""].drop_duplicates(["method", "dataset", "chosen_on_test"])
    for _, r in tuned.iterrows():
        line = (
            f"⚠test-tuned: {paper.get(r['method'], {}).get('title', r['method'])} on {r['dataset']}: some "
            f"values of its config were chosen looking at test numbers ({r['chosen_on_test']}); its "
            "'clean' row is therefore not free of test-set selection."
        )
        md += [f"- {line}"]
        html += [f"<p>{line}</p>"]
    if len(tuned):
        md += [""]
    for line in reference_sources(table, paper):
        md += [f"- {line}"]
        html += [f"<p>{line}</p>"]
    notes = [
        (info.get("title", name), info["note"])
        for name, info in paper.items()
        if info.get("note") and name in set(table.method)
    ]
    md += [LEGEND, *[f"- **{title}**: {note}" for title, note in notes], ""]
    html += [f"<p>{LEGEND}</p>", "<ul>", *[f"<li><b>{title}</b>: {note}</li>" for title, note in notes], "</ul>"]
    write_text(paths["md"], "\n".join(md))
    write_text(paths["html"], "\n".join(html))
    write_text(paths["tex"], "\n".join(tex))
    return paths


def pairwise_table(cells: dict, observed: dict, settings: Settings) -> pd.DataFrame:
    """Every pair of table rows of a dataset, T1 and H under both protocols (the rows' reporting runs)."""
    by_row = {(k[2], row_label(k[0], k[1]), k[3], k[4]): c for k, c in cells.items()}
    values = {(k[2], row_label(k[0], k[1]), k[3], k[4]): v for k, v in observed.items()}
    return pairwise(by_row, values, settings)


PAIRWISE_LEGEND = (
    "For each dataset, pair of methods, protocol and metric: A - B (mean over replicates, in points), "
    "its 95 % interval (image resamples shared by both, so paired on test images; seeds resampled "
    "independently, widened to t tails), and P(A > B), the share of replicate pairs in which A beats B "
    "(ties count half). A pair whose interval covers 0 is 'not distinguishable at n = n_A, n_B'; more "
    "replicates narrow the seed part of the interval, never the test-image part (docs/verdicts.md)."
)


def render_pairwise(cells: dict, observed: dict, settings: Settings, out_dir: Path) -> dict[str, Path]:
    table = pairwise_table(cells, observed, settings)
    shown = table.copy()
    for column in ("A - B", "low", "high"):
        shown[column] = shown[column].map(lambda v: f"{v:+.1f}")
    shown["P(A > B)"] = shown["P(A > B)"].map(lambda v: f"{v:.2f}")
    paths = write_small_table(
        shown,
        out_dir / "pairwise",
        "Which differences between methods are real",
        PAIRWISE_LEGEND,
        "(fewer than two methods)",
    )
    write_text(paths["csv"], table.to_csv(index=False, float_format="%.4f"))
    return {f"pairwise_{ext}": path for ext, path in paths.items()}


def reference_sources(table: pd.DataFrame, paper: dict) -> list[str]:
    """What kind of number each verdict is taken against (paper table, released model, the authors'
    notebook run, a secondary aggregator) and where it was read, per row and dataset."""
    lines = []
    for (method, variant, dataset), _ in table.groupby(["method", "variant", "dataset"], sort=True):
        info = paper.get(method, {})
        results = info.get("variants", {}).get(variant, {}).get("results") or info.get("results", {})
        entry = results.get(dataset)
        if entry:
            title = info.get("title", method) + (f" — {variant}" if variant else "")
            lines.append(
                f"Reference for {title} on {dataset}: {entry.get('kind', 'unlabelled')}; {entry.get('source', '')}"
            )
    return lines


def render_tuning(selected_files: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """The values each tuned run chose on the validation classes, with their validation figures."""
    rows = []
    for f in selected_files:
        s = json.loads(Path(f).read_text())
        best = s["validation"]
        ties = s.get("ties", [])
        rows.append(
            {
                "Method": s["method"],
                "Dataset": s["dataset"],
                "Run": s["run"],
                "Chosen on validation classes": ", ".join(f"{k} = {v}" for k, v in sorted(s["selected"].items())),
                "by": s["metric"],
                "candidates": len(s["candidates"]),
                "tied": (f"tie: {len(ties)} other(s) within {s['tie_within']:g}" if ties else "clear"),
                **{f"val {m}": round(best[m], 1) for m in METRICS},
            }
        )
    legend = (
        "Hyper-parameters chosen on the validation split (train_loc minus a held-out part as seen, "
        "val_loc as unseen classes), never on the test set; 'val' columns are validation figures, "
        "not test results. 'tied': how many other candidates scored within the config's tie_within "
        "points of the choice (a choice among ties is not a finding). "
        "Every candidate's figures: results/runs/<method>/<DS>/<run>/tuning/selected.json."
    )
    return write_small_table(
        pd.DataFrame(rows),
        Path(out_dir) / "tuning",
        "Hyper-parameters chosen on the validation classes",
        legend,
        "(no tuned run)",
    )


def write_small_table(table: pd.DataFrame, stem: Path, title: str, legend: str, empty: str) -> dict[str, Path]:
    """``stem``.csv, .md and .html of a table with its title and legend; blank cells where a value is missing."""
    paths = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "html")}
    write_text(paths["csv"], table.to_csv(index=False))
    shown = table.astype(object).where(table.notna(), "")
    write_text(
        paths["md"],
        "\n".join([f"# {title}", "", shown.to_markdown(index=False) if len(table) else empty, "", legend, ""]),
    )
    write_text(
        paths["html"],
        (table.to_html(index=False, border=0, na_rep="") if len(table) else f"<p>{empty}</p>") + f"<p>{legend}</p>",
    )
    return paths


def render_localisation(score_files: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Where each method looks: one row per (run, map kind) of the attention scores, beside chance."""
    rows = []
    for f in score_files:
        s = json.loads(Path(f).read_text())
        base = {
            "Method": s["method"],
            "Dataset": s["dataset"],
            "Run": s["run"],
            "Truth": s["truth"],
            "images": s["images"],
        }
        if not s.get("scores"):
            rows.append({**base, "Maps": "—", "note": s.get("note", "")})
        for kind, v in (s.get("scores") or {}).items():
            row = {**base, "Maps": f"{kind} (per {v['per']})", "pairs": v.get("pairs")}
            for key in ("mass_on_object", "uniform_mass", "pointing", "pointing_chance", "pcp", "pcp_chance"):
                if key in v:
                    row[key] = round(v[key], 1)
            if "unseen" in v and "mass_on_object" in v["unseen"]:
                row["mass unseen classes"] = round(v["unseen"]["mass_on_object"], 1)
            if kind == "part" and "boxes" in s:
                row["box IoU"] = round(s["boxes"]["iou"], 1)
                row["fixed-box IoU"] = round(s["boxes"]["fixed_box_iou"], 1)
                row["box centre spread (px)"] = round(s["boxes"]["centre_spread_px"], 1)
            rows.append(row)
    legend = (
        "Attention scored against ground truth on a fixed, seeded sample of test images (half seen, half "
        "unseen classes); values in %. mass_on_object: share of an attribute map's mass inside the object, "
        "for the object attributes of the image's class; uniform_mass: the object's area share (what uniform "
        "attention scores). pointing: the map's peak cell overlaps the object (chance: a random peak cell). "
        "On CUB: pointing = a visible point of the attribute's body part lies in the peak cell, pcp = in a "
        "box of fixed relative size around it. Box IoU: a box method's part boxes against the object's box, beside "
        "the IoU of the mean box (boxes identical for every image). Per run: "
        "results/attention/<method>/<DS>/<run>/scores.json and figure.png."
    )
    return write_small_table(
        pd.DataFrame(rows),
        Path(out_dir) / "localisation",
        "Where each method looks (attention localisation)",
        legend,
        "(no run)",
    )
