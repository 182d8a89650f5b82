# Pretrained students (as in the paper, which distils into a pretrained DeiT): a student architecture pretrained inside the workflow
# on another embedded dataset, then distilled with a new head. Included before distill.smk.
#
# A student entry with a `pretrain:` block
#     pretrain: {sources: {<target dataset id>: <pretraining dataset id>, ...}, recipe: {...}}
# is distilled from the checkpoint pretrained on the source given for the teacher's dataset
# (init: checkpoint); a student without one is built as its spec says.


def _pretrain_block(student):
    return STUDENTS[student].get("pretrain")


def _check_pretrain():
    """Cross-references of the pretrain blocks, each with a fix in the message."""
    for student, spec in STUDENTS.items():
        block = spec.get("pretrain")
        if block is None:
            continue
        where = f"distillation.students.{student}.pretrain"
        if not isinstance(block, dict) or set(block) - {"sources", "recipe"} or not isinstance(block.get("sources"), dict):
            raise WorkflowError(f"{where}: give 'sources' (target dataset id -> pretraining dataset id) and optionally 'recipe'.")
        for target, source in block["sources"].items():
            if source not in config["datasets"]:
                raise WorkflowError(f"{where}: pretraining dataset {source!r} is not under 'datasets' ({sorted(config['datasets'])}).")
            if config["datasets"][source]["name"] == config["datasets"].get(target, {}).get("name"):
                raise WorkflowError(f"{where}: {target!r} would be pretrained on its own dataset; pick another source.")
        for exp in config["experiments"]:
            if distill_methods(exp) and student in experiment_students(exp) and exp["dataset"] not in block["sources"]:
                raise WorkflowError(f"{where}: no pretraining source for dataset {exp['dataset']!r}; add it under 'sources'.")


def pretrain_source(student, dataset):
    """The pretraining dataset id of ``student`` for a teacher on ``dataset`` (None: no pretraining)."""
    block = _pretrain_block(student)
    return block["sources"][dataset] if block else None


def student_checkpoint(wildcards):
    """The pretrained checkpoint a distillation job needs (empty list without pretraining)."""
    source = pretrain_source(wildcards.student, wildcards.dataset)
    return [fill(STUDENT, student=wildcards.student, dataset=wildcards.dataset) + ".pt"] if source else []


def student_spec_for(student, dataset):
    """The StudentSpec passed to `smi distill`: the config entry, pointed at its checkpoint (pretrained
    here, or the fetched hub weights)."""
    spec = {k: v for k, v in student_job_spec(student).items() if k != "pretrain"}
    source = pretrain_source(student, dataset)
    if source:
        spec.update(init="checkpoint", checkpoint=fill(STUDENT, student=student, dataset=dataset) + ".pt")
    return spec


def pretrain_metrics():
    """One pretraining record per (student, target dataset) that distils a pretrained student."""
    pairs = sorted({(st, e["dataset"]) for e in config["experiments"] if distill_methods(e)
                    for st in experiment_students(e) if pretrain_source(st, e["dataset"])})
    return [fill(STUDENT, student=st, dataset=dataset) + ".json" for st, dataset in pairs]


_check_pretrain()


# One checkpoint per student and *target* dataset (pretrained on that target's source), so that
# its record names the target whose testbed row it belongs to.
rule pretrain_student:
    output:
        multiext(STUDENT, model=".pt", metrics=".json"),
    params:
        student_spec=lambda w: as_json({k: STUDENTS[w.student][k] for k in ("model", "model_kwargs") if k in STUDENTS[w.student]}),
        dataset_spec=lambda w: as_json(dataset_spec(pretrain_source(w.student, w.dataset))),
        target=lambda w: config["datasets"][w.dataset]["name"],
        recipe=lambda w: as_json(_pretrain_block(w.student).get("recipe") or {}),
    log:
        f"{R}/logs/students/{{student}}/{{dataset}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=120,
        gpu=GPU,
    shell:
        "{SMI} pretrain-student --student-spec {params.student_spec} --dataset-spec {params.dataset_spec}"
        " --recipe {params.recipe} --target-dataset {params.target} --student-id {wildcards.student} --out {output.model} --metrics {output.metrics}"
        " --device {DEVICE} --threads {threads} {PROGRESS} > {log} 2>&1"
