"""Issue 18: the ``bento_image`` asset with ``container.enabled`` on runs the CLI steps in
order (containerize, manifests, then push when a registry is configured) and fails at the
first that fails, naming it. The commands are recorded at the subprocess boundary here; the
steps themselves are tested on a real image in tests/serving/test_container.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from orchestration.defs.resources import CommandResult, DvcProject
from orchestration.defs.serving_assets import BENTO_DIR, HANDOFF_FILE, IMAGE_FILE, bento_image
from tests.conftest import REPO

BENTO = "recsys:abc123"
CALLS: list[list[str]] = []
FAILING: set[str] = set()


class RecordingProject(DvcProject):
    """Runs nothing: records each command and answers as the CLI would."""

    def run(
        self, args: list[str], *, timeout: float = 0, log: Callable[[str], None] | None = None
    ) -> CommandResult:
        CALLS.append(list(args))
        step = args[2]
        if step in FAILING:
            return CommandResult(2, "", f"error: {step} went wrong")
        if step == "containerize":
            image = {"name": "localhost/recsys:abc123", "image_id": "f00", "size_bytes": 3e9}
            image |= {"seconds": 80.0, "labels": {"org.recsys.bento": BENTO}}
            base = {"name": "localhost/recsys-base:bookworm-py3.11", "reused": True}
            out = self.path / args[args.index("--out") + 1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"bento": BENTO, "image": image, "base": base}))
        return CommandResult(0, f"{step} done", "")


def project(tmp_path: Path, **container: Any) -> RecordingProject:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["container"] = {**params["container"], "enabled": True, **container}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / BENTO_DIR).mkdir(parents=True)
    (tmp_path / BENTO_DIR / HANDOFF_FILE).write_text(json.dumps({"bento": BENTO}))
    CALLS.clear()
    FAILING.clear()
    return RecordingProject(root=str(tmp_path))


def run(dvc: DvcProject) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [bento_image],
        resources={"dvc": dvc},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_enabled_it_builds_then_writes_the_manifests(tmp_path: Path) -> None:
    result = run(project(tmp_path))
    assert result.success
    assert [call[1:3] for call in CALLS] == [["bento", "containerize"], ["bento", "manifests"]]
    assert all(call[call.index("--bento") + 1] == BENTO for call in CALLS)
    assert (tmp_path / IMAGE_FILE).is_file()
    (event,) = result.get_asset_materialization_events()
    meta = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
    assert meta["image"].value == "localhost/recsys:abc123"
    assert str(meta["kubernetes_manifests"].value).endswith("abc123.kubernetes.yaml")


def test_with_a_registry_it_also_pushes(tmp_path: Path) -> None:
    result = run(project(tmp_path, registry="registry.shop.example/ml"))
    assert result.success
    assert [call[2] for call in CALLS] == ["containerize", "manifests", "push"]


@pytest.mark.parametrize("step", ["containerize", "manifests"])
def test_a_failing_step_fails_the_asset_and_stops_there(tmp_path: Path, step: str) -> None:
    dvc = project(tmp_path, registry="registry.shop.example/ml")
    FAILING.add(step)
    result = run(dvc)
    assert not result.success
    assert CALLS[-1][2] == step, "a later step ran after a failure"
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and f"recsys bento {step} failed" in failure.message
    assert f"{step} went wrong" in failure.message
