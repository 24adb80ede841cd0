localrules:
    run_table,
    latency,
    calibration_summary,
    calibration,
    accuracy_tables,
    complexity_tables,
    cost_plan,
    figures,
    attention_maps,
    report,
    publish,


rule accuracy_tables:
    input:
        all_metrics(),
        longrun_progress(),
        run_table=RUN_TABLE_FILE,
    output:
        [report(path, caption="../report/tables.rst", category="Tables")
         if path.endswith(".md") else path for path in table_files(ACCURACY_TABLES)],
    log:
        f"{LOGS}/accuracy_tables.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.run_table),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        longruns=LONGRUNS_OPTION,
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} tables --which accuracy --records {params.records} --out {params.out}"
        " {params.longruns} > {log} 2>&1"


rule complexity_tables:
    input:
        LATENCY_INPUT,
    output:
        [report(path, caption="../report/tables.rst", category="Tables")
         if path.endswith(".md") else path for path in table_files(COMPLEXITY_TABLES)],
    log:
        f"{LOGS}/complexity_tables.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
        latency=LATENCY_OPTION,
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} tables --which complexity --out {params.out} {params.latency} > {log} 2>&1"


# `snakemake latency`: batch-1 latency of Table VI's and Table III's models on OpenVINO's
# binary kernel, in float32 and in PyTorch (ir2net.latency); no data, no trained weights.  Every
# core is asked for (Snakemake caps it at --cores), so that nothing else runs beside the
# measurement.  Not part of `all`: the tables read config latency_json (point it here to render
# this machine's record).
rule latency:
    output:
        LATENCY_MEASURED,
    log:
        f"{LOGS}/latency.log",
    threads: 1024
    params:
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} latency --out {output} > {log} 2>&1"


rule cost_plan:
    output:
        f"{RESULTS}/plan.md",
    log:
        f"{LOGS}/cost_plan.log",
    params:
        profile=PAPER_PROFILE,  # the published schedules
        device=config["plan_device"],
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} plan --configfile {params.profile} --device {params.device}"
        " --out {output} > {log} 2>&1"


rule figures:
    input:
        all_metrics(),
        longrun_progress(),
        LATENCY_INPUT,
        run_table=RUN_TABLE_FILE,
    output:
        [report(path, caption=f"../report/{os.path.basename(path)[:-4]}.rst", category="Figures")
         if path.endswith(".png") else path for path in FIGURES],
    log:
        f"{LOGS}/figures.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.run_table),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        longruns=LONGRUNS_OPTION,
        latency=LATENCY_OPTION,
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} figures --records {params.records} --out {params.out} {params.longruns}"
        " {params.latency} > {log} 2>&1"


rule attention_maps:
    input:
        table1_weights(),
        all_metrics(),
        run_table=RUN_TABLE_FILE,
    output:
        report(f"{RESULTS}/figures/attention.png", caption="../report/attention.rst",
               category="Figures"),
    log:
        f"{LOGS}/attention_maps.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.run_table),
        data_check=refuse_without("cifar10"),
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.data_check}{params.cli} attention --records {params.records} --out {output}"
        " > {log} 2>&1"


rule report:
    input:
        tables=TABLES,
        figures=FIGURES,
        attention=f"{RESULTS}/figures/attention.png",
        plan=[f"{RESULTS}/plan.md"] if config["plan_device"] else [],
        latency=LATENCY_INPUT,
        divergences=DIVERGENCES,
        run_table=RUN_TABLE_FILE,
    output:
        md=f"{REPORT}/report.md",
        html=report(f"{REPORT}/report.html", caption="../report/report.rst", category="Report"),
    log:
        f"{LOGS}/report.log",
    params:
        records=lambda wildcards, input: os.path.dirname(input.run_table),
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        figures=lambda wildcards, input: os.path.dirname(input.figures[0]),
        out=lambda wildcards, output: os.path.dirname(output.md),
        benchmark=(f"--benchmark {config['benchmark_json']}" if config["benchmark_json"] else ""),
        plan=lambda wildcards, input: f"--plan {input.plan[0]}" if input.plan else "",
        latency=LATENCY_OPTION,
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} report --records {params.records} --tables {params.tables}"
        " --figures {params.figures} --out {params.out} --divergences {input.divergences}"
        " {params.benchmark} {params.plan} {params.latency} > {log} 2>&1"


# `snakemake publish`: after the main job, copy the profile's run records into the
# repository and render the committed tables, figures and report from them (config
# `publish:`). Not part of `all`, and it has no output files: it runs whenever asked.
rule publish:
    input:
        rules.report.output,
        attention=f"{RESULTS}/figures/attention.png",
    log:
        f"{LOGS}/publish.log",
    params:
        to=config["publish"],
        longruns=LONGRUNS if WITH_LONGRUNS else "''",
        benchmark=config["benchmark_json"] or "''",
        latency=LATENCY_JSON or "''",
        divergences=DIVERGENCES,
        plan_device=config["plan_device"] or "",
        paper_profile=PAPER_PROFILE,
        runs=RUNS_DIR,
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} publish --runs {params.runs} --records {params.to[records]}"
        " --tables {params.to[tables]} --figures {params.to[figures]} --report {params.to[report]}"
        " --attention {input.attention} --longruns {params.longruns}"
        " --divergences {params.divergences} --benchmark {params.benchmark}"
        " --latency {params.latency}"
        " --plan-device '{params.plan_device}' --plan-profile {params.paper_profile} > {log} 2>&1"
