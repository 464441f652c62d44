# Phase 4: evaluation of each run under the authors' and the clean protocol.


rule evaluate_run:
    input:
        model="results/runs/{method}/{dataset}/{run}/rep{rep}/model.pt",
        history="results/runs/{method}/{dataset}/{run}/rep{rep}/history.jsonl",
        features=feature_store_of,
    output:
        metrics="results/metrics/{method}/{dataset}/{run}/rep{rep}.json",
        curve="results/curves/{method}/{dataset}/{run}/rep{rep}.csv",
    log:
        "logs/evaluate_run/{method}/{dataset}/{run}/rep{rep}.log",
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m zslrepro evaluate --model {input.model} --history {input.history}"
        " --features {input.features} --metrics {output.metrics} --curve {output.curve} > {log} 2>&1"
