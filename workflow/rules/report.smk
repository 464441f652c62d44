# Phase 5: results tables (CSV, Markdown, LaTeX) over methods, datasets and replicates.


rule results_tables:
    input:
        metrics=all_metrics(),
        paper=CONFIG_DIR / "paper_results.yaml",
    output:
        csv=f"{TABLES_DIR}/results.csv",
        md=f"{TABLES_DIR}/results.md",
        tex=f"{TABLES_DIR}/results.tex",
    log:
        "logs/results_tables.log",
    conda:
        "../envs/report.yaml"
    shell:
        "python -m zslrepro tables --metrics {input.metrics} --paper-results {input.paper}"
        ' --out-dir "$(dirname {output.csv})" > {log} 2>&1'
