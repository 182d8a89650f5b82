# Aggregation, paper-style tables and figures, and their report captions.

from smi.report.names import FIGURE_NAMES as FIGURES, TABLE_NAMES as TABLES


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
        summary=f"{R}/summary.csv",
        curves=f"{R}/curves.csv",
    output:
        # The HTML version is embedded in the report; Markdown and LaTeX are for papers and READMEs.
        **{
            f"{name}_{ext}": (
                report(f"{R}/tables/{name}.{ext}", caption=f"../report/{name}.rst", category="Tables", labels={"table": name})
                if ext == "html"
                else f"{R}/tables/{name}.{ext}"
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
        "{SMI} tables --summary {input.summary} --out-dir {R}/tables --target-fraction {params.target} > {log} 2>&1"


rule figures:
    input:
        summary=f"{R}/summary.csv",
        curves=f"{R}/curves.csv",
        active_tokens=f"{R}/active_tokens.csv",
        loss_curves=f"{R}/loss_curves.csv",
        image_sets=image_sets(),
    output:
        # SVG goes into the report (sharp at any zoom); PNG is for slides and quick looks.
        **{
            f"{name}_{ext}": (
                report(f"{R}/figures/{name}.{ext}", caption=f"../report/{name}.rst", category="Figures", labels={"figure": name})
                if ext == "svg"
                else f"{R}/figures/{name}.{ext}"
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
        "{SMI} figures --summary {input.summary} --image-sets {input.image_sets} --out-dir {R}/figures"
        " --grid-classes {params.classes} > {log} 2>&1"


def final_targets():
    return (
        [f"{R}/summary.csv"]
        + [f"{R}/tables/{n}.{e}" for n in TABLES for e in ("md", "tex", "html")]
        + [f"{R}/figures/{n}.{e}" for n in FIGURES for e in ("png", "svg")]
    )
