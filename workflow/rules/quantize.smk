# Post-training quantization calibrated on each method's images, evaluated on the real test split.
# One job per calibration set runs every configured bit-width and range estimator (one metrics
# file each, bits-major), so the start-up cost (imports, test split, the full-precision
# evaluation) is paid once per set.


rule quantize:
    input:
        teacher=rules.train_teacher.output.model,
        images=image_set,
    output:
        # bits-major, the order of --bits x --range-estimator in which the command writes them
        expand(QUANT_RECORD, quant=[quant_dir(w, a, est) for w, a in BITS for est in ESTIMATORS], allow_missing=True),
    params:
        teacher_id=teacher_id,
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        bits=" ".join(f"{w}/{a}" for w, a in BITS),
        calib_size=config["quantization"]["calib_size"],
        estimators=" ".join(ESTIMATORS),
        protocol=config["quantization"]["protocol"],
        options=as_json(config["quantization"]["options"]),
    log:
        f"{R}/logs/quant/{{dataset}}/{{teacher}}/{{method}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=60,
        gpu=GPU,
    shell:
        "{SMI} quantize --teacher {input.teacher} --teacher-id {params.teacher_id}"
        " --dataset-spec {params.dataset_spec} --calib-set {input.images} --calibration {wildcards.method}"
        " --calib-size {params.calib_size} --bits {params.bits} --range-estimator {params.estimators}"
        " --protocol {params.protocol} --quant-config {params.options} --seed {wildcards.seed}"
        " --out {output} --device {DEVICE} --threads {threads} {PROGRESS} > {log} 2>&1"
