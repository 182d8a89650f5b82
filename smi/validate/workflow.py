"""The whole workflow config, checked before any job runs; the settings' own checks.

:func:`check_workflow_config` runs every check of :mod:`smi.validate` on a schema-valid config:
cross-references, datasets (:mod:`~smi.validate.datasets`), teachers and students
(:mod:`~smi.validate.models`), and here the inversion, method, quantization and external-method
settings against their dataclasses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from smi.errors import SMIError
from smi.validate.datasets import check_dataset
from smi.validate.machine import check_device
from smi.validate.models import check_distillation, check_teacher
from smi.validate.schema import at_key


def check_workflow_config(
    config: Mapping[str, Any], base_dir: str | os.PathLike[str], check_cuda: bool, check_machine: bool = True
) -> None:
    """Run every check listed in :mod:`smi.validate` on a schema-valid config (defaults filled in).

    Args:
        config: The workflow config.
        base_dir: The workflow's folder (relative paths in the config are resolved from the
            working directory, as the jobs do; ``{repo}`` in external commands is this folder).
        check_cuda: Check that a CUDA device exists (see :func:`jobs_run_here`).
        check_machine: Check this machine at all (dataset folders, weights files, CUDA); see
            :func:`machine_checks_enabled`.

    Raises:
        SMIError: For the first problem, prefixed with its key path.
    """
    check_device(config["device"], check_cuda and check_machine)
    _check_references(config)
    experiments = config["experiments"]
    for dataset_id in dict.fromkeys(e["dataset"] for e in experiments):
        check_dataset(dataset_id, config["datasets"][dataset_id], check_machine)
    inversion = _check_inversion(config["inversion"])
    for exp_index, exp in enumerate(experiments):
        labels = list(dict.fromkeys(exp["methods"] + exp.get("distill", [])))
        for label in labels:
            if label in config["methods"]:
                _check_method(label, config["methods"][label], inversion.iterations)
        if exp.get("quantize", True) and exp["methods"]:
            images = exp.get("num_images") or config["inversion"]["num_images"]
            calib = config["quantization"]["calib_size"]
            if calib > images:
                raise SMIError(
                    f"quantization.calib_size: {calib} calibration images but experiments[{exp_index}] makes "
                    f"only {images} per method; lower calib_size or raise num_images."
                )
    _check_quantization(config["quantization"])
    for label, entry in config.get("external_methods", {}).items():
        _check_external(label, entry["command"], base_dir)
    teachers_seen: set[str] = set()
    for exp in experiments:
        if exp["teacher"] in teachers_seen:
            continue
        teachers_seen.add(exp["teacher"])
        teacher_kwargs = check_teacher(
            exp["teacher"], config["teachers"][exp["teacher"]], exp.get("teacher_recipe"), check_machine
        )
        if exp["distill"] if "distill" in exp else exp["methods"]:
            check_distillation(config["distillation"], teacher_kwargs, check_machine)


def _check_references(config: Mapping[str, Any]) -> None:
    """Every id an experiment names is defined (the schema cannot cross-reference)."""
    labels = set(config["methods"]) | set(config.get("external_methods", {}))
    for index, exp in enumerate(config["experiments"]):
        key = f"experiments[{index}]"
        for section, value in (("datasets", exp["dataset"]), ("teachers", exp["teacher"])):
            if value not in config[section]:
                raise SMIError(
                    f"{key}: unknown {section[:-1]} id {value!r}; define it under '{section}' "
                    f"({', '.join(sorted(config[section]))})."
                )
        for label in exp["methods"] + exp.get("distill", []):
            if label not in labels:
                raise SMIError(
                    f"{key}: unknown method label {label!r}; define it under 'methods' or "
                    f"'external_methods' ({', '.join(sorted(labels))})."
                )


def _check_inversion(section: Mapping[str, Any]) -> Any:
    from smi.config import from_dict
    from smi.inversion import InversionConfig

    values = {
        **dict(section.get("options", {})),
        "batch_size": section["batch_size"],
        "iterations": section["iterations"],
    }
    try:
        return from_dict(InversionConfig, values, "the inversion config")
    except SMIError as exc:
        raise at_key("inversion.options", exc) from None


def _check_method(label: str, entry: Mapping[str, Any], iterations: int) -> None:
    from smi.methods.registry import create_method

    key = f"methods.{label}"
    name = entry.get("method") or label
    try:
        method = create_method(name, entry.get("params", {}))
    except SMIError as exc:
        raise at_key(key, exc) from None
    schedule = getattr(method.params, "schedule", None)
    if callable(schedule):
        try:
            schedule().within(iterations)
        except SMIError as exc:
            raise at_key(f"{key}.params.iterations", exc) from None
    division = getattr(method.params, "division", None)
    if isinstance(division, int) and division > iterations:
        raise SMIError(
            f"{key}.params.division: {division} images per trajectory need at least {division} iterations, "
            f"but inversion.iterations is {iterations}."
        )


def _check_quantization(section: Mapping[str, Any]) -> None:
    from smi.config import from_dict
    from smi.quant.config import QuantConfig

    estimators = section["range_estimator"]
    for estimator in [estimators] if isinstance(estimators, str) else estimators:
        for w_bits, a_bits in section["bits"]:
            values = {
                **dict(section.get("options", {})),
                "w_bits": w_bits,
                "a_bits": a_bits,
                "range_estimator": estimator,
                "calib_size": section["calib_size"],
                "protocol": section.get("protocol", "suite"),
            }
            try:
                from_dict(QuantConfig, values, "the quantization config")
            except SMIError as exc:
                raise at_key("quantization", exc) from None


def _check_external(label: str, command: str, base_dir: str | os.PathLike[str]) -> None:
    from smi.cli.run_external import PLACEHOLDERS, render_command

    template = command.replace("{repo}", str(base_dir))
    try:
        render_command(template, {k: k for k in PLACEHOLDERS})
    except SMIError as exc:
        raise at_key(f"external_methods.{label}.command", exc) from None
