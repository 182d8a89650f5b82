# External methods: any command that writes an image-set file (see docs/baselines.md).
# `smi run-external` times the command, validates the file against the teacher and writes the
# same metrics record as `smi invert`, so the evaluators, tables and report pick it up.


def external_command(label):
    """The method's command with {repo} (the workflow's folder) filled in.

    {python} is left for `smi run-external` to fill, so that the rule's parameters do not
    depend on the path of the interpreter (which would rerun the job for every venv path).
    """
    return EXTERNAL[label]["command"].replace("{repo}", str(workflow.basedir))


rule invert_external:
    input:
        teacher=rules.train_teacher.output.model,
    output:
        image_set_outputs(),
    wildcard_constraints:
        method=label_pattern(EXTERNAL),
    params:
        teacher_id=teacher_id,
        command=lambda w: shlex.quote(external_command(w.method)),
        num_images=num_images,
        timeout=lambda w: f"--timeout {EXTERNAL[w.method]['timeout_s']}" if "timeout_s" in EXTERNAL[w.method] else "",
    log:
        f"{R}/logs/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=240,
        gpu=GPU,
    shell:
        "{SMI} run-external --name {wildcards.method} --command {params.command}"
        " --teacher {input.teacher} --teacher-id {params.teacher_id} --num-images {params.num_images}"
        " --seed {wildcards.seed} --out {output.images} --metrics {output.metrics} --grid {output.grid}"
        " --device {DEVICE} --threads {threads} {params.timeout} > {log} 2>&1"
