"""PNG charts with labelled axes for asset metadata, shown on the asset page without a click.

Dagster 1.13's asset page renders a markdown metadata value inline only when it is shorter than
1 000 characters; longer ones (any embedded image) hide behind "[Show Markdown]". So the PNG is
written where the webserver already serves files from, the instance's local compute-log
directory (route ``/logs/<path>/<extension>``), and the markdown is a short image link to it.
Without a local compute-log manager (an ephemeral test instance, a cloud one) the PNG is
embedded as a data URI instead (it then shows after "[Show Markdown]").
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOTS_NAMESPACE = "recsys-plots"
"""Top folder of the charts inside the compute-log directory."""
SIZE_IN, DPI = (6.4, 3.2), 100


def _figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: render to memory only
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(SIZE_IN[0], SIZE_IN[1]), dpi=DPI, squeeze=False)
    return fig, list(axes[0])


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def line_chart(curves: Mapping[str, Sequence[float | None]], title: str) -> bytes:
    """One panel per curve (each on its own scale: a loss and a ranking metric differ by orders
    of magnitude), x = epoch (1-based), y = the curve's name."""
    kept = {
        name: [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in vals]
        for name, vals in curves.items()
        if vals
    }
    fig, axes = _figure(max(len(kept), 1))
    for ax, (name, values) in zip(axes, kept.items(), strict=False):
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def bar_chart(
    values: Mapping[str, tuple[float, float, float]], title: str, *, ylabel: str = "value"
) -> bytes:
    """Bars of ``name -> (value, ci_low, ci_high)`` with CI whiskers, on a 0-based y axis;
    x = candidate."""
    fig, (ax,) = _figure()
    names = list(values)
    heights = [values[n][0] for n in names]
    errors = [
        [max(v - lo, 0.0) for v, lo, _ in values.values()],
        [max(hi - v, 0.0) for v, _, hi in values.values()],
    ]
    ax.bar(names, heights, yerr=errors, capsize=4, color="#4c78a8")
    for i, h in enumerate(heights):
        ax.annotate(f"{h:.4f}", (i, h), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("candidate")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def image_metadata(
    context: dg.AssetExecutionContext, png: bytes, name: str, alt: str
) -> dg.MarkdownMetadataValue:
    """The chart as markdown the asset page shows inline (see the module docstring)."""
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

    manager = context.instance.compute_log_manager
    if isinstance(manager, LocalComputeLogManager):
        log_key = [PLOTS_NAMESPACE, context.run.run_id, name]
        path = Path(manager.get_captured_local_path(log_key, "png"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return dg.MetadataValue.md(f"![{alt}](/logs/{'/'.join(log_key)}/png)")
    return dg.MetadataValue.md(markdown_image(png, alt))
