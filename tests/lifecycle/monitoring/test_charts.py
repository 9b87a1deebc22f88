"""The monitoring trend chart: accessible SVG, escaped labels, the data table, signal shapes
and a y axis that fits the metric."""

import re
from xml.etree import ElementTree as ET

from django.template.loader import render_to_string

from lifecycle.monitoring.charts import HEADERS, trend_chart
from lifecycle.monitoring.rules import Z95, Criterion, Observation, evaluate_series
from lifecycle.monitoring.trends import Trend

SVG = "{http://www.w3.org/2000/svg}"


def make_trend(
    values,
    *,
    baseline=0.85,
    se=0.01,
    n=1000,
    criteria=(),
    metric="auroc",
    scope="overall",
    attribute="",
    value="",
    batch_n=None,
):
    base = Observation(baseline, baseline - se * Z95, baseline + se * Z95, n)
    series = []
    for i, x in enumerate(values, start=1):
        if isinstance(x, Observation):
            series.append((i, f"2026-{(i - 1) // 28 + 1:02d}-{(i - 1) % 28 + 1:02d}", x))
            continue
        size = batch_n or n
        spread = se * (n / size) ** 0.5 * Z95
        series.append(
            (
                i,
                f"2026-{(i - 1) // 28 + 1:02d}-{(i - 1) % 28 + 1:02d}",
                Observation(x, x - spread, x + spread, size),
            )
        )
    criteria = list(criteria)
    points = evaluate_series(base, series, criteria, k=0.5, h=5.0)  # the plan's defaults
    return Trend(metric, scope, attribute, value, base, criteria, points)


def parse(chart):
    return ET.fromstring(str(chart.svg))  # noqa: S314 (our own output)


def texts(root):
    return [element.text for element in root.iter(f"{SVG}text")]


def test_it_is_an_svg_with_the_trends_title_and_a_description_of_what_is_drawn():
    trend = make_trend(
        [0.85, 0.84],
        criteria=[Criterion("auroc >= 0.8", ">=", 0.8, True)],
        scope="group",
        attribute="age_band",
        value="65+",
    )
    chart = trend_chart(trend, "trend-auroc-age")
    root = parse(chart)
    assert chart.title == "auroc — age_band = 65+"
    assert root.find(f"{SVG}title").text == chart.title
    assert root.find(f"{SVG}desc").text == chart.description
    assert root.get("aria-labelledby") == f"{chart.dom_id}-title {chart.dom_id}-desc"
    assert "baseline run's value 0.850" in chart.description
    assert "the criterion auroc >= 0.8" in chart.description
    assert "No signals." in chart.description
    assert "baseline 0.850" in texts(root)
    assert "auroc >= 0.8" in texts(root)  # the threshold line is labelled


def test_the_data_table_has_every_batch_with_limits_cusum_and_signals_in_words():
    criterion = Criterion("auroc >= 0.8", ">=", 0.8, True)
    no_se = Observation(0.84, None, None, None)
    # Baseline standard error 0.01 on 750 records: a batch of 250 is judged with
    # 0.01 x sqrt(1 + 750 / 250) = 0.02, limits 0.85 ± 0.06.
    trend = make_trend([0.85, no_se, 0.83, 0.74, 0.74], criteria=[criterion], n=750, batch_n=250)
    chart = trend_chart(trend, "trend-auroc")
    assert (
        chart.headers
        == HEADERS
        == [
            "Batch",
            "Period",
            "Value",
            "95% CI low",
            "95% CI high",
            "n",
            "Lower limit",
            "Upper limit",
            "CUSUM+",
            "CUSUM-",
            "Signals",
        ]
    )
    assert chart.rows[0] == [
        "1",
        "2026-01-01",
        "0.850",
        "0.816",
        "0.884",
        "250",
        "0.790",
        "0.910",
        "0.00",
        "0.00",
        "",
    ]
    assert chart.rows[1][2:8] == ["0.840", "—", "—", "—", "—", "—"]
    assert chart.rows[1][10] == "no standard error: no control limits, CUSUM carried forward"
    # The batch without a standard error carries the sums and does not signal. Then z = -1
    # and -5.5 twice: S- = 0.5, 5.5 (beyond h = 5), then 10.5.
    assert [row[9] for row in chart.rows[2:]] == ["0.50", "5.50", "10.50"]
    assert chart.rows[3][10] == "CUSUM down; beyond threshold auroc >= 0.8"
    assert "Signals at batches 4, 5." in chart.description


