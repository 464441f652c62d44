# Phase 3: training. A killed job resumes from its checkpoint.pt when run again.
# A run reads its feature store, or (end-to-end methods) the dataset index and its images. Methods
# that need an artefact first (SGMA's channel groups) get it from method_artefact; runs whose
# config has a tuning section are trained with the values chosen on the validation classes.


rule method_artefact:
    input:
        config=method_config_file,
        data=run_data,
    output:
        "results/runs/{method}/{dataset}/{run}/artefacts/{split}/{artefact}.pt",
    log:
        "logs/method_artefact/{method}/{dataset}/{run}/{split}/{artefact}.log",
    benchmark:
        "results/benchmarks/method_artefact/{method}/{dataset}/{run}/{split}/{artefact}.tsv"
    priority: long_chains_first
    conda:
        TORCH_ENV
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        device=JOB_DEVICE,
    params:
        code=code_of("artefact", per_method=True),
        images=images_flag,
        split=lambda w: "--validation-point 0" if w.split == "validation" else "",
    shell:
        "python -m zslrepro artefact --method-config {input.config} --run {wildcards.run}"
        " --data {input.data} {params.images} {params.split} --name {wildcards.artefact}"
        " --device {resources.device} --threads {threads} $ZSLREPRO_FEED --out {output} > {log} 2>&1"


rule train_validation_point:
    input:
        unpack(artefact_files("validation")),
        config=method_config_file,
        data=run_data,
    output:
        model="results/runs/{method}/{dataset}/{run}/tuning/point{point}/model.pt",
        history="results/runs/{method}/{dataset}/{run}/tuning/point{point}/history.jsonl",
        compute="results/runs/{method}/{dataset}/{run}/tuning/point{point}/compute.json",
    log:
        "logs/train_validation_point/{method}/{dataset}/{run}/point{point}.log",
    benchmark:
        "results/benchmarks/train_validation_point/{method}/{dataset}/{run}/point{point}.tsv"
    priority: long_chains_first
    conda:
        TORCH_ENV
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        device=JOB_DEVICE,
    params:
        code=code_of("train", per_method=True),
        images=images_flag,
        artefacts=lambda w, input: artefact_flags(input),
    shell:
        "python -m zslrepro train --method-config {input.config} --run {wildcards.run}"
        " --validation-point {wildcards.point} --data {input.data} {params.images} {params.artefacts}"
        " --device {resources.device} --threads {threads} $ZSLREPRO_FEED"
        ' --out-dir "$(dirname {output.model})" > {log} 2>&1'


rule select_hyperparameters:
    input:
        config=method_config_file,
        data=run_data,
        models=validation_models,
    output:
        "results/runs/{method}/{dataset}/{run}/tuning/selected.json",
    log:
        "logs/select_hyperparameters/{method}/{dataset}/{run}.log",
    benchmark:
        "results/benchmarks/select_hyperparameters/{method}/{dataset}/{run}.tsv"
    priority: long_chains_first
    conda:
        TORCH_ENV
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        device=JOB_DEVICE,
    params:
        code=code_of("tune", per_method=True),
        images=images_flag,
    shell:
        "python -m zslrepro tune --method-config {input.config} --run {wildcards.run}"
        " --data {input.data} {params.images} --models {input.models} --device {resources.device} --threads {threads} $ZSLREPRO_FEED"
        " --out {output} > {log} 2>&1"


rule train_method:
    input:
        unpack(artefact_files("test")),
        unpack(selection_of),
        config=method_config_file,
        data=run_data,
    output:
        model="results/runs/{method}/{dataset}/{run}/rep{rep}/model.pt",
        history="results/runs/{method}/{dataset}/{run}/rep{rep}/history.jsonl",
        compute="results/runs/{method}/{dataset}/{run}/rep{rep}/compute.json",
    log:
        "logs/train_method/{method}/{dataset}/{run}/rep{rep}.log",
    benchmark:
        "results/benchmarks/train_method/{method}/{dataset}/{run}/rep{rep}.tsv"
    priority: long_chains_first
    conda:
        TORCH_ENV
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        device=JOB_DEVICE,
    params:
        code=code_of("train", per_method=True),
        images=images_flag,
        artefacts=lambda w, input: artefact_flags(input),
        selected=lambda w, input: f"--selected {input.selected}" if "selected" in input.keys() else "",
    shell:
        "python -m zslrepro train --method-config {input.config} --data {input.data} {params.images}"
        " {params.artefacts} {params.selected} --run {wildcards.run} --replicate {wildcards.rep} --device {resources.device} --threads {threads} $ZSLREPRO_FEED"
        ' --out-dir "$(dirname {output.model})" > {log} 2>&1'
