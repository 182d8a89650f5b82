"""SMI benchmark workflow: teachers -> inversion -> quantization / distillation -> reports.

Thin by design: load and validate the config, include the rules, name the final targets.
All logic lives in the `smi` package; every rule calls one `smi` sub-command.

    snakemake --cores all                                  # the embedded default (config/default.yaml)
    snakemake --cores all --configfile config/ci.yaml      # the small CI run
    snakemake -n --configfile config/paper.yaml            # the paper's setting (GPU machines)
    snakemake --report results/<run>/report.html           # self-contained HTML report
"""

from snakemake.utils import min_version, validate

min_version("9.0")

# A --configfile on the command line replaces the default config instead of merging into it,
# so that a run never inherits teachers or methods it did not ask for.
if not config.get("experiments"):

    configfile: f"{workflow.basedir}/config/default.yaml"


# One line for a schema violation (key path and allowed keys), instead of the whole schema;
# snakemake's validate then fills in the defaults.
from smi.validate import SCHEMA_PATH, check_schema, exit_config_error

try:
    check_schema(config, f"{workflow.basedir}/{SCHEMA_PATH}")
except Exception as exc:
    exit_config_error(exc)
validate(config, SCHEMA_PATH)

report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/invert.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/foreground.smk"
include: "workflow/rules/testbed.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        rules.aggregate.output.summary,
        rules.tables.output,
        rules.figures.output,
    default_target: True
