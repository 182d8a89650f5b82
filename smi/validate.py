"""Checks of a workflow config before any job runs (``snakemake -n`` fails on them).

The JSON schema (``workflow/schemas/config.schema.yaml``) checks keys and types. This module
checks what only the suite itself knows, from the config alone and cheaply, so that a typo
fails at once instead of after hours of teacher training:

- datasets used by an experiment: the name, its options, and for folder datasets that the root
  exists with the top-level entries of its layout (files are not scanned);
- teachers and students: the timm model name, that it builds a supported ViT (on the meta
  device: no memory, no weights) and that the image size is a multiple of the patch size;
  local weights files named in the config exist;
- methods: the registered name and the parameters against the method's ``Params``; stopping
  schedules against the inversion's iteration count;
- the inversion, quantization and distillation settings against their dataclasses, and the
  calibration size against the images each set holds;
- external method templates (placeholders);
- the device: ``cuda`` must exist here, when the jobs run here (see :func:`jobs_run_here`).

The checks of this machine (dataset folders, weights files, CUDA) are skipped when the
environment variable ``SMI_SKIP_MACHINE_CHECKS`` is ``1``: for planning a run (``snakemake -n``)
on a machine other than the one that will run it.

Every problem is an :class:`~smi.errors.SMIError` whose message starts with the config key
path (``teachers.vit-s.model: ...``). :func:`check_schema` turns a schema violation into one
such line (key path, allowed keys or type) instead of the whole schema, and
:func:`load_config_file` gives YAML syntax errors with their line.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from smi.errors import SMIError

#: Top-level entries each folder dataset's root must have (the cheap part of its layout).
FOLDER_LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    # Each inner tuple is a set of alternatives: one of them must exist.
    "imagenet": (("train/",), ("val/",)),
    "imagefolder": (("train/",), ("test/", "val/")),
    "flowers102": (("jpg/",), ("imagelabels.mat",), ("setid.mat",)),
    "cub200": (("images/",), ("images.txt",), ("image_class_labels.txt",), ("train_test_split.txt",)),
}
#: Snakemake executors that run jobs on the machine running Snakemake.
LOCAL_EXECUTORS: frozenset[str] = frozenset({"local", "dryrun", "touch"})
#: Longest instance excerpt quoted in a schema message.
QUOTE_CHARS = 80
#: Environment variable that skips the checks of this machine (dataset folders, weights files, CUDA).
SKIP_MACHINE_ENV = "SMI_SKIP_MACHINE_CHECKS"
#: Where the workflow's schema lives, relative to the workflow folder.
SCHEMA_PATH = "workflow/schemas/config.schema.yaml"


def exit_config_error(exc: BaseException) -> NoReturn:
    """Print ``config error: <message>`` as the only line and exit 1 (used by the Snakefile).

    Snakemake would print an exception raised while parsing the Snakefile with its location
    and a traceback; one line is what a user needs.
    """
    message = " ".join(str(exc).split())  # one line, whatever the message held
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------------------ YAML and schema
def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (or JSON) config, reporting a syntax error with its line and column.

    Raises:
        SMIError: For a missing file, a syntax error, or a document that is not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SMIError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = exc.problem or exc.context or "syntax error"
        raise SMIError(
            f"{path}, {where}: YAML syntax error: {what}; check the indentation and brackets there."
        ) from None
    except yaml.YAMLError as exc:
        raise SMIError(f"{path}: YAML syntax error: {exc}.") from None
    if not isinstance(data, dict):
        raise SMIError(
            f"{path} must hold a mapping of config keys (run, datasets, teachers, ...), got {type(data).__name__}."
        )
    return data


def check_schema(config: Mapping[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Validate ``config`` against the JSON schema; raise one line for the most telling problem.

    An unknown key is reported before the "required" errors it causes (a misspelled required
    key is both), then the deepest problem, since it names the most specific key.

    Raises:
        SMIError: ``<key path>: <problem>; allowed keys / expected type ...``.
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(dict(config)))
    if not errors:
        return
    error = min(
        errors, key=lambda e: (e.validator != "additionalProperties", -len(e.absolute_path), str(e.absolute_path))
    )
    raise SMIError(_schema_message(error))


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def _schema_message(error: Any) -> str:
    path = _key_path(error.absolute_path)
    kind, schema, instance = error.validator, error.schema, error.instance
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed)) if isinstance(instance, dict) else []
        keys = ", ".join(f"{path}.{k}" if path != "(top level)" else k for k in extra)
        return f"{keys}: unknown key(s); allowed keys here are {', '.join(allowed)}."
    if kind == "required":
        missing = [k for k in schema.get("required", []) if isinstance(instance, dict) and k not in instance]
        return f"{path}: missing required key(s) {', '.join(missing)}."
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{path}: must be of type {expected}, got {_quote(instance)} ({type(instance).__name__})."
    if kind == "enum":
        return f"{path}: must be one of {', '.join(map(str, error.validator_value))}, got {_quote(instance)}."
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{path}: must be {sign} {error.validator_value}, got {_quote(instance)}."
    if kind == "pattern":
        return f"{path}: {_quote(instance)} does not match the allowed form {error.validator_value}."
    if kind in ("minItems", "maxItems"):
        return f"{path}: must have {'at least' if kind == 'minItems' else 'at most'} {error.validator_value} item(s)."
    return f"{path}: {error.message[:200]}"


# ------------------------------------------------------------------------------ the device
def jobs_run_here(argv: Iterable[str], environ: Mapping[str, str]) -> bool:
    """Whether Snakemake runs the jobs on this machine, from its command line and profile.

    A cluster login node submits jobs elsewhere and usually has no GPU, so ``device: cuda``
    is checked only when jobs run here: no ``--executor``/``-e`` and no profile
    (``--profile`` or ``SNAKEMAKE_PROFILE``) naming an executor other than local ones.
    """
    args = list(argv)
    executor = _option(args, ("--executor", "-e"))
    profile = _option(args, ("--profile",)) or environ.get("SNAKEMAKE_PROFILE")
    if executor is None and profile:
        executor = _profile_executor(profile)
    return executor is None or executor in LOCAL_EXECUTORS


def _option(args: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "=") and name.startswith("--"):
                return arg.split("=", 1)[1]
    return None


def _profile_executor(profile: str) -> str | None:
    # A profile is a folder, or a name looked up where Snakemake looks for it.
    folders = [Path(profile), Path.home() / ".config" / "snakemake" / profile, Path("/etc/xdg/snakemake") / profile]
    config = next((f / "config.yaml" for f in folders if (f / "config.yaml").is_file()), None)
    if config is None:
        return None  # not found: assume local; each job checks its device again when it starts
    match = re.search(r"^executor:\s*([A-Za-z0-9_-]+)", config.read_text(), flags=re.MULTILINE)
    return match.group(1) if match else None


def check_device(device: str, check_cuda: bool) -> None:
    """Raise if ``device`` is CUDA and this machine has none (only when ``check_cuda``)."""
    if not check_cuda or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise SMIError(
            f"device: {device!r} but CUDA is not available on this machine; set device: cpu "
            "(or submit the jobs to GPU nodes with a cluster profile)."
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise SMIError(
            f"device: {device!r} but this machine has {torch.cuda.device_count()} GPU(s); use cuda or cuda:0."
        )


# ------------------------------------------------------------------------------ the whole config
def check_workflow_config(
    config: Mapping[str, Any], base_dir: str | os.PathLike[str], check_cuda: bool, check_machine: bool = True
) -> None:
    """Run every check of the module doc on a schema-valid config (defaults filled in).

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
        _check_dataset(dataset_id, config["datasets"][dataset_id], check_machine)
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
        teacher_kwargs = _check_teacher(
            exp["teacher"], config["teachers"][exp["teacher"]], exp.get("teacher_recipe"), check_machine
        )
        if exp["distill"] if "distill" in exp else exp["methods"]:
            _check_distillation(config["distillation"], teacher_kwargs, check_machine)


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


