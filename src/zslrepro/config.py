"""Loading and validating the YAML configuration files.

Three kinds of file, each with a JSON schema shipped in ``zslrepro/schemas``:

* ``config/datasets/<DATASET>.yaml`` — where a dataset's files are, how to remap its image paths,
  what counts to expect, and the feature stores that can be extracted from it;
* ``config/methods/<method>/<DATASET>.yaml`` — every hyper-parameter of one method on one dataset
  (the common part: schedule, optimiser, evaluation; the method's own part: ``model`` and ``loss``).
  Authors who trained ZSL and GZSL separately get named ``runs``: each is the base config with a
  few overridden values, and ``report`` says which run supplies T1 and which U/S/H;
* ``config/config.yaml`` — what the workflow runs; validated by Snakemake against
  ``workflow/schemas/config.schema.yaml``.

A file that does not match its schema raises one :class:`ConfigError` naming the file, the key and
the problem, never a traceback from the code that would later trip over it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .catalog import method_entry
from .errors import ConfigError, ZslError


@cache
def load_schema(name: str) -> dict:
    """Return the schema ``zslrepro/schemas/<name>.yaml``."""
    text = resources.files("zslrepro").joinpath("schemas", f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def non_finite_key(data: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinite number in ``data`` (None if there is none).

    JSON schema cannot say "finite": NaN fails no comparison and passes every bound, and YAML reads
    ``.nan`` and ``.inf`` as floats; so every config is walked for them before its schema is applied."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "(top level)"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = non_finite_key(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def validate(data: dict, schema: dict, source: str) -> dict:
    """Validate ``data`` in place (filling schema defaults) or raise one readable ConfigError."""
    bad = non_finite_key(data)
    if bad:
        raise ConfigError(f"{source}: invalid value at '{bad}': NaN and infinity are not allowed; give a finite number")
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = _with_defaults(validator_cls)(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: invalid value at '{where}': {err.message}{more}")
    return data


def _with_defaults(validator_cls):
    """A validator class that also writes each property's ``default`` into the instance."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


@cache
def own_schema(method: str) -> dict:
    """A method's own part of its config schema (``model``, ``loss``, ``x-artefacts``), wherever the
    method comes from (zslrepro.catalog): built in or from a plugin."""
    path = method_entry(method).schema
    if not path.is_file():
        raise ConfigError(f"no schema for method {method!r}: {path} is missing")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def method_schema(method: str) -> dict:
    """The full schema of a method config: the common part plus the method's model/loss part."""
    schema = copy.deepcopy(load_schema("method_common"))
    own = own_schema(method)
    schema["properties"].update(own["properties"])
    schema["required"] = sorted(set(schema.get("required", [])) | set(own.get("required", [])))
    return schema


def method_artefacts(method: str) -> list[str]:
    """Pipeline artefacts a method needs before training (its schema's ``x-artefacts``), each made
    by a rule of its own, e.g. SGMA's k-means channel groups."""
    return list(own_schema(method).get("x-artefacts", []))


def method_releases(method: str) -> dict | None:
    """The authors' released models a method declares (its schema's ``x-releases``: ``file``, a
    pattern of ``{dataset}`` and ``{SETTING}``; ``settings``; ``datasets``; ``docs``), or None."""
    return own_schema(method).get("x-releases")


def load_dataset_config(path: str | Path) -> dict:
    return validate(read_yaml(path), load_schema("dataset"), str(path))


def load_method_config(path: str | Path, method: str | None = None, dataset: str | None = None) -> dict:
    """The validated config file, with ``runs`` and ``report`` filled in; see :func:`run_config`.

    ``method`` and ``dataset``, where given, are what the file's place says it configures (the
    workflow's ``config/methods/<method>/<DATASET>.yaml``): a file whose keys say otherwise would put
    one dataset's numbers under another's name, so it stops here."""
    data = read_yaml(path)
    named = data.get("method")
    if not isinstance(named, str):
        raise ConfigError(f"{path}: missing the key 'method' (the method's registry name)")
    for key, expected in (("method", method), ("dataset", dataset)):
        if expected is not None and data.get(key) != expected:
            raise ConfigError(
                f"{path}: '{key}: {data.get(key)}' disagrees with the file's place, which configures "
                f"{key} {expected}; fix the key or move the file"
            )
    try:
        schema = method_schema(named)
    except ZslError as exc:  # an unknown method name, its schema unreadable: say which file names it
        if str(path) in str(exc):
            raise
        raise ConfigError(f"{path}: {exc}") from None
    cfg = validate(data, schema, str(path))
    cfg.setdefault("report", {})
    for role in ("T1", "GZSL"):
        run = cfg["report"].setdefault(role, next(iter(cfg["runs"])))
        if run not in cfg["runs"]:
            raise ConfigError(f"{path}: report.{role} names the run {run!r}, which 'runs' does not define")
    for run in cfg["runs"]:
        run_config(cfg, run, source=str(path))  # every run must validate, not only the first one used
    return cfg


def run_config(cfg: dict, run: str, source: str = "method config") -> dict:
    """The config of one named run: the base config with the run's overrides merged in."""
    if run not in cfg["runs"]:
        raise ConfigError(f"{source}: no run named {run!r} (runs: {', '.join(cfg['runs'])})")
    base = {k: v for k, v in cfg.items() if k not in ("runs", "report")}
    merged = _deep_merge(copy.deepcopy(base), cfg["runs"][run])
    merged = validate(merged, method_schema(cfg["method"]), f"{source} (run {run!r})")
    merged.pop("runs")
    merged["run"] = run
    merged["reports"] = [
        m
        for role, metrics in (("T1", ["T1"]), ("GZSL", ["U", "S", "H", "AUSUC"]))
        if cfg["report"][role] == run or merged.get("table_row")
        for m in metrics
    ]
    return merged


def _deep_merge(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def apply_overrides(cfg: dict, overrides: dict) -> dict:
    """A copy of a run config with dotted keys (``loss.lambda_div``) set to new values, re-validated."""
    out = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        node, keys = out, dotted.split(".")
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section of the {cfg['method']} config")
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(f"override {dotted!r}: no such key in the {cfg['method']} config")
        node[keys[-1]] = copy.deepcopy(value)
    run, reports = out.pop("run", None), out.pop("reports", None)
    out = validate(out, method_schema(out["method"]), f"{cfg['method']} config with overrides {overrides}")
    out.pop("runs", None)
    if run is not None:
        out.update(run=run, reports=reports)
    return out


def grid_points(grid: dict) -> list[dict]:
    """Every combination of a {dotted key: values} grid, in a fixed order ([{}] for no grid)."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def tuning_enabled(cfg: dict) -> bool:
    return bool(cfg["tuning"]["train_grid"] or cfg["tuning"]["eval_grid"])


def validation_config(cfg: dict, point: int) -> dict:
    """The config of validation training ``point`` (an index into the train grid)."""
    overrides = grid_points(cfg["tuning"]["train_grid"])[point]
    return apply_overrides(cfg, {**overrides, "split": "validation"})


def config_digest(cfg: Any) -> str:
    """A stable short hash of a config, used to refuse resuming from a foreign checkpoint."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