def test_signalling_batches_have_their_own_shape_not_only_a_colour():
    criterion = Criterion("auroc >= 0.8", ">=", 0.8, True)
    # Standard error of a batch 0.01 x sqrt(1 + 750 / 250) = 0.02.
    up = make_trend([0.87, 0.97, 0.97], n=750, batch_n=250)  # z = 1, 6, 6: S+ = 0.5, 6, 11.5
    # z = 0, -6: S- = 5.5, beyond h = 5 at the second batch.
    down = make_trend([0.85, 0.73], criteria=[criterion], n=750, batch_n=250)
    beyond = make_trend(
        [Observation(0.78, 0.76, 0.79, 50)],
        criteria=[criterion],
        baseline=0.79,
        se=0.05,
        n=50,
    )  # inside the limits, but the interval is wholly below 0.8

    def shapes(trend):
        root = parse(trend_chart(trend, "s"))
        marked = [p.get("data-signal") for p in root.iter(f"{SVG}polygon") if p.get("data-signal")]
        return marked, len(list(root.iter(f"{SVG}circle"))) - 1  # minus the legend's circle

    assert shapes(up) == (["cusum-up", "cusum-up"], 1)
    assert shapes(down) == (["cusum-down"], 1)
    assert shapes(beyond) == (["threshold"], 0)
    marker = next(
        p for p in parse(trend_chart(down, "s")).iter(f"{SVG}polygon") if p.get("data-signal")
    )
    assert marker.find(f"{SVG}title").text.endswith("CUSUM down; beyond threshold auroc >= 0.8")


def test_hostile_labels_from_the_data_are_escaped():
    hostile = '<script>alert("x")</script> & "quoted"'
    trend = make_trend(
        [0.85, 0.7],
        scope="group",
        attribute='ward"><svg onload=alert(1)>',
        value=hostile,
        criteria=[Criterion(f"each_group:auroc({hostile}) >= 0.8", ">=", 0.8, True)],
    )
    chart = trend_chart(trend, f"trend-{hostile}")
    markup = str(chart.svg)
    assert "<script" not in markup and "<svg onload" not in markup
    assert "&lt;script&gt;" in markup and "&amp;" in markup
    root = parse(chart)  # still well-formed
    assert root.find(f"{SVG}title").text == f'auroc — ward"><svg onload=alert(1)> = {hostile}'
    assert re.fullmatch(r"chart-[0-9a-f]{12}", chart.dom_id)
    # On the page, the title, description and data table are text, escaped by the template.
    page = render_to_string("lifecycle/partials/chart.html", {"chart": chart})
    assert "<script>" not in page and "<svg onload" not in page
    assert "&lt;script&gt;" in page


def test_the_y_axis_fits_the_metric_not_zero_to_one():
    latency = make_trend(
        [1180.0, 1250.0, 1900.0], metric="latency_p95_ms", baseline=1200.0, se=20.0, n=400
    )
    root = parse(trend_chart(latency, "latency"))
    ticks = [float(t) for t in texts(root) if t and re.fullmatch(r"-?\d+(\.\d+)?", t)]
    assert min(ticks) <= 1180 and max(ticks) >= 1900
    assert max(ticks) - min(ticks) < 2000  # the axis is not stretched down to zero
    bleu = make_trend([31.0, 30.5], metric="bleu", baseline=32.0, se=0.8, n=200)
    ticks = [
        float(t)
        for t in texts(parse(trend_chart(bleu, "bleu")))
        if t and re.fullmatch(r"-?\d+(\.\d+)?", t)
    ]
    assert 25 <= min(ticks) <= 30.5 and 32 <= max(ticks) <= 40
    # Every marker lies inside the plot area.
    for circle in root.iter(f"{SVG}circle"):
        assert 0 <= float(circle.get("cy")) <= 340


def test_a_year_of_weekly_periods_is_thinned_to_labels_that_fit():
    trend = make_trend([0.85] * 52)
    chart = trend_chart(trend, "year")
    labels = [t for t in texts(parse(chart)) if t and re.fullmatch(r"2026-\d\d-\d\d", t)]
    assert 4 <= len(labels) <= 9
    assert labels[0] == "2026-01-01" and labels[-1] == chart.rows[-1][1]
    assert len(chart.rows) == 52


def test_a_trend_without_batches_says_so():
    chart = trend_chart(make_trend([]), "empty")
    assert "No monitoring batches yet" in texts(parse(chart))
    assert chart.rows == []
    assert chart.description.endswith("No monitoring batches yet.")


def test_values_too_large_to_draw_stay_in_the_table_and_the_chart_still_renders():
    # The record contract accepts any finite latency; one absurd batch must not break the page.
    trend = make_trend([120.0, 1.7e308, 125.0], baseline=118.0, se=2.0, metric="latency_p95_ms")
    chart = trend_chart(trend, "huge")
    parse(chart)
    assert chart.rows[1][2] == "1.7e+308" and chart.rows[1][-1] == "CUSUM up"
