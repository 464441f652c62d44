# Configuration loading and validation, and the helpers the rules share.
import re
import sys
from pathlib import Path
from dataclasses import asdict
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir).parent
sys.path.insert(0, str(REPO / "src"))
from zslrepro.catalog import method_config_path as registered_config_path  # noqa: E402
from zslrepro.catalog import method_names, unknown_method  # noqa: E402
from zslrepro.config import (  # noqa: E402
    grid_points,
    load_dataset_config,
    load_method_config,
    method_artefacts,
    method_releases,
    non_finite_key,
    run_config,
    tuning_enabled,
)
from zslrepro.data.download import load_sources  # noqa: E402
from zslrepro.devices import job_policy, nvidia_gpu_visible, torch_env  # noqa: E402
from zslrepro.statistics.intervals import Settings as StatisticsSettings  # noqa: E402
from zslrepro.errors import ZslError  # noqa: E402
from zslrepro.features.store import store_problem  # noqa: E402
from zslrepro.jobfeed import feed_flags  # noqa: E402
from zslrepro import layout  # noqa: E402
from zslrepro.numerics import shell_exports  # noqa: E402
from zslrepro.provenance import code_digest  # noqa: E402

validate(config, "../schemas/config.schema.yaml")
if non_finite_key(config):
    raise WorkflowError(f"config: invalid value at '{non_finite_key(config)}': NaN and infinity are not allowed")


def check_method_names(names):
    """Method names come from the registry (built in and installed plugins), not from a list here."""
    try:
        unknown = [m for m in names if m not in method_names()]
        if unknown:
            raise unknown_method(unknown[0])
    except ZslError as exc:
        raise WorkflowError(f"config 'methods': {exc}") from None


check_method_names(config["methods"])


def given_cores():
    """The run's --cores (None where none was given, e.g. a dry run or a cluster submission)."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


# torch's compute threads in every job: fixed, as their count can move CPU numerics. A job's
# `threads` (what a cluster profile allocates) may be more: the rest feed it (zslrepro.runtime).
# One: the methods' steps are small products whose second thread costs more than it gives (MSDN on
# SYNTH: 48 s with one, 57 s with two), so two jobs side by side use two cores best.
COMPUTE_THREADS = 1


# The `gpu` resource the GPU rules ask for (the default profile offers 1); a GPU machine runs its GPU
# jobs one at a time; a CPU-only machine runs them side by side, one compute thread each (the
# SLURM profile sets its own per rule).
GPU_PER_JOB = 1 if nvidia_gpu_visible() else 0
# The device policy of the GPU rules' jobs (config `device`, zslrepro.devices): on a machine that shows
# a GPU, `auto` becomes `cuda`, so a job that asked for the GPU never trains on the CPU. Given as a
# resource (the profiles may set it per rule, and changing it re-runs nothing).
JOB_DEVICE = job_policy(config["device"], bool(GPU_PER_JOB))
# Their conda env: the CUDA build of torch when the run is configured for a GPU, else the CPU build.
TORCH_ENV = f"../envs/{torch_env(config['device'], bool(GPU_PER_JOB))}"


# The computing commands' options beside their threads: the settings that change no number
# (zslrepro.jobfeed: config `features`, the run's --cores), and the fixed compute threads. The shell
# prefix sets them as $ZSLREPRO_FEED, which the rules' commands pass on: a rule's command names the
# variable, not its value, so changing a setting re-runs nothing (the compute threads are in every
# computing rule's code input instead: code_of).
FEED = f"{feed_flags(config.get('features', {}), given_cores())} --compute-threads {COMPUTE_THREADS}"


# Every job runs the package from this checkout, also inside a conda env (which drops PYTHONPATH),
# with the run's CPU kernel choices set before Python starts (config `numerics`, zslrepro.numerics).
# (Snakemake formats the prefix too, hence the doubled braces.)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={REPO / 'src'}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + shell_exports(config["numerics"])
    + f'ZSLREPRO_FEED="{FEED}"; '
)

CONFIG_DIR = Path(config["config_dir"])
TABLES_DIR = layout.folder("tables")
REPORT = layout.TEMPLATES["report"]


def replicates_of(method, dataset, run):
    """Replicate numbers of a run: its method config's ``replicates``, unless config.yaml sets one
    count for every run."""
    count = config.get("replicates") or RUN_CONFIGS[(method, dataset, run)]["replicates"]
    return list(range(count))


def code_of(command, per_method=False, method=None):
    """A rule's code input: the digest of the package source its command imports (for one method).

    Given as ``params.code``, so that Snakemake's params trigger re-runs exactly the jobs whose code
    changed (zslrepro.provenance explains the closure), and all of them when `numerics` changes."""
    mode = f"{config['numerics']} t{COMPUTE_THREADS}"  # kernel choices and threads move numbers as code does
    if per_method:
        return lambda wildcards: f"{code_digest(command, wildcards.method)} {mode}"
    return f"{code_digest(command, method)} {mode}"


def write_report(path):
    """Write the HTML report with this very invocation's arguments (snakefile, directory, config,
    profile) plus ``--report``: the same DAG, rendered. Its log goes to logs/report.log; a failure
    is reported and does not fail the finished run."""
    import subprocess

    Path("logs").mkdir(exist_ok=True)
    with open("logs/report.log", "w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "snakemake", *sys.argv[1:], "--report", path], stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode == 0:
        print(f"Report: {path}")
    else:
        print(f"The report could not be written (see logs/report.log); `snakemake --report {path}` retries")


def dataset_config_path(name):
    return CONFIG_DIR / "datasets" / f"{name}.yaml"


def method_config_path(method, name):
    """config/methods/<method>/<DATASET>.yaml, or a plugin's default config for the dataset."""
    return registered_config_path(method, name, CONFIG_DIR)


