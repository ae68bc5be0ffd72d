"""The HTML reports: figures in the page against the database, and the page in a real browser
(Debian's headless Chromium, driven by Playwright; skipped when either is missing)."""

from __future__ import annotations

import math
import re
import shutil
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from growthflow.attribution import schema
from growthflow.attribution.html_report import write_attribution_report
from growthflow.commissions.html_report import write_commissions_report
from growthflow.errors import ConfigError

from conftest import conversion, session

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The tables (by id: rows of (text, data-value) cells) and the headline figures."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.figures: dict[str, str] = {}
        self._table = self._row = self._cell = self._figure = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", "?"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", attrs.get("data-value")]
        elif "data-figure" in attrs:
            self._figure = attrs["data-figure"]
            self.figures[self._figure] = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None:
            if self._row and self._table is not None:
                self._table.append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append((self._cell[0].strip(), self._cell[1]))
            self._cell = None
        elif tag == "div":
            self._figure = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data
        if self._figure is not None:
            self.figures[self._figure] += data.strip()


def number(text: str) -> float:
    return float(text.replace(",", ""))


def load_two_channels(db) -> None:
    """Paid (with cost) and Free (cost rows without cost), a channel with cost and no
    attribution (Display), a bad conversion row."""
    sessions = [
        session("s1", "u1", "2023-09-01", "10:00:00", "Paid"),
        session("s2", "u1", "2023-09-02", "10:00:00", "Free"),
        session("s3", "u2", "2023-09-02", "11:00:00", "Paid"),
        session("s4", "u3", "2023-09-03", "09:00:00", "Display"),
        session("s5", "u4", "2023-09-03", "09:30:00", "Free"),
        session("s6", "u4", "2023-09-03", "09:40:00", "Paid"),
    ]
    conversions = [
        conversion("c1", "u1", "2023-09-02", "12:00:00", 120.0),
        conversion("c2", "u2", "2023-09-03", "12:00:00", 80.5),
        conversion("c3", "u4", "2023-09-03", "12:00:00", 1000.25),
        conversion("c4", "u5", "2023-09-03", "12:00:00", 10.0),  # no sessions
    ]
    costs = [("s1", 10.25), ("s2", None), ("s3", 20.5), ("s4", 7.0), ("s6", 1234.5)]
    db.load(sessions, conversions, costs)


def test_attribution_report_figures_equal_the_database(db, tmp_path):
    load_two_channels(db)
    db.run("2023-09-01", "2023-09-03", model="linear")
    before = db.attribution()
    path = tmp_path / "report" / "attribution.html"
    report = write_attribution_report(
        db.engine, path, compare=["ihc", "linear", "last-touch", "markov"]
    )
    html = path.read_text(encoding="utf-8")
    page = Page(html)
    assert db.attribution() == before  # the comparison left the stored attribution alone
    assert db.rows("SELECT COUNT(*) FROM gf_journeys")[0][0] == 0  # no staging left
    assert str(report.start) == "2023-09-01" and str(report.end) == "2023-09-03"

    stored = {
        channel: (cost or 0.0, ihc or 0.0, revenue or 0.0)
        for channel, cost, ihc, revenue in db.rows(
            "SELECT channel_name, SUM(cost), SUM(ihc), SUM(ihc_revenue) FROM channel_reporting "
            "GROUP BY channel_name"
        )
    }
    rows = page.tables["channel-table"][1:]
    assert {r[0][0] for r in rows} == set(stored)
    for (name, _), cost, conv, revenue, cpo, roas in rows:
        s_cost, s_conv, s_revenue = stored[name]
        assert float(cost[1]) == pytest.approx(s_cost)
        assert number(cost[0]) == pytest.approx(round(s_cost, 2))
        assert float(conv[1]) == pytest.approx(s_conv)
        assert float(revenue[1]) == pytest.approx(s_revenue)
        if s_conv:
            assert float(cpo[1]) == pytest.approx(s_cost / s_conv)
        else:
            assert cpo == ("—", "")
        if s_cost:
            assert float(roas[1]) == pytest.approx(s_revenue / s_cost)
        else:
            assert roas == ("—", "")
    assert page.tables["channel-table"][1][0][0] in stored  # sorted rows, not the header
    assert not re.search(
        r"\b(inf|nan|NaN|None)\b", re.sub(r"<script.*?</script>", "", html, flags=re.S)
    )

    total_cost = math.fsum(v[0] for v in stored.values())
    total_revenue = math.fsum(v[2] for v in stored.values())
    total_conv = math.fsum(v[1] for v in stored.values())
    assert page.figures["conversions"] == "4"  # every usable conversion dated in the range
    assert number(page.figures["revenue"]) == pytest.approx(1210.75)
    assert number(page.figures["cost"]) == pytest.approx(round(total_cost, 2))
    assert number(page.figures["attributed_revenue"]) == pytest.approx(round(total_revenue, 2))
    assert number(page.figures["roas"]) == pytest.approx(round(total_revenue / total_cost, 2))
    assert number(page.figures["cpo"]) == pytest.approx(round(total_cost / total_conv, 2))

    # Model comparison: every model shares each of the 3 journeys once.
    header, *compared = page.tables["comparison-table"]
    assert [h[0] for h in header] == ["Channel", "ihc", "linear", "last-touch", "markov"]
    for k in range(1, 5):
        assert sum(float(r[k][1]) for r in compared) == pytest.approx(3.0)
    linear = {r[0][0]: float(r[2][1]) for r in compared}
    assert linear == pytest.approx({name: v[1] for name, v in stored.items() if v[1]})
    last_touch = {r[0][0]: float(r[3][1]) for r in compared}
    assert last_touch == {"Free": 1.0, "Paid": 2.0}  # s2 (Free), s3 and s6 (Paid) close

    quality = {r[0][0]: r[1][1] for r in page.tables["quality-table"][1:]}
    assert quality["conversions without a journey (range)"] == "1"
    paths = {r[0][0]: r[1][0] for r in page.tables["paths-table"][1:]}
    assert paths == {"Paid > Free": "1", "Paid": "1", "Free > Paid": "1"}


