"""Config validation: every shipped config is valid; a bad one gives one error naming the key."""

from pathlib import Path

import pytest
import yaml

from zslrepro.config import load_dataset_config, load_method_config, load_schema, run_config
from zslrepro.errors import ConfigError
from zslrepro.methods import list_methods

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "config/datasets").glob("*.yaml")) + sorted((REPO / ".test/config/datasets").glob("*.yaml")),
    ids=str,
)
def test_shipped_dataset_configs_validate(path):
    cfg = load_dataset_config(path)
    assert cfg["name"] == path.stem


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "config/methods").glob("*/*.yaml")) + sorted((REPO / ".test/config/methods").glob("*/*.yaml")),
    ids=str,
)
def test_shipped_method_configs_validate_and_name_a_store(path):
    """Every run of a shipped config reads a store its dataset defines, or trains from images."""
    cfg = load_method_config(path)
    assert cfg["method"] == path.parent.name and cfg["dataset"] == path.stem
    ds = load_dataset_config(REPO / "config/datasets" / f"{path.stem}.yaml")
    for run in cfg["runs"]:
        merged = run_config(cfg, run, source=str(path))
        if merged.get("feature_store"):
            assert merged["schedule"]["amp"] is False  # feature level: float32, as the official code
            if path.is_relative_to(REPO / "config"):
                assert merged["feature_store"] in ds["feature_stores"]
        else:
            assert merged["images"]["crop"] > 0


def test_every_registered_method_has_configs_for_every_dataset():
    for method in list_methods():
        for ds in ("SYNTH", "CUB", "SUN", "AWA2"):
            assert (REPO / "config/methods" / method / f"{ds}.yaml").is_file()


def test_method_names_come_from_the_registry_not_the_workflow_schema():
    """The workflow schema holds no list of methods: the catalog (read without importing a method)
    names the same methods the registry holds once they are imported."""
    from zslrepro.catalog import method_names

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert "enum" not in schema["properties"]["methods"]["items"]
    assert method_names() == list_methods()


def _write(tmp_path, text):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path):
    text = (REPO / "config/methods/msdn/CUB.yaml").read_text().replace("lambda_cal:", "lamda_cal:")
    with pytest.raises(ConfigError, match=r"m.yaml: invalid value at 'loss'.*'lamda_cal'"):
        load_method_config(_write(tmp_path, text))


def test_wrong_type_is_named(tmp_path):
    text = (REPO / "config/methods/msdn/CUB.yaml").read_text().replace("epochs: 30", "epochs: thirty")
    with pytest.raises(ConfigError, match=r"'schedule.epochs'.*'thirty' is not of type 'integer'"):
        load_method_config(_write(tmp_path, text))


def test_defaults_are_filled(tmp_path):
    cfg = load_method_config(REPO / ".test/config/methods/msdn/SYNTH.yaml")
    assert cfg["evaluation"]["gamma"] == 0.0 and cfg["loss"]["eps"] == 1e-8 and cfg["clamp_negative_att"] is False


def test_default_weights_are_refused(tmp_path):
    text = (REPO / "config/datasets/CUB.yaml").read_text().replace("IMAGENET1K_V1", "DEFAULT", 1)
    with pytest.raises(ConfigError, match="feature_stores.res101_448.weights"):
        load_dataset_config(_write(tmp_path, text))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_method_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_method_config(_write(tmp_path, "method: [msdn"))


def test_schemas_load():
    assert load_schema("dataset")["type"] == "object"


def test_named_runs_merge_and_report(tmp_path):
    text = (REPO / "config/methods/msdn/CUB.yaml").read_text() + (
        "runs:\n  gzsl: {}\n  zsl: {loss: {lambda_cal: 0.18}, seed: 6379}\nreport: {T1: zsl, GZSL: gzsl}\n"
    )
    cfg = load_method_config(_write(tmp_path, text))
    zsl, gzsl = run_config(cfg, "zsl"), run_config(cfg, "gzsl")
    assert zsl["loss"]["lambda_cal"] == 0.18 and zsl["loss"]["mu_distill"] == 0.001 and zsl["seed"] == 6379
    assert gzsl["loss"]["lambda_cal"] == 0.1 and "runs" not in gzsl
    assert zsl["reports"] == ["T1"] and gzsl["reports"] == ["U", "S", "H", "AUSUC"]
    with pytest.raises(ConfigError, match="no run named"):
        run_config(cfg, "other")


def test_a_bad_override_is_named_with_its_run(tmp_path):
    text = (REPO / "config/methods/msdn/CUB.yaml").read_text() + "runs:\n  zsl: {loss: {lambda_cal: -1}}\n"
    with pytest.raises(ConfigError, match=r"run 'zsl'.*'loss.lambda_cal'"):
        load_method_config(_write(tmp_path, text))


def test_report_must_name_a_run(tmp_path):
    text = (REPO / "config/methods/msdn/CUB.yaml").read_text() + "report: {T1: zsl}\n"
    with pytest.raises(ConfigError, match="report.T1 names the run 'zsl'"):
        load_method_config(_write(tmp_path, text))


def test_overrides_and_validation_points():
    from zslrepro.config import apply_overrides, grid_points, validation_config
    from zslrepro.errors import ConfigError

    assert grid_points({}) == [{}]
    assert grid_points({"b": [1, 2], "a": [3]}) == [{"a": 3, "b": 1}, {"a": 3, "b": 2}]
    cfg = run_config(load_method_config(REPO / "config/methods/drmn/CUB.yaml"), "main")
    point = validation_config(cfg, 3)
    assert point["split"] == "validation" and point["run"] == "main"
    assert (point["loss"]["lambda_cal"], point["loss"]["lambda_gc"]) == (0.3, 1.0)
    assert apply_overrides(cfg, {"model.global_branch.beta": 0.5})["model"]["global_branch"]["beta"] == 0.5
    with pytest.raises(ConfigError, match="no such key"):
        apply_overrides(cfg, {"model.betta": 0.5})
    with pytest.raises(ConfigError, match="beta"):
        apply_overrides(cfg, {"model.global_branch.beta": 2.0})  # schema: beta in [0, 1]
