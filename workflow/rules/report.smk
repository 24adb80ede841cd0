rule tables:
    input:
        all_metrics(),
        longrun_progress(),
        workflow_config=f"{RUNS_DIR}/workflow-config.yaml",
    output:
        [report(path, caption="../report/tables.rst", category="Tables")
         if path.endswith(".md") else path for path in TABLES],
    log:
        f"{LOGS}/tables.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.workflow_config),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        longruns=f"--longruns {LONGRUNS}" if "published" in TABLE_FILES else "",
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net tables --records {params.records} --out {params.out} {params.longruns} > {log} 2>&1"


rule figure7:
    input:
        all_metrics(),
        workflow_config=f"{RUNS_DIR}/workflow-config.yaml",
    output:
        png=report(f"{RESULTS}/figures/fig7.png", caption="../report/fig7.rst",
                   category="Figures"),
        pdf=f"{RESULTS}/figures/fig7.pdf",
    log:
        f"{LOGS}/figure7.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.workflow_config),
        out=lambda wildcards, output: os.path.dirname(output.png),
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net figures --records {params.records} --out {params.out} > {log} 2>&1"


rule attention_maps:
    input:
        table1_weights(),
        all_metrics(),
        workflow_config=f"{RUNS_DIR}/workflow-config.yaml",
    output:
        report(f"{RESULTS}/figures/attention.png", caption="../report/attention.rst",
               category="Figures"),
    log:
        f"{LOGS}/attention_maps.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.workflow_config),
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net attention --records {params.records} --out {output} > {log} 2>&1"


rule report:
    input:
        TABLES,
        fig7=f"{RESULTS}/figures/fig7.png",
        attention=f"{RESULTS}/figures/attention.png",
        divergences="docs/divergences.md",
        workflow_config=f"{RUNS_DIR}/workflow-config.yaml",
    output:
        md=f"{REPORT}/report.md",
        html=report(f"{REPORT}/report.html", caption="../report/report.rst", category="Report"),
    log:
        f"{LOGS}/report.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.workflow_config),
        tables=lambda wildcards, input: os.path.dirname(input[0]),
        figures=lambda wildcards, input: os.path.dirname(input.fig7),
        out=lambda wildcards, output: os.path.dirname(output.md),
        benchmark=(f"--benchmark {config['benchmark_json']}" if config["benchmark_json"] else ""),
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net report --records {params.records} --tables {params.tables}"
        " --figures {params.figures} --out {params.out} --divergences {input.divergences}"
        " {params.benchmark} > {log} 2>&1"