def test_report_range_and_empty_report(db, tmp_path):
    load_two_channels(db)
    schema.init_db(db.engine)
    with pytest.raises(ConfigError, match="channel_reporting is empty"):
        write_attribution_report(db.engine, tmp_path / "a.html")
    db.run("2023-09-01", "2023-09-03", model="ihc")
    report = write_attribution_report(
        db.engine, tmp_path / "a.html", start=__import__("datetime").date(2023, 9, 3)
    )
    assert [c["channel"] for c in report.channels] == sorted(
        {c["channel"] for c in report.channels},
        key=lambda n: -next(r["revenue"] for r in report.channels if r["channel"] == n),
    )
    assert str(report.start) == "2023-09-03"
    cost = db.rows("SELECT SUM(cost) FROM channel_reporting WHERE date = '2023-09-03'")[0][0]
    assert report.head["cost"] == pytest.approx(cost)
    later = __import__("datetime").date(2030, 1, 1)
    empty = write_attribution_report(
        db.engine, tmp_path / "empty.html", start=later, end=later, compare=["markov"]
    )
    html = (tmp_path / "empty.html").read_text(encoding="utf-8")
    assert empty.channels == [] and empty.comparison is None
    assert "No sessions dated in this range." in html and 'class="chart"><div' not in html
    assert Page(html).figures["roas"] == "—" and Page(html).figures["cpo"] == "—"


def test_report_cli_writes_the_page(db, tmp_path):
    from test_cli import cli

    load_two_channels(db)
    db.run("2023-09-01", "2023-09-03")
    out = tmp_path / "out" / "attribution.html"
    result = cli(
        "attribution", "report", *db.cli_args(), "--html", str(out), "--compare", "ihc,linear"
    )
    assert result.returncode == 0, result.stderr
    assert "wrote the HTML report" in result.stdout and out.stat().st_size < 3_000_000
    html = out.read_text(encoding="utf-8")
    assert "<script" in html and not re.search(r"<(script|link|img)[^>]*(src|href)=", html)
    bad = cli("attribution", "report", *db.cli_args(), "--html", str(out), "--compare", "magic")
    assert bad.returncode == 2 and "unknown model 'magic'" in bad.stderr


# --- in a real browser -----------------------------------------------------------------------
RENDERED = """(within) => Array.from(document.querySelectorAll(within + ' .chart'))
  .filter(chart => chart.offsetParent !== null)  // shown (not in a hidden scope)
  .map(chart => {
    const div = chart.firstElementChild;
    let canvases = 0;
    const walk = (root) => root.querySelectorAll('*').forEach(el => {
        if (el.tagName === 'CANVAS' && el.width > 0 && el.height > 0) canvases += 1;
        if (el.shadowRoot) walk(el.shadowRoot);
    });
    walk(div);
    const box = div.firstElementChild ? div.firstElementChild.getBoundingClientRect() : null;
    return {canvases: canvases, width: box ? box.width : 0, height: box ? box.height : 0};
})"""


