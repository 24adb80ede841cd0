# IR²Net reproduction: every run of the paper, Tables I-VI, Figure 7 and the report.
#   snakemake --cores all                                   # default profile (config/config.yaml)
#   snakemake --cores all --configfile config/paper.yaml    # the published schedules
#   snakemake --profile workflow/profiles/slurm             # on a SLURM cluster
from snakemake.utils import min_version

min_version("9.0")


if not config:  # no --configfile: the default profile
    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        TABLES,
        FIGURES,
        CALIBRATIONS,
        f"{RESULTS}/figures/attention.png",
        f"{REPORT}/report.md",
        f"{REPORT}/report.html",
    default_target: True
