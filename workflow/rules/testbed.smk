# Testbed properties of every teacher: accuracy per test split (shapes: the background-shortcut
# reliance) and the activation outlier ratio on real test images and on the noise images.

TESTBED = config.get("testbed", {})
NOISE_METHOD = "noise"


def testbed_noise_set(wildcards):
    """The experiment's noise image set (its first seed), if the experiment runs the noise source."""
    exp = experiment(wildcards.dataset, teacher_id(wildcards))
    if NOISE_METHOD not in exp["methods"]:
        return []
    return [image_set_file(wildcards.dataset, wildcards.teacher, NOISE_METHOD, exp["seeds"][0])]


def testbed_metrics():
    return [fill(TESTBED_RECORD, dataset=d, teacher=t) for d, t in teacher_pairs()]


rule testbed:
    input:
        teacher=rules.train_teacher.output.model,
        noise=testbed_noise_set,
    output:
        TESTBED_RECORD,
    params:
        teacher_id=teacher_id,
        dataset_spec=lambda w: as_json(dataset_spec(w.dataset)),
        noise=lambda w, input: f"--noise-set {input.noise}" if input.noise else "",
        num_images=TESTBED.get("num_images", 256),
    log:
        f"{R}/logs/testbed/{{dataset}}/{{teacher}}.log",
    threads: THREADS
    resources:
        mem_mb=MEM_MB,
        runtime=20,
        gpu=GPU,
    shell:
        "{SMI} testbed --teacher {input.teacher} --teacher-id {params.teacher_id} --dataset-spec {params.dataset_spec}"
        " {params.noise} --num-images {params.num_images} --out {output} --device {DEVICE} --threads {threads} > {log} 2>&1"
