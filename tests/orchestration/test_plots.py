"""Charts in asset metadata are PNGs with labelled axes, and the asset page shows them without
a click: a short markdown image link that the webserver itself serves (issue #16)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from PIL import Image

from orchestration.defs import plots


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the chart functions draw (their PNG bytes are checked separately)."""
    drawn: list[Any] = []
    real = plots._png

    def keep(fig: Any) -> bytes:
        drawn.append(fig)
        return real(fig)

    monkeypatch.setattr(plots, "_png", keep)
    return drawn


def test_line_chart_is_a_png_with_labelled_axes(figures: list[Any]) -> None:
    png = plots.line_chart({"loss": [0.9, 0.5, 0.4], "val_ndcg@10": [0.1, None, 0.3]}, "ncf")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (640, 320)
    axes = figures[0].axes
    assert [(a.get_xlabel(), a.get_ylabel()) for a in axes] == [
        ("epoch", "loss"),
        ("epoch", "val_ndcg@10"),
    ]
    assert list(axes[0].lines[0].get_xdata()) == [1, 2, 3]


def test_bar_chart_has_labelled_axes_and_ci_whiskers(figures: list[Any]) -> None:
    png = plots.bar_chart(
        {"ease": (0.3, 0.25, 0.35), "mostpop": (0.1, 0.08, 0.12)}, "t", ylabel="ndcg@10"
    )
    assert png.startswith(b"\x89PNG")
    (ax,) = figures[0].axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("candidate", "ndcg@10")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ease", "mostpop"]
    assert ax.get_ylim()[0] == 0


def test_the_asset_page_link_is_short_and_served(tmp_path: Path) -> None:
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_webserver.app import create_app_from_workspace_process_context
    from starlette.testclient import TestClient

    png = plots.bar_chart({"a": (0.5, 0.4, 0.6)}, "t", ylabel="v")

    @dg.asset
    def charted(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        return dg.MaterializeResult(
            metadata={"chart": plots.image_metadata(context, png, "chart", "a chart")}
        )

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([charted], instance=instance)
        md = result.asset_materializations_for_node("charted")[0].metadata["chart"].value
        # The UI renders markdown inline only below 1 000 characters (else "[Show Markdown]").
        assert len(md) < 1000
        url = md.split("](", 1)[1].rstrip(")")
        assert url == f"/logs/{plots.PLOTS_NAMESPACE}/{result.run_id}/chart/png"
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
            client = TestClient(create_app_from_workspace_process_context(context))
            response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == png


def test_without_a_local_log_directory_the_png_is_embedded() -> None:
    png = plots.bar_chart({"a": (0.5, 0.4, 0.6)}, "t")

    @dg.asset
    def charted(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        return dg.MaterializeResult(
            metadata={"chart": plots.image_metadata(context, png, "chart", "a chart")}
        )

    result = dg.materialize([charted], instance=dg.DagsterInstance.ephemeral())
    md = result.asset_materializations_for_node("charted")[0].metadata["chart"].value
    assert md == plots.markdown_image(png, "a chart")