def _at(key: str, exc: SMIError) -> SMIError:
    return SMIError(f"{key}: {exc}")


def machine_checks_enabled(environ: Mapping[str, str]) -> bool:
    """False when ``SMI_SKIP_MACHINE_CHECKS=1`` (planning a run for another machine)."""
    return environ.get(SKIP_MACHINE_ENV, "") != "1"


def _check_dataset(dataset_id: str, entry: Mapping[str, Any], check_machine: bool) -> None:
    from smi.data import DatasetSpec
    from smi.data.registry import dataset_entry
    from smi.data.spec import resolve_root

    key = f"datasets.{dataset_id}"
    try:
        spec = DatasetSpec.from_config(
            {"name": entry["name"], "root": entry.get("root"), "options": entry.get("options", {})}
        )
        if not dataset_entry(spec.name).needs_root or not check_machine:
            return
        root = Path(resolve_root(spec))
    except SMIError as exc:
        raise _at(key, exc) from None
    if not root.is_dir():
        raise SMIError(
            f"{key}.root: folder {root} does not exist (or is not a folder); give the folder of dataset '{spec.name}'."
        )
    for alternatives in FOLDER_LAYOUT.get(spec.name, ()):
        if not any((root / name).is_dir() if name.endswith("/") else (root / name).is_file() for name in alternatives):
            raise SMIError(
                f"{key}.root: {root} lacks {' or '.join(alternatives)}; dataset '{spec.name}' needs "
                f"{', '.join(' or '.join(a) for a in FOLDER_LAYOUT[spec.name])} under its root."
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
        raise _at("inversion.options", exc) from None


def _check_method(label: str, entry: Mapping[str, Any], iterations: int) -> None:
    from smi.methods.registry import create_method

    key = f"methods.{label}"
    name = entry.get("method") or label
    try:
        method = create_method(name, entry.get("params", {}))
    except SMIError as exc:
        raise _at(key, exc) from None
    schedule = getattr(method.params, "schedule", None)
    if callable(schedule):
        try:
            schedule().within(iterations)
        except SMIError as exc:
            raise _at(f"{key}.params.iterations", exc) from None
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
                raise _at("quantization", exc) from None


def _check_external(label: str, command: str, base_dir: str | os.PathLike[str]) -> None:
    from smi.cli.run_external import PLACEHOLDERS, render_command

    template = command.replace("{repo}", str(base_dir))
    try:
        render_command(template, {k: k for k in PLACEHOLDERS})
    except SMIError as exc:
        raise _at(f"external_methods.{label}.command", exc) from None


def _check_teacher(
    teacher_id: str, entry: Mapping[str, Any], recipe_override: Mapping[str, Any] | None, check_machine: bool
) -> dict[str, Any]:
    """Check a teacher spec; returns the ``img_size``/``patch_size`` a student inherits."""
    from smi.teachers import TeacherSpec

    key = f"teachers.{teacher_id}"
    values = {k: v for k, v in entry.items() if v is not None and v != {}}
    if recipe_override:
        values["recipe"] = {**(values.get("recipe") or {}), **recipe_override}
    try:
        spec = TeacherSpec.from_config(values)
    except SMIError as exc:
        raise _at(key, exc) from None
    for name in ("checkpoint", "pretrained_file"):
        path = getattr(spec, name)
        if check_machine and path and not Path(os.path.expanduser(path)).is_file():
            raise SMIError(f"{key}.{name}: file {path} does not exist; give the path of the weights file.")
    try:
        model = _build(spec.model, spec.model_kwargs)
    except SMIError as exc:
        raise _at(f"{key}.model", exc) from None
    embed = model.patch_embed
    return {"img_size": tuple(embed.img_size), "patch_size": tuple(embed.patch_size)}


def _check_distillation(section: Mapping[str, Any], teacher_kwargs: Mapping[str, Any], check_machine: bool) -> None:
    from smi.config import from_dict
    from smi.distill.config import DEFAULT_PROTOCOL, StudentSpec, parse_recipe

    try:
        parse_recipe(section.get("protocol", DEFAULT_PROTOCOL), section.get("recipe", {}))
    except SMIError as exc:
        raise _at("distillation.recipe", exc) from None
    for student_id, values in section.get("students", {}).items():
        key = f"distillation.students.{student_id}"
        try:
            # `pretrain` is the workflow's (pretrain.smk): the job gets the spec without it.
            spec = from_dict(StudentSpec, {k: v for k, v in values.items() if k != "pretrain"}, "the student spec")
            _build(spec.model, {**teacher_kwargs, **spec.model_kwargs})
        except SMIError as exc:
            raise _at(key, exc) from None
        if check_machine and spec.checkpoint and not Path(os.path.expanduser(spec.checkpoint)).is_file():
            raise SMIError(
                f"{key}.checkpoint: file {spec.checkpoint} does not exist; give the path of the weights file."
            )


def _build(name: str, kwargs: Mapping[str, Any]) -> Any:
    """Build timm model ``name`` on the meta device (no memory, no weights) and check it is a supported ViT."""
    import torch

    from smi.teachers.models import create

    try:
        with torch.device("meta"):
            return create(name, 1, kwargs)
    except SMIError:
        raise
    except Exception as exc:  # timm asserts on inconsistent sizes (e.g. embed_dim vs num_heads)
        raise SMIError(
            f"timm cannot build '{name}' with model_kwargs {dict(kwargs)}: {type(exc).__name__}: {str(exc)[:160]}."
        ) from None
