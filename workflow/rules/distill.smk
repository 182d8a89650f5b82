# Knowledge transfer: a student distilled on each method's images, evaluated every epoch.


rule distill:
    input:
        teacher=teacher_file,
        images=image_set,
        inversion=lambda w: image_set(w)[: -len(".pt")] + ".json",
        student_checkpoint=student_checkpoint,
    output:
        f"{R}/kd/{{dataset}}/{{teacher}}/{{student}}/{{method}}/seed{{seed}}.json",
    params:
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        student_spec=lambda w: as_json(student_spec_for(w.student, w.dataset)),
        recipe=as_json(config["distillation"]["recipe"]),
        budget=(
            f"--budget-gflops {config['distillation']['budget_gflops']}"
            if config["distillation"]["budget_gflops"] is not None
            else ""
        ),
    log:
        f"{R}/logs/kd/{{dataset}}/{{teacher}}/{{student}}/{{method}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=240,
        gpu=GPU,
    shell:
        "{SMI} distill --teacher {input.teacher} --teacher-id {wildcards.teacher}"
        " --dataset-spec {params.dataset_spec} --image-set {input.images} --method {wildcards.method}"
        " --inversion-metrics {input.inversion}"
        " --student-spec {params.student_spec} --student-id {wildcards.student} --recipe {params.recipe}"
        " {params.budget} --seed {wildcards.seed} --out {output}"
        " --device {DEVICE} --threads {threads} {PROGRESS} > {log} 2>&1"
