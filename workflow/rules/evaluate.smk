# Phase 4: evaluation of each run under the authors' and the clean protocol.


rule evaluate_run:
    input:
        model="results/runs/{method}/{dataset}/{run}/rep{rep}/model.pt",
        history="results/runs/{method}/{dataset}/{run}/rep{rep}/history.jsonl",
        data=run_data,
    output:
        metrics="results/metrics/{method}/{dataset}/{run}/rep{rep}.json",
        curve="results/curves/{method}/{dataset}/{run}/rep{rep}.csv",
        predictions="results/predictions/{method}/{dataset}/{run}/rep{rep}.npz",
    log:
        "logs/evaluate_run/{method}/{dataset}/{run}/rep{rep}.log",
    benchmark:
        "results/benchmarks/evaluate_run/{method}/{dataset}/{run}/rep{rep}.tsv"
    conda:
        "../envs/torch-cpu.yaml"
    threads: 1
    params:
        code=code_of("evaluate", per_method=True),
        images=images_flag,
    shell:
        "python -m zslrepro evaluate --model {input.model} --history {input.history}"
        " --data {input.data} {params.images} --metrics {output.metrics} --curve {output.curve}"
        " --predictions {output.predictions}"
        " --threads {threads} $ZSLREPRO_FEED > {log} 2>&1"
