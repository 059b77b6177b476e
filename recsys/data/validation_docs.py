"""Validation reports readable without network: our own static page and an offline GX site.

GX Data Docs load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs, and
their index page is drawn by JavaScript from those libraries; GX ships only its own CSS, fonts
and images (``great_expectations/render/view/static``, already copied into the site). Offline,
a GX page therefore stalls on the CDN requests and its index is blank. So a written report has:

* ``data_docs/report.html``: ``render_html(report)``, one self-contained page (inline CSS, no
  script, no external URL): the verdict, every expectation and the offending rows it sampled;
* the rest of ``data_docs/``: the GX site after ``localize_site``: CDN ``<link>`` and
  ``<script>`` tags removed, remote logo images pointed at the bundled copies, and a plain list
  of the site's pages added to the index, so that every page opens and links work without
  JavaScript (the pages keep their content but lose the libraries' layout and charts).

Serve ``reports/validation/`` over http with ``recsys data docs`` (see ``recsys/cli.py``).
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from recsys.data import io

if TYPE_CHECKING:  # validation_report imports this module to write the page
    from recsys.data.validation_report import ExpectationOutcome, ValidationReport

REPORT_PAGE: Final = "report.html"
"""The static report's file name, in ``data_docs/`` beside GX's ``index.html``."""

_REMOTE_TAG: Final = re.compile(
    r"""<(?:link|script)\b[^>]*\b(?:href|src)\s*=\s*["']https?://[^>]*>(?:\s*</script>)?""",
    re.IGNORECASE,
)
_REMOTE_IMG: Final = re.compile(
    r"""(<img\b[^>]*\bsrc\s*=\s*["'])https?://[^"']*?/([\w.-]+?)(?:\?[^"']*)?(["'])""",
    re.IGNORECASE,
)
_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.pass { color: #1a7f37; } .fail { color: #c62828; font-weight: bold; } .warn { color: #b26a00; }
code { font-size: 0.95em; }
"""


def render_html(report: ValidationReport) -> str:
    """One self-contained HTML page: the verdict, every expectation, the sampled bad rows."""
    verdict = "passed" if report.success else "FAILED"
    rows = "".join(_outcome_row(o) for o in report.outcomes)
    details = "".join(_samples_section(o) for o in (*report.failures, *report.warnings))
    counts = ", ".join(f"{_e(t)}: {n}" for t, n in report.row_counts.items())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Validation of {_e(report.dataset)}: {verdict}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>Validation of <code>{_e(report.dataset)}</code>: "
        f"<span class='{'pass' if report.success else 'fail'}'>{verdict}</span></h1>\n"
        f"<p>{len(report.failures)} failed, {len(report.warnings)} warning(s) of "
        f"{len(report.outcomes)} expectations; rows: {counts}. Run at {_e(report.created_at)} "
        f"with Great Expectations {_e(report.gx_version)}. "
        "Row N is the N-th row of its table as read (1-based); for the per-user and per-item "
        "count tables, the N-th id in ascending order. "
        "<a href='index.html'>GX Data Docs</a> &middot; "
        "<a href='../report.json'>report.json</a></p>\n"
        "<h2>Expectations</h2>\n<table><tr><th>result</th><th>table</th><th>check</th>"
        "<th>expectation</th><th>columns</th><th>unexpected</th><th>observed</th>"
        f"<th>description</th></tr>\n{rows}</table>\n{details}</body></html>\n"
    )


def localize_site(site: Path) -> None:
    """Rewrite every page of the GX site in ``site`` to open without network (see above)."""
    pages = sorted(p for p in Path(site).rglob("*.html") if p.is_file())
    for page in pages:
        depth = len(page.relative_to(site).parts) - 1
        text = _REMOTE_TAG.sub("", page.read_text(encoding="utf-8"))
        text = _REMOTE_IMG.sub(functools.partial(_local_image, site=site, depth=depth), text)
        if page == site / "index.html":
            text = _with_page_list(text, [p.relative_to(site) for p in pages if p != page])
        io.write_text(text, page)


def _local_image(match: re.Match[str], site: Path, depth: int) -> str:
    name = match.group(2)
    local = site / "static" / "images" / name
    target = "../" * depth + f"static/images/{name}" if local.is_file() else ""
    return f"{match.group(1)}{target}{match.group(3)}"


def _with_page_list(text: str, pages: list[Path]) -> str:
    names = [_e(PurePosixPath(p).as_posix()) for p in pages]
    items = "".join(f"<li><a href='{n}'>{n}</a></li>" for n in names)
    block = (
        f"<div style='margin:1em'><p><a href='{REPORT_PAGE}'>Summary report</a> (every "
        "expectation and the rows that failed it)</p><h2>Pages</h2><p>(a plain list, for "
        "reading without network; the table below needs JavaScript from a CDN)</p>"
        f"<ul>{items}</ul></div>"
    )
    body = re.search(r"<body\b[^>]*>", text, re.IGNORECASE)
    if body is None:
        return block + text
    return text[: body.end()] + block + text[body.end() :]


def _outcome_row(o: ExpectationOutcome) -> str:
    if o.success:
        result = "<span class='pass'>ok</span>"
    elif o.severity == "warning":
        result = "<span class='warn'>warning</span>"
    else:
        result = "<span class='fail'>FAILED</span>"
    unexpected = ""
    if o.unexpected_count is not None:
        pct = f" ({o.unexpected_percent:.3g}%)" if o.unexpected_percent is not None else ""
        unexpected = f"{o.unexpected_count}{pct}"
    observed = o.observed.get("observed_value", o.observed.get("exception"))
    observed = "" if observed is None else clip(str(observed), 200)
    cells = (o.table, o.check, o.expectation, ", ".join(o.columns), unexpected)
    return (
        f"<tr><td>{result}</td>"
        + "".join(f"<td>{_e(c)}</td>" for c in cells)
        + f"<td>{_e(observed)}</td><td>{_e(o.description)}</td></tr>\n"
    )


def _samples_section(o: ExpectationOutcome) -> str:
    head = f"<h3>{_e(o.table)}: {_e(o.check)} <small>({_e(o.expectation)})</small></h3>\n"
    if not o.sample_rows:
        return head + f"<p>{_e(o.description)}; no row sample.</p>\n"
    columns = list(dict.fromkeys(k for r in o.sample_rows for k in r))
    header = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(r.get(c, ''))}</td>" for c in columns) + "</tr>\n"
        for r in o.sample_rows
    )
    return head + f"<p>{_e(o.description)}</p>\n<table><tr>{header}</tr>\n{body}</table>\n"


def clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, ``...`` marking a cut."""
    return text if len(text) <= n else text[: n - 3] + "..."


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
