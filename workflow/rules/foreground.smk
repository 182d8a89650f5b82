# Does CLS-attention scoring keep the foreground? Precision of kept patches on real test images
# (ground-truth masks) and on every inverted image set of the experiment (saliency region).


def foreground_image_sets(wildcards):
    exp = experiment(wildcards.dataset, teacher_id(wildcards))
    return [image_set_file(wildcards.dataset, wildcards.teacher, m, s) for m in exp["methods"] for s in exp["seeds"]]


def foreground_labels(wildcards):
    exp = experiment(wildcards.dataset, teacher_id(wildcards))
    return " ".join(m for m in exp["methods"] for _ in exp["seeds"])


rule foreground:
    input:
        teacher=rules.train_teacher.output.model,
        image_sets=foreground_image_sets,
    output:
        FOREGROUND_RECORD,
    params:
        teacher_id=teacher_id,
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        iterations=" ".join(map(str, config["foreground"]["iterations"])),
        ratio=config["foreground"]["ratio"],
        num_images=config["foreground"]["num_images"],
        labels=foreground_labels,
    log:
        f"{R}/logs/foreground/{{dataset}}/{{teacher}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=30,
        gpu=GPU,
    shell:
        "{SMI} foreground --teacher {input.teacher} --teacher-id {params.teacher_id}"
        " --dataset-spec {params.dataset_spec} --iterations {params.iterations} --ratio {params.ratio}"
        " --num-images {params.num_images} --image-sets {input.image_sets} --labels {params.labels} --out {output} --device {DEVICE} --threads {threads} > {log} 2>&1"
