# Opt-in: the MSDN authors' released models, imported and evaluated on our feature stores
# (docs/methods/msdn.md). The jobs exist only when a dataset's two files are in
# resources/released/msdn/ (bring your own: config/downloads.yaml); otherwise the DAG is unchanged
# and the log says why the rule is off.

RELEASED_DIR = Path("resources/released/msdn")
RELEASED_SETTINGS = ["czsl", "gzsl"]


def released_file(dataset, setting):
    return RELEASED_DIR / f"{dataset}_MSDN_{setting.upper()}.pth"


def released_datasets():
    """Datasets of this run whose CZSL and GZSL release files are both present (MSDN must run)."""
    if "msdn" not in config["methods"]:
        return []
    present = [d for d in config["datasets"] if all(released_file(d, s).exists() for s in RELEASED_SETTINGS)]
    absent = [d for d in config["datasets"] if d in ("CUB", "SUN", "AWA2") and d not in present]
    if absent:
        print(f"evaluate_released is off for {', '.join(absent)}: the MSDN authors' released models are not in "
              f"{RELEASED_DIR}/ (e.g. {released_file(absent[0], 'gzsl').name}); see docs/methods/msdn.md",
              file=sys.stderr)
    return present


RELEASED_DATASETS = released_datasets()


def released_store(wildcards):
    """The feature store our MSDN run of the dataset reads."""
    cfg = RUN_CONFIGS[("msdn", wildcards.dataset, "main")]
    return f"results/features/{wildcards.dataset}/{cfg['feature_store']}.h5"


def all_released_metrics():
    return expand("results/metrics/msdn/{dataset}/released_{setting}/rep0.json",
                  dataset=RELEASED_DATASETS, setting=RELEASED_SETTINGS)


rule import_released:
    input:
        checkpoint=lambda w: released_file(w.dataset, w.setting),
        data=released_store,
        config=lambda w: method_config_path("msdn", w.dataset),
    output:
        model="results/released/msdn/{dataset}/{setting}/model.pt",
        diagnostics="results/released/msdn/{dataset}/{setting}/model.diagnostics.json",
    params:
        code=code_of("import-official"),
    wildcard_constraints:
        setting="czsl|gzsl",
    log:
        "logs/import_released/{dataset}/{setting}.log",
    conda:
        "../envs/torch.yaml"
    threads: 2
    shell:
        "python -m zslrepro import-official --method msdn --checkpoint {input.checkpoint} --data {input.data}"
        " --setting {wildcards.setting} --method-config {input.config} --sources {DOWNLOADS_FILE}"
        " --lock {DOWNLOADS_LOCK} --out {output.model} > {log} 2>&1"


rule evaluate_released:
    input:
        model="results/released/msdn/{dataset}/{setting}/model.pt",
        data=released_store,
    output:
        metrics="results/metrics/msdn/{dataset}/released_{setting}/rep0.json",
        curve="results/curves/msdn/{dataset}/released_{setting}/rep0.csv",
    params:
        code=code_of("evaluate", method="msdn"),
    wildcard_constraints:
        setting="czsl|gzsl",
    log:
        "logs/evaluate_released/{dataset}/{setting}.log",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
    shell:
        "python -m zslrepro evaluate --model {input.model} --data {input.data} --metrics {output.metrics}"
        " --curve {output.curve} --threads {threads} > {log} 2>&1"