def _load_configs():
    """Validate every dataset and method config the run needs, before any job starts."""
    try:
        datasets = {name: load_dataset_config(dataset_config_path(name)) for name in config["datasets"]}
        runs = {}
        for method in config["methods"]:
            for name in config["datasets"]:
                path = method_config_path(method, name)
                cfg = load_method_config(path, method=method, dataset=name)
                for run in cfg["runs"]:
                    runs[(method, name, run)] = run_config(cfg, run, source=str(path))
    except ZslError as exc:
        raise WorkflowError(str(exc)) from None
    for (method, name, run), cfg in runs.items():
        if cfg.get("feature_store") and cfg["feature_store"] not in datasets[name]["feature_stores"]:
            raise WorkflowError(
                f"{method_config_path(method, name)} (run {run}) names the feature store "
                f"{cfg['feature_store']!r}, which config/datasets/{name}.yaml does not define"
            )
    for name, cfg in datasets.items():
        if cfg["kind"] == "synthetic":
            if cfg["xlsa17_dir"] != f"resources/datasets/{name}/xlsa17/data/{name}":
                raise WorkflowError(
                    f"synthetic dataset {name}: xlsa17_dir must be resources/datasets/{name}/xlsa17/data/{name}"
                )
        else:
            unknown = [f for f in cfg["downloads"] if f not in DOWNLOADS]
            if unknown:
                raise WorkflowError(
                    f"config/datasets/{name}.yaml needs {unknown}, which {DOWNLOADS_FILE} does not describe"
                )
    return datasets, runs


DOWNLOADS_FILE = CONFIG_DIR / "downloads.yaml"
DOWNLOADS_LOCK = CONFIG_DIR / "downloads.lock.yaml"
DOWNLOADS = load_sources(DOWNLOADS_FILE) if DOWNLOADS_FILE.exists() else {}
DATASETS, RUN_CONFIGS = _load_configs()
ARTEFACT_NAMES = {a for method in config["methods"] for a in method_artefacts(method)}


wildcard_constraints:
    dataset="[A-Z0-9]+",
    download=r"[A-Za-z0-9_.+-]+",
    method="[a-z0-9_]+",
    run="(?!released_)[a-z0-9_]+",  # released_<setting>: the authors' released models (released.smk)
    store="[A-Za-z0-9_]+",
    rep=r"\d+",
    point=r"\d+",
    split="test|validation",
    artefact="[a-z_]+",


def dataset_config_file(wildcards):
    return dataset_config_path(wildcards.dataset)


def method_config_file(wildcards):
    return method_config_path(wildcards.method, wildcards.dataset)


def dataset_inputs(name, cfg):
    """The files ingest reads: xlsa17 files, word vectors, attribute names (and the synthetic
    dataset's objects, the ground truth of the attention scores)."""
    files = {
        "config": dataset_config_path(name),
        "res101": f"{cfg['xlsa17_dir']}/res101.mat",
        "splits": f"{cfg['xlsa17_dir']}/att_splits.mat",
        "w2v": cfg["w2v"],
        "names": cfg["attribute_names"]["file"],
    }
    if (cfg.get("localisation") or {}).get("kind") == "objects":
        files["objects"] = cfg["localisation"]["file"]
    return files


