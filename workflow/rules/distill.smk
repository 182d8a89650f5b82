# Knowledge transfer: a student distilled per method, evaluated every epoch.
#
# distillation.protocol (docs/protocols.md):
#   suite    - the student trains on the method's image set (the invert rule's output);
#   official - the official SMI code's protocol: the job itself synthesises a growing pool with the
#              method (one inversion batch per epoch) and takes one step per epoch. Its pool and
#              checkpoint live in <output>.state, so a job killed by a time limit resumes when rerun.

KD_PROTOCOL = config["distillation"].get("protocol", "suite")


def _check_official_students():
    """Under the official protocol every student is a copy of its teacher's architecture (fail before any job)."""
    if KD_PROTOCOL != "official":
        return
    for exp in config["experiments"]:
        model = config["teachers"][exp["teacher"]]["model"]
        for student in experiment_students(exp) if distill_methods(exp) else []:
            if STUDENTS[student].get("model") != model:
                raise WorkflowError(
                    f"experiment (dataset={exp['dataset']!r}, teacher={exp['teacher']!r}): the official distillation "
                    f"protocol needs a student of the teacher's architecture {model!r}, but student {student!r} is "
                    f"{STUDENTS[student].get('model')!r}; name the right one under the experiment's 'students:'."
                )


_check_official_students()


def distill_inputs(wildcards):
    """The teacher; with protocol suite also the method's image set and its inversion metrics."""
    inputs = {
        "teacher": teacher_file(wildcards),
        "student_weights": student_weights(wildcards),  # fetched hub weights (teachers.smk), if any
        "student_checkpoint": student_checkpoint(wildcards),  # pretrained in the workflow (pretrain.smk), if any
    }
    if KD_PROTOCOL == "suite":
        inputs["images"] = image_set(wildcards)
        inputs["inversion"] = image_set(wildcards, ".json")
    return inputs


def distill_protocol_args(wildcards, input, output):
    """Command-line arguments that differ between the protocols."""
    if KD_PROTOCOL == "suite":
        budget = config["distillation"]["budget_gflops"]
        return f"--image-set {input.images} --inversion-metrics {input.inversion}" + (
            f" --budget-gflops {budget}" if budget is not None else ""
        )
    name, params = method_entry(wildcards.method)
    inversion = inversion_config(iterations=True)
    return (
        f"--inversion-method {name} --method-params {as_json(params)} --inversion-config {as_json(inversion)}"
        f" --state-dir {output[0]}.state"
    )


rule distill:
    input:
        unpack(distill_inputs),
    output:
        KD_RECORD,
    params:
        teacher_id=teacher_id,
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        student_spec=lambda w: as_json(student_spec_for(w.student, w.dataset)),
        recipe=as_json(config["distillation"]["recipe"]),
        protocol=KD_PROTOCOL,
        protocol_args=distill_protocol_args,
    log:
        f"{R}/logs/kd/{{dataset}}/{{teacher}}/{{student}}/{{method}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        # The official protocol inverts a batch every epoch (1000 epochs in the paper): days on one GPU.
        runtime=240 if KD_PROTOCOL == "suite" else 7 * 24 * 60,
        gpu=GPU,
    shell:
        "{SMI} distill --protocol {params.protocol} --teacher {input.teacher} --teacher-id {params.teacher_id}"
        " --dataset-spec {params.dataset_spec} --method {wildcards.method} {params.protocol_args}"
        " --student-spec {params.student_spec} --student-id {wildcards.student} --recipe {params.recipe}"
        " --seed {wildcards.seed} --out {output}"
        " --device {DEVICE} --threads {threads} {PROGRESS} > {log} 2>&1"
