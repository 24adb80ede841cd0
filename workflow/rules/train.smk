rule workflow_config:
    output:
        f"{RUNS_DIR}/workflow-config.yaml",
    log:
        f"{LOGS}/workflow_config.log",
    params:
        config=json.dumps(config),
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net save-config --json {params.config:q} --out {output} > {log} 2>&1"


rule imagenet_standin:
    output:
        directory(f"{RUNS_DIR}/imagenet-standin"),
    log:
        f"{LOGS}/imagenet_standin.log",
    params:
        source=("--synthetic" if config["cifar10"]["dataset"] == "synthetic"
                else f"--source {config['cifar10']['root']}"),
        standin=config["imagenet"]["standin"],
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net standin {params.source} --out {output} --classes {params.standin[classes]}"
        " --train-per-class {params.standin[train_per_class]}"
        " --val-per-class {params.standin[val_per_class]} --size {params.standin[image_size]}"
        " > {log} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        metrics=f"{RUNS_DIR}/{{run}}/metrics.json",
        model=f"{RUNS_DIR}/{{run}}/model.pt",
    log:
        f"{LOGS}/train/{{run}}.log",
    params:
        recipe=lambda wildcards: RUNS[wildcards.run].recipe,
        settings=train_settings,
        folder=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: config["threads"]
    resources:
        mem_mb=8000,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "ir2net train --config {params.recipe} --out {params.folder} --threads {threads}"
        " --no-progress --on-config-change restart {params.settings} > {log} 2>&1"
