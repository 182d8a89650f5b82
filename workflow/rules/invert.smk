# Inversion: one image set per method label, teacher and seed (registered Python methods).

rule invert:
    input:
        teacher=rules.train_teacher.output.model,
    output:
        image_set_outputs(),
    wildcard_constraints:
        method=label_pattern(config["methods"]),
    params:
        teacher_id=teacher_id,
        method=lambda w: method_entry(w.method)[0],
        method_params=lambda w: as_json(method_entry(w.method)[1]),
        options=as_json(inversion_config()),
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        num_images=num_images,
        batch_size=config["inversion"]["batch_size"],
        iterations=config["inversion"]["iterations"],
    log:
        f"{R}/logs/images/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=240,
        gpu=GPU,
    shell:
        "{SMI} invert --teacher {input.teacher} --teacher-id {params.teacher_id}"
        " --method {params.method} --label {wildcards.method} --method-params {params.method_params}"
        " --num-images {params.num_images} --batch-size {params.batch_size} --iterations {params.iterations}"
        " --inversion-config {params.options} --dataset-spec {params.dataset_spec} --seed {wildcards.seed}"
        " --out {output.images} --metrics {output.metrics} --grid {output.grid}"
        " --device {DEVICE} --threads {threads} {PROGRESS} > {log} 2>&1"
