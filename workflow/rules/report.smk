# Phase 5: results tables, figures and the benchmark summary; all annotated for `snakemake --report`.


rule results_tables:
    input:
        metrics=all_metrics(),
        predictions=all_predictions(),
        paper=CONFIG_DIR / "paper_results.yaml",
    output:
        csv=f"{TABLES_DIR}/results.csv",
        md=f"{TABLES_DIR}/results.md",
        tex=f"{TABLES_DIR}/results.tex",
        html=report(
            f"{TABLES_DIR}/results.html",
            caption="../report/results_table.rst",
            category="1. Results tables",
        ),
        pairwise_csv=f"{TABLES_DIR}/pairwise.csv",
        pairwise_md=f"{TABLES_DIR}/pairwise.md",
        pairwise_html=report(
            f"{TABLES_DIR}/pairwise.html",
            caption="../report/pairwise.rst",
            category="1. Results tables",
        ),
    log:
        "logs/results_tables.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("tables"),
        statistics=statistics_flags(),
    shell:
        "python -m zslrepro tables --metrics {input.metrics} --predictions {input.predictions}"
        " --paper-results {input.paper} {params.statistics}"
        ' --out-dir "$(dirname {output.csv})" > {log} 2>&1'


rule verdict_figure:
    input:
        f"{TABLES_DIR}/results.csv",
    output:
        report(
            "results/figures/verdicts/{method}.png",
            caption="../report/verdicts.rst",
            category="1. Results tables",
            labels={"method": "{method}", "figure": "verdicts"},
        ),
    log:
        "logs/verdict_figure/{method}.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("verdict-figure"),
    shell:
        "python -m zslrepro verdict-figure --results-csv {input} --method {wildcards.method} --out {output} > {log} 2>&1"


rule reference_check:
    input:
        metrics=all_metrics(),
        predictions=all_predictions(),
        selections=all_selections(),
        attention=all_attention("scores.json"),
        manifest=f"{config['reference']}/manifest.json" if config.get("reference") else [],
    output:
        md=f"{TABLES_DIR}/reference_check.md",
        csv=f"{TABLES_DIR}/reference_check.csv",
    log:
        "logs/reference_check.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("compare"),
        reference=lambda w, input: Path(input.manifest).parent,
        statistics=statistics_flags(),
    shell:
        "python -m zslrepro compare --reference {params.reference} --results results {params.statistics}"
        " --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


rule tuning_table:
    input:
        all_selections(),
    output:
        csv=f"{TABLES_DIR}/tuning.csv",
        md=f"{TABLES_DIR}/tuning.md",
        html=report(
            f"{TABLES_DIR}/tuning.html",
            caption="../report/tuning.rst",
            category="1. Results tables",
        ),
    log:
        "logs/tuning_table.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("tuning-table"),
    shell:
        'python -m zslrepro tuning-table --selected {input} --out-dir "$(dirname {output.csv})" > {log} 2>&1'


rule plot_run:
    input:
        curves=lambda wc: expand("results/curves/{method}/{dataset}/{run}/rep{rep}.csv", rep=replicates_of(**wc), **wc),
        histories=lambda wc: expand(
            "results/runs/{method}/{dataset}/{run}/rep{rep}/history.jsonl",
            rep=replicates_of(**wc),
            **wc,
        ),
    output:
        seen_unseen=report(
            "results/plots/{method}/{dataset}/{run}/seen_unseen.png",
            caption="../report/seen_unseen.rst",
            category="2. Seen-unseen curves",
            labels={"method": "{method}", "dataset": "{dataset}", "run": "{run}"},
        ),
        training=report(
            "results/plots/{method}/{dataset}/{run}/training.png",
            caption="../report/training.rst",
            category="3. Training curves",
            labels={"method": "{method}", "dataset": "{dataset}", "run": "{run}"},
        ),
    log:
        "logs/plot_run/{method}/{dataset}/{run}.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("plots"),
        title=lambda wc: f"{wc.method} on {wc.dataset} ({wc.run})",
    shell:
        "python -m zslrepro plots --curves {input.curves} --histories {input.histories}"
        ' --title "{params.title}" --seen-unseen {output.seen_unseen}'
        " --training {output.training} > {log} 2>&1"


rule benchmark_summary:
    input:
        benchmarks=all_benchmarks(),
        compute=all_compute_records(),
    output:
        csv=f"{TABLES_DIR}/benchmarks.csv",
        html=report(
            f"{TABLES_DIR}/benchmarks.html",
            caption="../report/benchmarks.rst",
            category="4. Compute",
        ),
    log:
        "logs/benchmark_summary.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("benchmarks"),
    shell:
        "python -m zslrepro benchmarks {input.benchmarks} --compute {input.compute} --out-csv {output.csv}"
        " --out-html {output.html} > {log} 2>&1"
