# External methods: any command that writes an image-set file (see docs/baselines.md).
# `smi run-external` times the command, validates the file against the teacher and writes the
# same metrics record as `smi invert`, so the evaluators, tables and report pick it up.


rule invert_external:
    input:
        teacher=teacher_file,
    output:
        images=f"{R}/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.pt",
        metrics=f"{R}/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.json",
        grid=f"{R}/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.png",
    wildcard_constraints:
        method=_label_pattern(EXTERNAL),
    params:
        command=lambda w: shlex.quote(EXTERNAL[w.method]["command"]),
        num_images=config["inversion"]["num_images"],
    log:
        f"{R}/logs/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=240,
        gpu=GPU,
    shell:
        "{SMI} run-external --name {wildcards.method} --command {params.command}"
        " --teacher {input.teacher} --teacher-id {wildcards.teacher} --num-images {params.num_images}"
        " --seed {wildcards.seed} --out {output.images} --metrics {output.metrics} --grid {output.grid}"
        " > {log} 2>&1"
