# Configuration loading and validation, and the helpers the rules share.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir).parent
sys.path.insert(0, str(REPO / "src"))
from zslrepro.config import load_dataset_config, load_method_config, run_config  # noqa: E402
from zslrepro.errors import ZslError  # noqa: E402


validate(config, "../schemas/config.schema.yaml")

# Every job runs the package from this checkout, also inside a conda env (which drops PYTHONPATH).
# (Snakemake formats the prefix too, hence the doubled braces.)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={REPO / 'src'}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

CONFIG_DIR = Path(config["config_dir"])
TABLES_DIR = "results/tables"
REPLICATES = list(range(config["replicates"]))


def _load_configs():
    """Validate every dataset and method config the run needs, before any job starts."""
    try:
        datasets = {
            name: load_dataset_config(CONFIG_DIR / "datasets" / f"{name}.yaml")
            for name in config["datasets"]
        }
        runs = {}
        for method in config["methods"]:
            for name in config["datasets"]:
                path = CONFIG_DIR / "methods" / method / f"{name}.yaml"
                cfg = load_method_config(path)
                for run in cfg["runs"]:
                    runs[(method, name, run)] = run_config(cfg, run, source=str(path))
    except ZslError as exc:
        raise WorkflowError(str(exc)) from None
    for (method, name, run), cfg in runs.items():
        if cfg["feature_store"] not in datasets[name]["feature_stores"]:
            raise WorkflowError(
                f"{CONFIG_DIR}/methods/{method}/{name}.yaml (run {run}) names the feature store "
                f"{cfg['feature_store']!r}, which config/datasets/{name}.yaml does not define"
            )
    for name, cfg in datasets.items():
        if cfg["kind"] == "synthetic":
            if cfg["xlsa17_dir"] != f"resources/datasets/{name}/xlsa17/data/{name}":
                raise WorkflowError(
                    f"synthetic dataset {name}: xlsa17_dir must be resources/datasets/{name}/xlsa17/data/{name}"
                )
        elif not Path(cfg["xlsa17_dir"], "res101.mat").is_file():
            raise WorkflowError(
                f"dataset {name} is not available: {cfg['xlsa17_dir']}/res101.mat is missing.\n"
                f"To obtain it: {cfg['obtain']}"
            )
    return datasets, runs


DATASETS, RUN_CONFIGS = _load_configs()


wildcard_constraints:
    dataset="[A-Z0-9]+",
    method="[a-z0-9_]+",
    run="[a-z0-9_]+",
    store="[A-Za-z0-9_]+",
    rep=r"\d+",


def dataset_config_file(wildcards):
    return CONFIG_DIR / "datasets" / f"{wildcards.dataset}.yaml"


def method_config_file(wildcards):
    return CONFIG_DIR / "methods" / wildcards.method / f"{wildcards.dataset}.yaml"


def raw_dataset_files(wildcards):
    """The xlsa17 files, word vectors and attribute names that ingest reads."""
    cfg = DATASETS[wildcards.dataset]
    return {
        "config": dataset_config_file(wildcards),
        "res101": f"{cfg['xlsa17_dir']}/res101.mat",
        "splits": f"{cfg['xlsa17_dir']}/att_splits.mat",
        "w2v": cfg["w2v"],
        "names": cfg["attribute_names"]["file"],
    }


def feature_store_of(wildcards):
    """The feature store a run's config names, for its dataset."""
    store = RUN_CONFIGS[(wildcards.method, wildcards.dataset, wildcards.run)]["feature_store"]
    return f"results/features/{wildcards.dataset}/{store}.h5"


def all_runs(pattern):
    """``pattern`` (with {method}, {dataset}, {run}, {rep}) for every run and replicate."""
    return [
        pattern.format(method=method, dataset=dataset, run=run, rep=rep)
        for (method, dataset, run) in RUN_CONFIGS
        for rep in REPLICATES
    ]


def all_feature_stores():
    stores = {
        (dataset, cfg["feature_store"]) for (_, dataset, _), cfg in RUN_CONFIGS.items()
    }
    return [f"results/features/{d}/{s}.h5" for d, s in sorted(stores)]


def all_plots():
    return [
        f"results/plots/{method}/{dataset}/{run}/{kind}.png"
        for (method, dataset, run) in RUN_CONFIGS
        for kind in ("seen_unseen", "training")
    ]


def all_benchmarks():
    return [
        f.replace("results/features/", "results/benchmarks/extract_features/").replace(".h5", ".tsv")
        for f in all_feature_stores()
    ] + all_runs("results/benchmarks/train_method/{method}/{dataset}/{run}/rep{rep}.tsv")


def all_metrics():
    """Metrics of every run of every method on every dataset, for every replicate."""
    return all_runs("results/metrics/{method}/{dataset}/{run}/rep{rep}.json")
