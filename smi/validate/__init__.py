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

The checks live in one module per subject: :mod:`~smi.validate.schema` (the YAML file, the
schema, one-line messages), :mod:`~smi.validate.machine` (where jobs run, CUDA),
:mod:`~smi.validate.datasets`, :mod:`~smi.validate.models` (teachers and students) and
:mod:`~smi.validate.workflow` (the whole config, and the inversion, method, quantization and
external-method settings). This package re-exports their public names.
"""

from __future__ import annotations

from smi.validate.datasets import FOLDER_LAYOUT
from smi.validate.machine import LOCAL_EXECUTORS, SKIP_MACHINE_ENV, check_device, jobs_run_here, machine_checks_enabled
from smi.validate.schema import QUOTE_CHARS, SCHEMA_PATH, check_schema, exit_config_error, load_config_file
from smi.validate.workflow import check_workflow_config

__all__ = [
    "FOLDER_LAYOUT",
    "LOCAL_EXECUTORS",
    "QUOTE_CHARS",
    "SCHEMA_PATH",
    "SKIP_MACHINE_ENV",
    "check_device",
    "check_schema",
    "check_workflow_config",
    "exit_config_error",
    "jobs_run_here",
    "load_config_file",
    "machine_checks_enabled",
]
