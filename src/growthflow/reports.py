"""Self-contained HTML reports: one page, its charts' JavaScript inlined, nothing fetched.

A report is a Jinja template (``templates/``) filled with figures a pipeline computed, and
Bokeh figures embedded with BokehJS inlined (~1.3 MB), so the file opens offline and can be
sent on. The formatting rules live here: thousands separators, two decimals for money, and
"—" for a figure that does not exist (a CPO without conversions, a ROAS without cost), never
``inf`` or ``NaN``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from growthflow.files import atomic_write

DASH = "—"
PALETTE = (  # Okabe-Ito: told apart with colour-blindness too
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def money(value) -> str:
    return f"{value:,.2f}" if _finite(value) else DASH


def count(value) -> str:
    """Whole numbers as they are, attributed (fractional) conversions with one decimal."""
    if not _finite(value):
        return DASH
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def ratio(value) -> str:
    return f"{value:,.2f}" if _finite(value) else DASH


def share(value) -> str:
    return f"{value:.1%}" if _finite(value) else DASH


def divide(numerator, denominator) -> float | None:
    """numerator / denominator, or None when it does not exist (no denominator)."""
    if not _finite(numerator) or not _finite(denominator) or denominator == 0:
        return None
    return numerator / denominator


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(template: str, figures: dict, **context) -> str:
    """The page: ``template`` with ``context``, and ``figures`` (name -> Bokeh figure)
    embedded as ``charts[name]`` with BokehJS inlined."""
    from bokeh.embed import components
    from bokeh.resources import Resources
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("growthflow", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, count=count, ratio=ratio, share=share)
    script, divs = components(figures) if figures else ("", {})
    return env.get_template(template).render(
        bokeh_js=Resources(mode="inline", components=["bokeh"]).render_js(),  # no widgets
        bokeh_script=script,
        charts=divs,
        **context,
    )


def write(path: Path, html: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        out.write(html)