def installed_marker(download):
    return Path(f"resources/installed/{download}.ok")


def _providers(path, cfg):
    return [
        d for d in cfg["downloads"] if any(path == Path(p) or Path(p) in path.parents for p in DOWNLOADS[d]["provides"])
    ]


def plan_real_dataset(name, cfg):
    """Which downloads a real dataset's ingest waits for, and which files the user brought.

    A download is in the plan when a file it provides is missing, or when it was installed before
    (its marker exists): so the plan does not change once the download has put its files in place.
    Files present without an installed download were brought by the user; verify_user_files checks
    and marks them. A missing file that no download provides stops the run here with what to do.
    """
    needed = [Path(p) for p in (*dataset_inputs(name, cfg).values(), cfg["images_root"])]
    downloads, user_files = [], []
    for path in needed:
        covering = _providers(path, cfg)
        installed = [d for d in covering if installed_marker(d).exists()]
        if installed:
            chosen = installed
        elif not path.exists():
            if not covering:
                raise WorkflowError(
                    f"dataset {name}: {path} is missing and no download provides it.\n" f"To obtain it: {cfg['obtain']}"
                )
            chosen = covering
        else:
            user_files.append(str(path))
            continue
        downloads += [d for d in chosen if d not in downloads]
    return downloads, user_files


REAL_DATASET_PLANS = {name: plan_real_dataset(name, cfg) for name, cfg in DATASETS.items() if cfg["kind"] == "xlsa17"}


def raw_dataset_files(wildcards):
    """What ingest waits for: the synthetic dataset's files, or for a real dataset the markers of
    its downloads and of the user's own files (never the files themselves, whose existence would
    change the plan; see plan_real_dataset)."""
    cfg = DATASETS[wildcards.dataset]
    if cfg["kind"] == "synthetic":
        return dataset_inputs(wildcards.dataset, cfg)
    downloads, user_files = REAL_DATASET_PLANS[wildcards.dataset]
    files = {"config": dataset_config_path(wildcards.dataset)}
    for d in downloads:
        files[f"download_{d}"] = str(installed_marker(d))
    if user_files:
        files["user_files"] = f"resources/installed/user/{wildcards.dataset}.ok"
    return files


def user_files_of(wildcards):
    return REAL_DATASET_PLANS[wildcards.dataset][1]


def run_config_of(wildcards):
    return RUN_CONFIGS[(wildcards.method, wildcards.dataset, wildcards.run)]


EXTRACTION_PRIORITY = 5


def long_chains_first(wildcards):
    """Scheduling priority: the longest chains start first and the short feature-level jobs fill the
    other cores around them: image-level runs (artefact, validation point, selection, training),
    then tuned feature-level runs (validation point, selection, training, after their store's
    extraction). Left to input sizes, Snakemake started SGMA's training last and the main job ended
    on it alone; no number depends on the order."""
    cfg = run_config_of(wildcards)
    if not cfg.get("feature_store"):
        return 10
    return EXTRACTION_PRIORITY if tuning_enabled(cfg) else 0


def run_data(wildcards):
    """What a run reads: the feature store its config names, or the dataset index (image runs)."""
    store = run_config_of(wildcards).get("feature_store")
    if store:
        return layout.path("feature_store", dataset=wildcards.dataset, store=store)
    return layout.path("index", dataset=wildcards.dataset)


def images_flag(wildcards):
    """--images-root for a run that trains from images (empty for feature-level runs)."""
    if run_config_of(wildcards).get("feature_store"):
        return ""
    return f"--images-root {DATASETS[wildcards.dataset]['images_root']}"


def run_dir(wildcards):
    return f"results/runs/{wildcards.method}/{wildcards.dataset}/{wildcards.run}"


def artefact_files(split):
    """Input function: the pipeline artefacts a method declares (its schema's x-artefacts), per split."""

    def files(wildcards):
        return {
            name: f"{run_dir(wildcards)}/artefacts/{split}/{name}.pt" for name in method_artefacts(wildcards.method)
        }

    return files


def artefact_flags(input):
    names = [k for k in input.keys() if k in ARTEFACT_NAMES]
    return " ".join(f"--artefact {name}={input[name]}" for name in names)


def validation_models(wildcards):
    points = grid_points(run_config_of(wildcards)["tuning"]["train_grid"])
    return [f"{run_dir(wildcards)}/tuning/point{k}/model.pt" for k in range(len(points))]


