# Phase 1: datasets. The synthetic one is generated; real ones are downloaded, verified and
# extracted (config/downloads.yaml). Both end in the same ingest: xlsa17 files -> checked 0-based
# index of images, labels and splits.


rule download_file:
    input:
        sources=DOWNLOADS_FILE,
    output:
        "resources/downloads/{download}",
    log:
        "logs/download_file/{download}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("download"),
        lock=DOWNLOADS_LOCK,
    shell:
        "python -m zslrepro download {wildcards.download} --sources {input.sources}"
        " --lock {params.lock} --out {output} > {log} 2>&1"


rule extract_download:
    input:
        sources=DOWNLOADS_FILE,
        archive="resources/downloads/{download}",
    output:
        "resources/installed/{download}.ok",
    log:
        "logs/extract_download/{download}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("extract-archive"),
        lock=DOWNLOADS_LOCK,
    shell:
        "python -m zslrepro extract-archive {wildcards.download} --sources {input.sources}"
        " --lock {params.lock} --archive {input.archive} --marker {output} > {log} 2>&1"


rule synthesize_dataset:
    input:
        config=dataset_config_file,
    output:
        res101="resources/datasets/{dataset}/xlsa17/data/{dataset}/res101.mat",
        splits="resources/datasets/{dataset}/xlsa17/data/{dataset}/att_splits.mat",
        w2v="resources/datasets/{dataset}/w2v/{dataset}_attribute.pkl",
        names="resources/datasets/{dataset}/attributes.txt",
        objects="resources/datasets/{dataset}/objects.json",
    log:
        "logs/synthesize_dataset/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("synthesize"),
    shell:
        "python -m zslrepro synthesize --dataset-config {input.config}"
        " --out resources/datasets/{wildcards.dataset} > {log} 2>&1"


rule regenerate_word_vectors:
    input:
        config=dataset_config_file,
        index="results/data/{dataset}/index.npz",
        model="resources/downloads/word2vec-google-news-300.gz",
    output:
        pkl="results/word_vectors/{dataset}/regenerated.pkl",
        report="results/word_vectors/{dataset}/comparison.csv",
    log:
        "logs/regenerate_word_vectors/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("word-vectors"),
    shell:
        "python -m zslrepro word-vectors --dataset-config {input.config} --model {input.model}"
        " --out-pkl {output.pkl} --report {output.report} > {log} 2>&1"


rule verify_user_files:
    input:
        config=dataset_config_file,
        sources=DOWNLOADS_FILE,
    output:
        "resources/installed/user/{dataset}.ok",
    log:
        "logs/verify_user_files/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("verify-files"),
        files=user_files_of,
        lock=DOWNLOADS_LOCK,
    shell:
        "python -m zslrepro verify-files {params.files:q} --sources {input.sources} --lock {params.lock}"
        " --marker {output} > {log} 2>&1"


rule ingest_dataset:
    input:
        unpack(raw_dataset_files),
    output:
        index="results/data/{dataset}/index.npz",
        summary="results/data/{dataset}/summary.json",
        localisation="results/data/{dataset}/localisation.npz",
    log:
        "logs/ingest_dataset/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_of("ingest"),
    shell:
        "python -m zslrepro ingest --dataset-config {input.config}"
        " --out {output.index} --summary {output.summary} --localisation {output.localisation} > {log} 2>&1"
