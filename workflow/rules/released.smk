# Opt-in: authors' released models, imported and evaluated on our feature stores (a method that has
# some declares them: its schema's x-releases, its package's release importer). The jobs exist only
# when a dataset's files are in resources/released/<method>/ (bring your own: config/downloads.yaml);
# otherwise the DAG is unchanged and the log says why the rule is off.


rule import_released:
    input:
        checkpoint=lambda w: released_file(w.method, w.dataset, w.setting),
        data=released_store,
        config=lambda w: method_config_path(w.method, w.dataset),
        sources=DOWNLOADS_FILE,
    output:
        model="results/released/{method}/{dataset}/{setting}/model.pt",
        diagnostics="results/released/{method}/{dataset}/{setting}/model.diagnostics.json",
    log:
        "logs/import_released/{method}/{dataset}/{setting}.log",
    wildcard_constraints:
        setting="[a-z0-9]+",
    conda:
        "../envs/torch-cpu.yaml"
    threads: 1
    params:
        code=code_of("import-official", per_method=True),
        lock=DOWNLOADS_LOCK,
    shell:
        "python -m zslrepro import-official --method {wildcards.method} --checkpoint {input.checkpoint}"
        " --data {input.data} --setting {wildcards.setting} --method-config {input.config} --sources {input.sources}"
        " --lock {params.lock} --out {output.model} > {log} 2>&1"


rule evaluate_released:
    input:
        model="results/released/{method}/{dataset}/{setting}/model.pt",
        data=released_store,
    output:
        metrics="results/metrics/{method}/{dataset}/released_{setting}/rep0.json",
        curve="results/curves/{method}/{dataset}/released_{setting}/rep0.csv",
        predictions="results/predictions/{method}/{dataset}/released_{setting}/rep0.npz",
    log:
        "logs/evaluate_released/{method}/{dataset}/{setting}.log",
    wildcard_constraints:
        setting="[a-z0-9]+",
    conda:
        TORCH_ENV
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        device=JOB_DEVICE,
    params:
        code=code_of("evaluate", per_method=True),
    shell:
        "python -m zslrepro evaluate --model {input.model} --data {input.data} --metrics {output.metrics}"
        " --curve {output.curve} --predictions {output.predictions} --device {resources.device} --threads {threads} $ZSLREPRO_FEED > {log} 2>&1"
