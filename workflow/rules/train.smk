# Phase 3: training. A killed job resumes from results/runs/.../checkpoint.pt when run again.


rule train_method:
    input:
        config=method_config_file,
        features=feature_store_of,
    output:
        model="results/runs/{method}/{dataset}/{run}/rep{rep}/model.pt",
        history="results/runs/{method}/{dataset}/{run}/rep{rep}/history.jsonl",
    log:
        "logs/train_method/{method}/{dataset}/{run}/rep{rep}.log",
    benchmark:
        "results/benchmarks/train_method/{method}/{dataset}/{run}/rep{rep}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
    shell:
        "python -m zslrepro train --method-config {input.config} --features {input.features}"
        " --run {wildcards.run} --replicate {wildcards.rep}"
        ' --out-dir "$(dirname {output.model})" > {log} 2>&1'
