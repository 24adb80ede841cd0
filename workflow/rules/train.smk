rule run_table:
    output:
        RUN_TABLE_FILE,
    log:
        f"{LOGS}/run_table.log",
    params:
        table=RUN_TABLE,  # rewritten whenever the plan changes
    run:
        write_yaml_atomically(output[0], params.table)


rule imagenet_standin:
    output:
        directory(f"{RUNS_DIR}/imagenet-standin"),
    log:
        f"{LOGS}/imagenet_standin.log",
    params:
        source=("--synthetic" if config["cifar10"]["dataset"] == "synthetic"
                else f"--source {config['cifar10']['root']}"),
        standin=config["imagenet"]["standin"],
        data_check=refuse_without("cifar10"),
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.data_check}{params.cli} standin {params.source} --out {output} --classes {params.standin[classes]}"
        " --train-per-class {params.standin[train_per_class]}"
        " --val-per-class {params.standin[val_per_class]} --size {params.standin[image_size]}"
        " > {log} 2>&1"


# CIFAR-10 runs: one process (one GPU, or a share of one: gpu_resources).
rule train:
    input:
        unpack(train_inputs),
    output:
        metrics=f"{RUNS_DIR}/{{run,{one_of(CIFAR_RUNS)}}}/metrics.json",
        model=f"{RUNS_DIR}/{{run,{one_of(CIFAR_RUNS)}}}/model.pt",
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{LOGS}/train/{{run}}.benchmark.tsv"
    params:
        recipe=lambda wildcards: RUNS[wildcards.run].recipe,
        settings=train_settings,
        folder=lambda wildcards, output: os.path.dirname(output.metrics),
        requeue=requeue_settings,
        launcher=launcher,
        data_check=data_check,
    threads: config["threads"]
    resources:
        mem_mb=8000,
        **gpu_resources(imagenet=False),
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.data_check}{params.launcher} --config {params.recipe} --out {params.folder}"
        " --threads {threads} --on-config-change restart {params.requeue}"
        " --settings {params.settings:q} > {log} 2>&1"


# The data calibration (ir2net.calibration): each calibration run's shortfall from the
# canonical 91.73 %.  `snakemake calibration` trains and summarises only these.
rule calibration_summary:
    input:
        metrics=f"{RUNS_DIR}/{{run}}/metrics.json",
    output:
        f"{RESULTS}/calibration/{{run,{one_of(CALIBRATION_RUNS)}}}.json",
    log:
        f"{LOGS}/calibration/{{run}}.log",
    params:
        folder=lambda wildcards, input: os.path.dirname(input.metrics),
        cli=IR2NET,
    conda:
        "../envs/ir2net.yaml"
    shell:
        "{params.cli} calibrate --from {params.folder} --json {output} > {log} 2>&1"


rule calibration:
    input:
        CALIBRATIONS,


# ImageNet runs: on a cluster (on_cluster), data-parallel over `cluster.imagenet_gpus` GPUs of one node,
# one task per GPU (the plugin's MPI-style jobs: the shell starts the tasks with srun).
use rule train as train_imagenet with:
    output:
        metrics=f"{RUNS_DIR}/{{run,{one_of(IMAGENET_RUNS)}}}/metrics.json",
        model=f"{RUNS_DIR}/{{run,{one_of(IMAGENET_RUNS)}}}/model.pt",
    resources:
        mem_mb=8000,
        **gpu_resources(imagenet=True),
