# Phase 4: evaluation of each run under the authors' and the clean protocol.


rule evaluate_run:
    input:
        model="results/runs/{method}/{dataset}/rep{rep}/model.pt",
        history="results/runs/{method}/{dataset}/rep{rep}/history.jsonl",
        features=feature_store_of,
    output:
        metrics="results/metrics/{method}/{dataset}/rep{rep}.json",
        curve="results/curves/{method}/{dataset}/rep{rep}.csv",
    log:
        "logs/evaluate_run/{method}/{dataset}/rep{rep}.log",
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m zslrepro evaluate --model {input.model} --history {input.history}"
        " --features {input.features} --metrics {output.metrics} --curve {output.curve} > {log} 2>&1"
