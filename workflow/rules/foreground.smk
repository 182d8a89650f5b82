# Does CLS-attention scoring keep the foreground? Precision of kept patches on real test images.


rule foreground:
    input:
        teacher=teacher_file,
    output:
        f"{R}/foreground/{{dataset}}/{{teacher}}.json",
    params:
        teacher_id=teacher_id,
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        iterations=" ".join(map(str, config["foreground"]["iterations"])),
        ratio=config["foreground"]["ratio"],
        num_images=config["foreground"]["num_images"],
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
        " --num-images {params.num_images} --out {output} --device {DEVICE} --threads {threads} > {log} 2>&1"
