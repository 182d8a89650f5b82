# Teachers: trained, fine-tuned or loaded once per dataset and cached as a file.


rule train_teacher:
    output:
        model=f"{R}/teachers/{{dataset}}/{{teacher}}.pt",
        metrics=f"{R}/teachers/{{dataset}}/{{teacher}}.json",
    params:
        teacher_spec=lambda w: as_json(teacher_spec(teacher_id(w), w.dataset)),
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
