# Isolated timing: one job per experiment times every inversion method of its teacher,
# interleaved in rounds (`smi time-inversions`); the efficiency table takes its times and
# speed-ups from this record, not from the inversion jobs, which share the machine.


def _machine_cores():
    """Every core Snakemake may use here: claiming them all keeps other jobs off the machine.

    Only the scheduling claim: torch runs on the config's `threads`, as in the inversion jobs.
    Without a local core count (cluster executors, --report) the claim is the config's threads.
    """
    return workflow.resource_settings.cores or THREADS


def timing_methods(wildcards):
    exp = experiment(wildcards.dataset, teacher_id(wildcards))
    return {m: {"method": method_entry(m)[0], "params": method_entry(m)[1]} for m in timed_methods(exp)}


rule time_inversion:
    input:
        teacher=rules.train_teacher.output.model,
    output:
        TIMING_RECORD,
    params:
        teacher_id=teacher_id,
        methods=lambda w: as_json(timing_methods(w)),
        options=as_json(config["inversion"]["options"]),
        num_images=num_images,
        batch_size=config["inversion"]["batch_size"],
        iterations=config["inversion"]["iterations"],
        timed_iterations=TIMING.get("iterations") or config["inversion"]["iterations"],
        rounds=TIMING.get("rounds", 3),
    log:
        f"{R}/logs/timing/{{dataset}}/{{teacher}}.log",
    threads: _machine_cores()
    resources:
        mem_mb=MEM_MB,
        runtime=240,
        gpu=GPU,
    shell:
        "{SMI} time-inversions --teacher {input.teacher} --teacher-id {params.teacher_id}"
        " --methods {params.methods} --num-images {params.num_images} --batch-size {params.batch_size}"
        " --iterations {params.iterations} --timed-iterations {params.timed_iterations} --rounds {params.rounds}"
        " --inversion-config {params.options} --out {output}"
        " --device {DEVICE} --threads {THREADS} {PROGRESS} > {log} 2>&1"
