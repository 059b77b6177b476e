"""params.yaml is read strictly (issue 16, part 3): every stage has a typed section, and a
missing section, an unknown key or a wrong type is an error naming the file, the key path,
what was found and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recsys import candidates
from recsys.config import SECTIONS, ModelsConfig, Params, ServingConfig, load_params
from recsys.errors import ConfigError

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = REPO_PARAMS.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_the_repository_file_has_every_section_typed() -> None:
    params = load_params(REPO_PARAMS)
    assert set(SECTIONS) == {
        "data", "validation", "preprocess", "models", "gate", "serving", "tuning"
    }  # fmt: skip
    assert isinstance(params.serving, ServingConfig)
    assert params.serving.retriever in params.models.candidates
    assert params.serving.rerank_top >= 1 and params.gate.max_two_stage_loss is not None


@pytest.mark.parametrize(
    ("old", "new", "message", "allowed"),
    [
        ("  workers: 1", "  workers: 1\n  worker: 2", "unknown key(s) ['worker'] in 'serving'",
         "valid keys are"),
        ("  workers: 1", "  workers: two", "'serving.workers' must be an integer, got 'two'", None),
        ("    nprobe: 32", "    nprobe: 32.5",
         "'serving.retrieval.nprobe' must be an integer, got 32.5", None),
        ("    kind: auto ", "    kind: lsh ", "'serving.retrieval.kind' = 'lsh' is not one of",
         None),
        ("  min_gain: 0.002", "  min_gain: much", "'gate.min_gain' must be a number, got 'much'",
         None),
        ("serving:", "servings:", "unknown key(s) ['servings'] in the top level", "'serving'"),
    ],
)  # fmt: skip
def test_a_bad_file_names_file_key_found_and_allowed(
    tmp_path: Path, old: str, new: str, message: str, allowed: str | None
) -> None:
    path = edited(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    err = info.value
    assert message in err.what
    assert err.where == str(path)
    if allowed is not None:
        assert err.fix is not None and allowed in err.fix


def test_a_missing_section_is_named(tmp_path: Path) -> None:
    raw = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    del raw["serving"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"missing section\(s\) \['serving'\]") as info:
        load_params(path)
    assert info.value.where == str(path) and "data" in info.value.what


def test_a_model_setting_is_checked_by_its_own_config_class(tmp_path: Path) -> None:
    params = load_params(edited(tmp_path, "    l2: 500.0", "    l3: 500.0"))
    with pytest.raises(ConfigError, match=r"models\.ease: unknown key\(s\) \['l3'\]") as info:
        candidates.build_candidate("ease", params.models)
    assert info.value.fix is not None and "l2" in info.value.fix


def test_partial_files_take_defaults_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  ease: {l2: 5.0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="missing section"):
        load_params(path)
    params = load_params(path, partial=True)
    assert params.models.settings("ease") == {"l2": 5.0} and params.serving == Params().serving


def test_the_retriever_must_be_a_candidate() -> None:
    params = Params()
    assert candidates.check_candidates(params.models, params.serving) == params.models.candidates
    only_ease = ModelsConfig(families={"ease": {}})
    with pytest.raises(ConfigError, match=r"serving\.retriever .twotower. is not among") as info:
        candidates.check_candidates(only_ease, params.serving)
    assert info.value.fix is not None and "bpr" in info.value.fix


def test_the_container_section_is_optional_and_checked(tmp_path: Path) -> None:
    """Issue 18: files written before the container section load with its defaults (off);
    a wrong key in it is named like any other."""
    params = load_params(REPO_PARAMS)
    assert params.container.enabled is False
    assert "python3.11" in params.container.base.packages
    raw = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    del raw["container"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_params(path).container == Params().container
    raw["container"] = {"enabled": True, "base": {"release": "bookworm", "pakages": ["x"]}}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['pakages'\] in 'container.base'"):
        load_params(path)
