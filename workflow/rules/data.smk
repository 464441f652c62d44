# Phase 1: datasets. The synthetic one is generated; real ones are obtained (see config/datasets/).
# Both end in the same ingest: xlsa17 files -> checked 0-based index of images, labels and splits.


rule synthesize_dataset:
    input:
        config=dataset_config_file,
    output:
        res101="resources/datasets/{dataset}/xlsa17/data/{dataset}/res101.mat",
        splits="resources/datasets/{dataset}/xlsa17/data/{dataset}/att_splits.mat",
        w2v="resources/datasets/{dataset}/w2v/{dataset}_attribute.pkl",
        names="resources/datasets/{dataset}/attributes.txt",
    log:
        "logs/synthesize_dataset/{dataset}.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m zslrepro synthesize --dataset-config {input.config}"
        " --out resources/datasets/{wildcards.dataset} > {log} 2>&1"


rule ingest_dataset:
    input:
        unpack(raw_dataset_files),
    output:
        index="results/data/{dataset}/index.npz",
        summary="results/data/{dataset}/summary.json",
    log:
        "logs/ingest_dataset/{dataset}.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m zslrepro ingest --dataset-config {input.config}"
        " --out {output.index} --summary {output.summary} > {log} 2>&1"
