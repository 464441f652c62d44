# Where each method looks: its attention maps on a fixed sample of test images, scored against the
# dataset's localisation ground truth (SYNTH's objects, CUB's parts) and drawn; then one table.


rule attention_maps:
    input:
        model=f"results/runs/{{method}}/{{dataset}}/{{run}}/rep0/model.pt",
        data=run_data,
        index="results/data/{dataset}/index.npz",
        truth="results/data/{dataset}/localisation.npz",
        config=dataset_config_file,
    output:
        scores="results/attention/{method}/{dataset}/{run}/scores.json",
        figure=report(
            "results/attention/{method}/{dataset}/{run}/figure.png",
            caption="../report/attention.rst",
            category="5. Attention maps",
            labels={"method": "{method}", "dataset": "{dataset}", "run": "{run}"},
        ),
    log:
        "logs/attention_maps/{method}/{dataset}/{run}.log",
    benchmark:
        "results/benchmarks/attention_maps/{method}/{dataset}/{run}.tsv"
    conda:
        "../envs/torch-cpu.yaml"
    threads: 1  # seconds of work: two run side by side on the 2-core main job
    params:
        code=code_of("attention", per_method=True),
        images=lambda wc: f"--images-root {DATASETS[wc.dataset]['images_root']}",
    shell:
        "python -m zslrepro attention --model {input.model} --data {input.data} --index {input.index}"
        " --truth {input.truth} --dataset-config {input.config} {params.images} --threads {threads} $ZSLREPRO_FEED"
        ' --out-dir "$(dirname {output.scores})" > {log} 2>&1'


rule localisation_table:
    input:
        all_attention("scores.json"),
    output:
        csv=f"{TABLES_DIR}/localisation.csv",
        md=f"{TABLES_DIR}/localisation.md",
        html=report(
            f"{TABLES_DIR}/localisation.html",
            caption="../report/localisation.rst",
            category="1. Results tables",
        ),
    log:
        "logs/localisation_table.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("localisation-table"),
    shell:
        'python -m zslrepro localisation-table --scores {input} --out-dir "$(dirname {output.csv})" > {log} 2>&1'
