# Teachers: trained, fine-tuned or loaded once per dataset and cached as a file.
#
# Pretrained weights are fetched once, by the local rule `fetch_weights` (the login node on a
# cluster), into the run's weights folder; teacher and student jobs read only that file, so
# compute nodes need no network (docs/slurm.md).

# Teacher sources that start from timm's pretrained weights.
_PRETRAINED_SOURCES = ("pretrained", "finetune")


def weights_file(model):
    """The run's local copy of timm's pretrained weights of `model`."""
    return fill(WEIGHTS_FILE, model=model)


def teacher_hub_model(teacher_id):
    """The timm model whose hub weights the teacher needs, or None (own file or no pretraining)."""
    spec = config["teachers"][teacher_id]
    if spec["source"] not in _PRETRAINED_SOURCES or spec.get("pretrained_file") or spec.get("checkpoint"):
        return None
    return spec["model"]


def student_hub_model(student_id):
    """The timm model whose hub weights the student needs, or None."""
    spec = STUDENTS[student_id]
    return spec["model"] if spec.get("init") == "pretrained" and not spec.get("checkpoint") else None


def teacher_weights(wildcards):
    model = teacher_hub_model(teacher_id(wildcards))
    return [weights_file(model)] if model else []


def student_weights(wildcards):
    model = student_hub_model(wildcards.student)
    return [weights_file(model)] if model else []


def teacher_job_spec(teacher_id, dataset_id):
    """The teacher spec a job gets: hub weights replaced by the fetched local file."""
    spec = teacher_spec(teacher_id, dataset_id)
    model = teacher_hub_model(teacher_id)
    if model:
        spec["pretrained_file"] = weights_file(model)
    return spec


def student_job_spec(student_id):
    """The student spec a job gets: hub weights replaced by the fetched local file."""
    spec = dict(STUDENTS[student_id])
    model = student_hub_model(student_id)
    if model:
        spec["checkpoint"] = weights_file(model)
    return spec


localrules:
    fetch_weights,


rule fetch_weights:
    output:
        WEIGHTS_FILE,
    wildcard_constraints:
        model="[A-Za-z0-9_.-]+",
    log:
        f"{R}/logs/weights/{{model}}.log",
    shell:
        "{SMI} fetch-weights --model {wildcards.model} --out-dir {WEIGHTS} > {log} 2>&1"


rule train_teacher:
    input:
        weights=teacher_weights,
    output:
        multiext(TEACHER, model=".pt", metrics=".json"),
    params:
        teacher_spec=lambda w: as_json(teacher_job_spec(teacher_id(w), w.dataset)),
        teacher_id=teacher_id,
        teacher_seed=teacher_seed,
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
    log:
        f"{R}/logs/teachers/{{dataset}}/{{teacher}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=240,
        gpu=GPU,
    shell:
        "{SMI} train-teacher --teacher-spec {params.teacher_spec} --dataset-spec {params.dataset_spec}"
        " --teacher-id {params.teacher_id} --seed {params.teacher_seed} --out {output.model} --metrics {output.metrics}"
        " --device {DEVICE} --threads {threads} {PROGRESS} > {log} 2>&1"
