"""Where the pipeline's files live: one place that the package and the workflow both read.

Each entry is a template with Snakemake's wildcard names; the rules' paths are these (a test checks
every path the workflow writes against :data:`TEMPLATES`), and the package finds result files with
:func:`pattern` instead of spelling folders out.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

RESULTS = "results"

TEMPLATES: dict[str, str] = {
    # data and features
    "index": "results/data/{dataset}/index.npz",
    "data": "results/data/{dataset}/{file}",
    "word_vectors": "results/word_vectors/{dataset}/{file}",
    "feature_store": "results/features/{dataset}/{store}.h5",
    "damaged_store": "results/features/{dataset}/{store}.damaged",
    # a run: its replicates, validation points, choice and artefacts
    "replicate": "results/runs/{method}/{dataset}/{run}/rep{rep}/{file}",
    "validation_point": "results/runs/{method}/{dataset}/{run}/tuning/point{point}/{file}",
    "selected": "results/runs/{method}/{dataset}/{run}/tuning/selected.json",
    "artefact": "results/runs/{method}/{dataset}/{run}/artefacts/{split}/{artefact}.pt",
    "released": "results/released/{method}/{dataset}/{setting}/{file}",
    # what evaluation writes per replicate
    "metrics": "results/metrics/{method}/{dataset}/{run}/rep{rep}.json",
    "curve": "results/curves/{method}/{dataset}/{run}/rep{rep}.csv",
    "predictions": "results/predictions/{method}/{dataset}/{run}/rep{rep}.npz",
    "attention": "results/attention/{method}/{dataset}/{run}/{file}",
    "plot": "results/plots/{method}/{dataset}/{run}/{kind}.png",
    # the reports
    "tables": "results/tables/{file}",
    "verdict_figure": "results/figures/verdicts/{method}.png",
    "benchmark": "results/benchmarks/{step}/{job}.tsv",  # step: the rule
    "report": "results/report.html",
    "reference": "results/reference/{name}",
}


def path(name: str, **wildcards) -> str:
    """The path of one file: ``path("metrics", method="msdn", dataset="CUB", run="main", rep=0)``."""
    return TEMPLATES[name].format(**wildcards)


def pattern(name: str, root: str = RESULTS, **fixed) -> str:
    """A glob of the files of a template, relative to ``root``: the ``fixed`` wildcards filled in,
    the others ``*``."""
    glob = re.sub(r"\{([^}]+)\}", lambda m: str(fixed.get(m.group(1), "*")), TEMPLATES[name])
    return str(PurePosixPath(glob).relative_to(root))


def folder(name: str) -> str:
    """The folder of a template up to its first wildcard (``results/benchmarks``)."""
    template = TEMPLATES[name]
    return template.split("{", 1)[0].rstrip("/") if "{" in template else str(PurePosixPath(template).parent)


def regex(name: str) -> re.Pattern:
    """A regular expression that a path of the template matches (a wildcard: one or more path parts
    for ``job``/``file``, else one part)."""
    parts = re.split(r"(\{[^}]+\})", TEMPLATES[name])
    body = "".join(
        (r"[^/]+(?:/[^/]+)*" if p in ("{job}", "{file}") else r"[^/]+") if p.startswith("{") else re.escape(p)
        for p in parts
    )
    return re.compile(body + "$")


def template_of(path_: str) -> str | None:
    """The name of the template a path belongs to (None: a path outside the layout)."""
    return next((name for name in TEMPLATES if regex(name).match(path_)), None)