def selection_of(wildcards):
    """The values chosen on the validation classes, for a run whose config has a tuning section."""
    if tuning_enabled(run_config_of(wildcards)):
        return {"selected": f"{run_dir(wildcards)}/tuning/selected.json"}
    return {}


def all_runs(pattern):
    """``pattern`` (with {method}, {dataset}, {run}, {rep}) for every run and replicate."""
    return [
        pattern.format(method=method, dataset=dataset, run=run, rep=rep)
        for (method, dataset, run) in RUN_CONFIGS
        for rep in replicates_of(method, dataset, run)
    ]


def all_feature_stores():
    stores = {
        (dataset, cfg["feature_store"]) for (_, dataset, _), cfg in RUN_CONFIGS.items() if cfg.get("feature_store")
    }
    return [layout.path("feature_store", dataset=d, store=s) for d, s in sorted(stores)]


def all_plots():
    return [
        f"results/plots/{method}/{dataset}/{run}/{kind}.png"
        for (method, dataset, run) in RUN_CONFIGS
        for kind in ("seen_unseen", "training")
    ]


def all_benchmarks():
    """Snakemake benchmark files of every job that computes (not the light report jobs)."""
    files = [
        layout.path(
            "benchmark",
            step="extract_features",
            job=str(Path(f).relative_to(layout.folder("feature_store")).with_suffix("")),
        )
        for f in all_feature_stores()
    ]
    for (method, dataset, run), cfg in RUN_CONFIGS.items():
        key = f"{method}/{dataset}/{run}"
        files += [f"results/benchmarks/method_artefact/{key}/test/{a}.tsv" for a in method_artefacts(method)]
        if tuning_enabled(cfg):
            files += [f"results/benchmarks/method_artefact/{key}/validation/{a}.tsv" for a in method_artefacts(method)]
            files += [
                f"results/benchmarks/train_validation_point/{key}/point{k}.tsv"
                for k in range(len(grid_points(cfg["tuning"]["train_grid"])))
            ]
            files.append(f"results/benchmarks/select_hyperparameters/{key}.tsv")
    files += all_runs("results/benchmarks/train_method/{method}/{dataset}/{run}/rep{rep}.tsv")
    files += [f"results/benchmarks/attention_maps/{m}/{d}/{r}.tsv" for (m, d, r) in RUN_CONFIGS]
    return files + all_runs("results/benchmarks/evaluate_run/{method}/{dataset}/{run}/rep{rep}.tsv")


def all_compute_records():
    """The trainer's own time records (all sessions of a resumed run), final and validation runs."""
    files = all_runs("results/runs/{method}/{dataset}/{run}/rep{rep}/compute.json")
    for (method, dataset, run), cfg in RUN_CONFIGS.items():
        if tuning_enabled(cfg):
            files += [
                f"results/runs/{method}/{dataset}/{run}/tuning/point{k}/compute.json"
                for k in range(len(grid_points(cfg["tuning"]["train_grid"])))
            ]
    return files


def optional_word_vector_reports():
    """The optional regenerate_word_vectors stage's reports, when config turns it on."""
    if not config["regenerate_word_vectors"]:
        return []
    return [
        f"results/word_vectors/{name}/comparison.csv" for name, cfg in DATASETS.items() if cfg.get("word2vec_cleaning")
    ]


def all_selections():
    """The tuning choices of every run whose config has a tuning section."""
    return [
        f"results/runs/{method}/{dataset}/{run}/tuning/selected.json"
        for (method, dataset, run), cfg in RUN_CONFIGS.items()
        if tuning_enabled(cfg)
    ]


def all_attention(kind):
    """The attention rule's ``kind`` (scores.json or figure.png) of every run (its first replicate)."""
    return [f"results/attention/{m}/{d}/{r}/{kind}" for (m, d, r) in RUN_CONFIGS]


def all_metrics():
    """Metrics of every run of every method on every dataset, for every replicate (and of the
    authors' released models where their files are present: released.smk)."""
    return all_runs(layout.TEMPLATES["metrics"]) + all_released_metrics()


def all_predictions():
    """The predictions file of each metrics file, in the same order."""
    return [f.replace("results/metrics/", "results/predictions/").replace(".json", ".npz") for f in all_metrics()]


def statistics_flags():
    """config.yaml's ``statistics`` as the tables command's arguments."""
    s = {**asdict(StatisticsSettings()), **config.get("statistics", {})}
    return f"--resamples {s['resamples']} --bootstrap-seed {s['seed']} --level {s['level']} --power {s['power']}"


