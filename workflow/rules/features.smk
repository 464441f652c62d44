# Phase 2: feature maps of a truncated ImageNet ResNet, one HDF5 store per dataset x backbone x size.


rule set_aside_damaged_store:
    output:
        temp("results/features/{dataset}/{store}.damaged"),
    log:
        "logs/set_aside_damaged_store/{dataset}/{store}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("set-aside-store"),
        store="results/features/{dataset}/{store}.h5",
    shell:
        "python -m zslrepro set-aside-store {params.store} --marker {output} > {log} 2>&1"


rule extract_features:
    input:
        unpack(damaged_store_marker),
        config=dataset_config_file,
        index="results/data/{dataset}/index.npz",
    output:
        "results/features/{dataset}/{store}.h5",
    log:
        "logs/extract_features/{dataset}/{store}.log",
    benchmark:
        "results/benchmarks/extract_features/{dataset}/{store}.tsv"
    priority: EXTRACTION_PRIORITY  # every feature-level run waits for it
    conda:
        TORCH_ENV
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        device=JOB_DEVICE,
    params:
        code=code_of("extract"),
    shell:
        "python -m zslrepro extract --dataset-config {input.config} --index {input.index}"
        " --store {wildcards.store} --device {resources.device} --threads {threads} $ZSLREPRO_FEED --out {output} > {log} 2>&1"
