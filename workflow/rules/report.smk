# Aggregation, paper-style tables and figures, and their report captions.

from smi.report.names import FIGURE_NAMES as FIGURES, TABLE_NAMES as TABLES

TABLES_DIR = f"{R}/tables"  # <name>.md, .tex, .html for each of TABLES
FIGURES_DIR = f"{R}/figures"  # <name>.png, .svg for each of FIGURES


rule aggregate:
    input:
        all_metrics() + testbed_metrics() + pretrain_metrics(),
    output:
        summary=report(f"{R}/summary.csv", caption="../report/summary.rst", category="Summary"),
        curves=f"{R}/curves.csv",
        active_tokens=f"{R}/active_tokens.csv",
        loss_curves=f"{R}/loss_curves.csv",
        activation_ranges=f"{R}/activation_ranges.csv",
    log:
        f"{R}/logs/aggregate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{SMI} aggregate --inputs {input} --out {output.summary} > {log} 2>&1"


rule tables:
    input:
        summary=rules.aggregate.output.summary,
        curves=rules.aggregate.output.curves,
    output:
        # The HTML version is embedded in the report; Markdown and LaTeX are for papers and READMEs.
        **{
            f"{name}_{ext}": (
                report(f"{TABLES_DIR}/{name}.{ext}", caption=f"../report/{name}.rst", category="Tables", labels={"table": name})
                if ext == "html"
                else f"{TABLES_DIR}/{name}.{ext}"
            )
            for name in TABLES
            for ext in ("md", "tex", "html")
        },
    params:
        target=config["report"]["target_fraction"],
    log:
        f"{R}/logs/tables.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{SMI} tables --summary {input.summary} --out-dir {TABLES_DIR} --target-fraction {params.target} > {log} 2>&1"


rule figures:
    input:
        summary=rules.aggregate.output.summary,
        curves=rules.aggregate.output.curves,
        active_tokens=rules.aggregate.output.active_tokens,
        loss_curves=rules.aggregate.output.loss_curves,
        image_sets=image_sets(),
    output:
        # SVG goes into the report (sharp at any zoom); PNG is for slides and quick looks.
        **{
            f"{name}_{ext}": (
                report(f"{FIGURES_DIR}/{name}.{ext}", caption=f"../report/{name}.rst", category="Figures", labels={"figure": name})
                if ext == "svg"
                else f"{FIGURES_DIR}/{name}.{ext}"
            )
            for name in FIGURES
            for ext in ("png", "svg")
        },
    params:
        classes=config["report"]["grid_classes"],
    log:
        f"{R}/logs/figures.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "{SMI} figures --summary {input.summary} --image-sets {input.image_sets} --out-dir {FIGURES_DIR}"
        " --grid-classes {params.classes} > {log} 2>&1"