def reference_check_target():
    """The check against the committed reference (config `reference`), where one is named and present."""
    ref = config.get("reference")
    return [f"{TABLES_DIR}/reference_check.md"] if ref and Path(ref, "manifest.json").exists() else []


def all_intermediates():
    """Every file a later job reads, as a target of `all`: a file deleted (or lost with a killed job)
    is always re-planned, even when what was made from it is still there."""
    files = [f"results/data/{d}/{f}" for d in config["datasets"] for f in ("index.npz", "localisation.npz")]
    files += all_feature_stores()
    for (method, dataset, run), cfg in RUN_CONFIGS.items():
        base = f"results/runs/{method}/{dataset}/{run}"
        files += [f"{base}/artefacts/test/{a}.pt" for a in method_artefacts(method)]
        if tuning_enabled(cfg):
            files += [f"{base}/artefacts/validation/{a}.pt" for a in method_artefacts(method)]
            files += [f"{base}/tuning/point{k}/model.pt" for k in range(len(grid_points(cfg["tuning"]["train_grid"])))]
    files += all_runs("results/runs/{method}/{dataset}/{run}/rep{rep}/model.pt")
    files += all_runs("results/runs/{method}/{dataset}/{run}/rep{rep}/history.jsonl")
    return files + all_selections() + all_metrics()


def damaged_stores():
    """Feature stores present but unreadable (empty, truncated, not HDF5), with the reason. Only read
    here: parsing changes nothing on disk. Each one gets a set_aside_damaged_store job (under
    Snakemake's lock, in the plan of a dry run too) that its extraction waits for, so the store is
    extracted anew and every job that reads it follows, instead of training jobs that would fail."""
    found = {}
    for store in map(Path, all_feature_stores()):
        if store.is_file():
            problem = store_problem(store)
            if problem is not None:
                found[str(store)] = problem
    if found and workflow.is_main_process:
        for store, problem in found.items():
            print(
                f"feature store {store} is damaged ({problem}): it will be set aside and extracted anew",
                file=sys.stderr,
            )
    return found


DAMAGED_STORES = damaged_stores()


def damaged_store_marker(wildcards):
    """The set-aside job's marker, for a store found damaged at parse time (else nothing)."""
    store = layout.path("feature_store", dataset=wildcards.dataset, store=wildcards.store)
    return (
        {"damaged": layout.path("damaged_store", dataset=wildcards.dataset, store=wildcards.store)}
        if store in DAMAGED_STORES
        else {}
    )


# Authors' released models (rules in released.smk), for the methods that declare some (their schema's
# x-releases: file names, settings, the datasets they exist for): present files switch the rules on.
def released_file(method, dataset, setting):
    pattern = method_releases(method)["file"]
    return Path("resources/released") / method / pattern.format(dataset=dataset, SETTING=setting.upper())


def released_runs():
    """(method, dataset) of this run whose release files, one per setting, are all present."""
    runs = []
    for method in config["methods"]:
        releases = method_releases(method)
        if not releases:
            continue
        present = [
            d for d in config["datasets"] if all(released_file(method, d, s).exists() for s in releases["settings"])
        ]
        absent = [d for d in config["datasets"] if d in releases["datasets"] and d not in present]
        if absent and workflow.is_main_process:  # once per run, not in every cluster job's log
            example = released_file(method, absent[0], releases["settings"][-1])
            print(
                f"evaluate_released is off for {method} on {', '.join(absent)}: the authors' released models "
                f"are not in {example.parent}/ (e.g. {example.name}); see {releases['docs']}",
                file=sys.stderr,
            )
        runs += [(method, d) for d in present]
    return runs


RELEASED_RUNS = released_runs()


def released_store(wildcards):
    """The feature store the method's run of that setting reads (run_data): its czsl or gzsl run
    where the method trains the two apart, else its main run."""
    runs = {r for m, d, r in RUN_CONFIGS if (m, d) == (wildcards.method, wildcards.dataset)}
    run = wildcards.setting if wildcards.setting in runs else "main"
    return run_data(SimpleNamespace(method=wildcards.method, dataset=wildcards.dataset, run=run))


def all_released_metrics():
    return [
        layout.path("metrics", method=method, dataset=dataset, run=f"released_{setting}", rep=0)
        for method, dataset in RELEASED_RUNS
        for setting in method_releases(method)["settings"]
    ]