def open_in_chromium(
    path: Path, tmp_path: Path, width: int, scopes: tuple[str, ...] = ()
) -> tuple[list, list, int]:
    """Console errors and requests, and how each chart rendered (after clicking each of
    ``scopes``, the commissions report's switcher, for the charts of that scope)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("Debian's chromium package is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            problems = []
            page.on(
                "console",
                lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(  # offline: nothing but the file itself
                "request",
                lambda r: (
                    None
                    if r.url.startswith(("file:", "data:", "blob:"))
                    else problems.append(f"fetched {r.url}")
                ),
            )
            page.goto(path.as_uri())
            page.wait_for_function("() => window.Bokeh !== undefined")
            page.wait_for_timeout(500)
            charts = page.evaluate(RENDERED, "body")
            for scope in scopes:
                page.click(f'label[for="scope-{scope}"]')
                page.wait_for_timeout(300)
                shown = page.evaluate(RENDERED, f"#panel-{scope}")
                charts += [{**c, "scope": scope} for c in shown]
            page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            page.emulate_media(media="print")
            page.pdf(path=str(tmp_path / "report.pdf"))
        finally:
            browser.close()
    return problems, charts, overflow


@pytest.mark.parametrize("width", [1280, 420])
def test_attribution_report_renders_in_chromium(tmp_path, width):
    from growthflow.attribution.demo import generate_demo_data
    from growthflow.attribution.pipeline import RunConfig, run_attribution
    from growthflow.database import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'demo.db'}", create=True)
    generate_demo_data(engine, scale=0.02, seed=3)
    run_attribution(engine, RunConfig.build(start="2023-09-01", end="2023-09-10"))
    path = tmp_path / "attribution.html"
    write_attribution_report(engine, path, compare=["ihc", "linear", "markov"])
    problems, charts, overflow = open_in_chromium(path, tmp_path, width)
    assert problems == []
    assert len(charts) == 6
    assert all(c["canvases"] > 0 and c["width"] > 0 and c["height"] > 0 for c in charts), charts
    assert all(c["width"] <= width for c in charts)  # charts fit a narrow window
    assert (tmp_path / f"report-{width}.png").stat().st_size > 10_000
    assert (tmp_path / "report.pdf").stat().st_size > 10_000


# --- the commissions report ------------------------------------------------------------------
def commissions_db(db, tmp_path):
    import time

    from growthflow.commissions.config import load_config
    from growthflow.commissions.demo import write_demo_landing
    from growthflow.commissions.pipeline import run_commissions

    landing = tmp_path / "landing"
    write_demo_landing(
        landing, days=9, rows_per_file=400, start=__import__("datetime").date(2024, 3, 27)
    )
    run_commissions(db.engine, load_config(), landing, tmp_path / "archive", now=time.time() + 3600)


def test_commissions_report_figures_equal_the_database(db, tmp_path):
    commissions_db(db, tmp_path)
    path = tmp_path / "commissions.html"
    report = write_commissions_report(db.engine, path, month="2024-03")
    page = Page(path.read_text(encoding="utf-8"))
    assert (str(report.first), str(report.last)) == ("2024-03-01", "2024-03-31")
    for scope in ("events", "scrapers", "combined"):
        stored = {
            source: (deal, money_(raw), clicks, money_(commission))
            for source, deal, raw, clicks, commission in db.rows(
                "SELECT marketing_source, MAX(deal), SUM(raw_earnings), SUM(clicks), "
                "SUM(commission) FROM commission_source_daily WHERE scope = :s "
                "AND date BETWEEN '2024-03-01' AND '2024-03-31' GROUP BY marketing_source",
                s=scope,
            )
        }
        rows = page.tables[f"sources-{scope}"][1:]
        assert len(rows) == len(stored) > 0
        for (source, _), (deal, _), _days, raw, clicks, commission in rows:
            s_deal, s_raw, s_clicks, s_commission = stored[source]
            assert deal == s_deal
            assert Decimal(raw[1]) == s_raw and Decimal(commission[1]) == s_commission
            assert int(clicks[1]) == s_clicks
        total = sum((v[3] for v in stored.values()), Decimal(0))
        assert number(page.figures[f"commission-{scope}"]) == pytest.approx(float(total))
        daily = report.scopes[scope]["daily"]  # the chart: top sources and the others, per day
        assert sum(sum(day.values()) for day in daily.values()) == total
        operators = {
            o: money_(c)
            for o, c in db.rows(
                "SELECT operator, commission FROM commission_operator_monthly "
                "WHERE scope = :s AND month = '2024-03'",
                s=scope,
            )
        }
        shown = {r[0][0]: Decimal(r[2][1]) for r in page.tables[f"operators-{scope}"][1:]}
        assert shown == operators
    assert page.tables["quarantine-table"][1:] == [[("none", None)]]  # none in March here
    april = tmp_path / "april.html"
    report = write_commissions_report(db.engine, april, month="2024-04")
    assert report.scopes["events"]["sources"] and str(report.first) == "2024-04-01"
    quarantined = db.rows(
        "SELECT f.name, q.reason, COUNT(*) FROM commission_quarantine q JOIN commission_files f "
        "ON f.file_id = q.file_id WHERE f.day IS NULL OR f.day >= '2024-04-01' GROUP BY 1, 2"
    )
    rows = Page(april.read_text(encoding="utf-8")).tables["quarantine-table"][1:]
    assert [(r[0][0], r[1][0], int(r[2][1])) for r in rows] == quarantined
    assert len(quarantined) > 0
    with pytest.raises(ConfigError, match="YYYY-MM"):
        write_commissions_report(db.engine, tmp_path / "x.html", month="March")


def money_(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_commissions_report_renders_in_chromium(tmp_path, db):
    if db.dialect != "sqlite":
        pytest.skip("the page does not depend on the database")
    commissions_db(db, tmp_path)
    path = tmp_path / "commissions.html"
    write_commissions_report(db.engine, path)
    problems, charts, _ = open_in_chromium(
        path, tmp_path, 1000, scopes=("scrapers", "combined", "events")
    )
    assert problems == []
    assert len(charts) == 3 + 6  # events' two and the loads' on opening; two per scope
    assert all(c["canvases"] > 0 and c["width"] > 0 and c["height"] > 0 for c in charts), charts


def test_report_journeys_in_several_batches_add_up_to_one(db, tmp_path, monkeypatch):
    """The report reads the range's journeys a batch at a time: the figures do not depend on
    the batch size."""
    from growthflow.attribution import attribute

    load_two_channels(db)
    db.run("2023-09-01", "2023-09-03", model="linear")
    models = ["ihc", "linear", "markov"]
    whole = write_attribution_report(db.engine, tmp_path / "a.html", compare=models)
    monkeypatch.setattr(attribute, "ROWS_PER_TRANSACTION", 2)  # a journey or two per batch
    split = write_attribution_report(db.engine, tmp_path / "b.html", compare=models)
    assert split.journeys == whole.journeys and split.journeys["count"] == 3
    rows = [(r["channel"], r["values"]) for r in split.comparison["rows"]]
    expected = [(r["channel"], r["values"]) for r in whole.comparison["rows"]]
    assert [name for name, _ in rows] == [name for name, _ in expected]
    for (_, values), (_, want) in zip(rows, expected, strict=True):
        assert values == pytest.approx(want, abs=1e-12)


def test_commissions_report_sums_the_sources_beyond_its_table(db, tmp_path, monkeypatch):
    """A month of many sources keeps the page small: the table shows the biggest, and one
    footer row adds up the rest, so the table still sums to the scope's commission."""
    from growthflow.commissions import html_report

    commissions_db(db, tmp_path)
    monkeypatch.setattr(html_report, "TABLE_SOURCES", 3)
    path = tmp_path / "commissions.html"
    report = write_commissions_report(db.engine, path, month="2024-03")
    page = Page(path.read_text(encoding="utf-8"))
    for scope, data in report.scopes.items():
        *shown, rest = page.tables[f"sources-{scope}"][1:]
        assert (
            len(shown) == 3 and rest[0][0] == f"{data['source_count'] - 3} more marketing sources"
        )
        total = sum(Decimal(r[5][1]) for r in shown) + Decimal(rest[5][1])
        assert total == data["commission"]
        assert number(page.figures[f"commission-{scope}"]) == pytest.approx(float(total))
