"""The monitoring trend chart: one metric of one cohort across the batches, with the baseline,
the control limits, the criterion thresholds and the signals of the alert rules.

Built on the evaluation charts' renderer (`lifecycle.evaluations.charts`): an element tree
serialised by ElementTree, so every label taken from data (group attributes and values,
criterion expressions) is escaped, with a title, a description and the data table. A signal is
a distinct marker shape and a word in the table, never a colour alone.

Unlike the evaluation plots (0..1 on both axes), the y axis adapts to the metric: AUROC near
0.8, latency in milliseconds, BLEU up to 100. The x axis is the batches in period order.
"""

import math
from collections.abc import Iterable, Sequence
from xml.etree import ElementTree as ET

from lifecycle.evaluations.charts import ACCENT, BAD, GRID, INK, MUTED, Chart, _add, _fmt, _n, _Svg
from lifecycle.monitoring.rules import (
    CUSUM_DOWN,
    CUSUM_UP,
    LIMIT_WIDTH,
    TrendPoint,
    describe_signal,
)
from lifecycle.monitoring.trends import Trend

WIDTH, HEIGHT = 640, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 44, 52
# Roughly the width of a period label ("2026-09-07") at 11px, with a gap: labels are thinned
# so that they never overlap.
LABEL_SLOT = 72

HEADERS = [
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


# Beyond this magnitude a value cannot size an axis (its arithmetic overflows); such values
# stay in the data table.
AXIS_LIMIT = 1e12


def _finite(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v) and abs(v) <= AXIS_LIMIT]


def _value(value: float | None) -> str:
    """A metric value, with decimals that suit its size (0.812, 34.567, 1234.5 ms)."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) >= 1e7:
        return f"{value:.4g}"
    return _fmt(value, 3 if abs(value) < 100 else 1)


def _step(span: float, count: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about `count` ticks."""
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def _y_range(trend: Trend) -> tuple[float, float, float]:
    """The y axis (low, high, tick step): every value and interval, the baseline and the
    thresholds always fit; control limits widen the axis by at most the data's own span, so one
    tiny batch's very wide limits cannot flatten the rest (the band is clipped at the edge and
    the table gives the limits in full)."""
    core = _finite(
        [
            trend.baseline.value,
            *(c.threshold for c in trend.criteria),
            *(
                v
                for p in trend.points
                for v in (p.observation.value, p.observation.ci_low, p.observation.ci_high)
            ),
        ]
    )
    if not core:
        return 0.0, 1.0, 0.2
    low, high = min(core), max(core)
    span = high - low or abs(high) * 0.1 or 1.0
    limits = _finite(v for p in trend.points for v in (p.lower, p.upper))
    low = max(min([low, *limits]), low - span)
    high = min(max([high, *limits]), high + span)
    span = high - low or span
    low, high = low - 0.05 * span, high + 0.05 * span
    step = _step(high - low)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _tick_text(value: float, step: float) -> str:
    """A tick value with as many decimals as the step needs (0.25 steps: two decimals)."""
    decimals = 0
    while decimals < 10 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


class _TrendPlot(_Svg):
    """A plot of batches (x, evenly spaced in period order) against a metric's own range."""

    def __init__(self, slug: str, title: str, description: str, trend: Trend, y_label: str) -> None:
        super().__init__(slug, title, description, WIDTH, HEIGHT)
        self.width = WIDTH
        self.x0, self.x1 = LEFT, WIDTH - RIGHT
        self.y0, self.y1 = HEIGHT - BOTTOM, TOP
        self.low, self.high, step = _y_range(trend)
        self.count = max(1, len(trend.points))
        self.slot = (self.x1 - self.x0) / self.count
        self._y_axis(step, y_label)

    def x(self, index: float) -> float:
        return self.x0 + self.slot * (index + 0.5)

    def y(self, value: float) -> float:
        """The y coordinate of `value`, clipped to the plot area."""
        share = (min(max(value, self.low), self.high) - self.low) / (self.high - self.low)
        return self.y0 - share * (self.y0 - self.y1)

    def _y_axis(self, step: float, y_label: str) -> None:
        ticks = round((self.high - self.low) / step)
        for i in range(ticks + 1):
            value = self.low + i * step
            gy = _n(self.y(value))
            self.add("line", x1=self.x0, y1=gy, x2=self.x1, y2=gy, stroke=GRID)
            self.add(
                "text",
                _tick_text(value, step),
                x=self.x0 - 6,
                y=_n(self.y(value) + 4),
                font_size=11,
                fill=MUTED,
                text_anchor="end",
            )
        self.add(
            "text",
            y_label,
            transform=f"translate(14 {(self.y0 + self.y1) / 2}) rotate(-90)",
            font_size=12,
            fill=INK,
            text_anchor="middle",
        )

    def x_axis(self, labels: Sequence[str]) -> None:
        """Period labels under the batches, thinned to fit, the last one always shown."""
        every = max(1, math.ceil(len(labels) / max(1, int((self.x1 - self.x0) // LABEL_SLOT))))
        shown = set(range(0, len(labels), every))
        if labels and len(labels) - 1 not in shown:
            # Show the latest period instead of its neighbour that would overlap it.
            shown.discard(max(shown))
            shown.add(len(labels) - 1)
        for i in sorted(shown):
            self.add(
                "text",
                labels[i],
                # Kept whole inside the figure at either end.
                x=_n(min(max(self.x(i), LABEL_SLOT / 2), self.width - LABEL_SLOT / 2)),
                y=self.y0 + 16,
                font_size=11,
                fill=MUTED,
                text_anchor="middle",
            )
        self.add(
            "text",
            "Monitoring period (start)",
            x=(self.x0 + self.x1) / 2,
            y=HEIGHT - 10,
            font_size=12,
            fill=INK,
            text_anchor="middle",
        )


def _marker(plot: _TrendPlot, cx: float, cy: float, signals: Sequence[str]) -> ET.Element:
    """The batch's marker: a circle, or for a signal a larger shape that says which rule
    fired (▲ CUSUM up, ▼ CUSUM down, ◆ beyond a threshold), drawn in the warning colour."""
    if not signals:
        return plot.add("circle", cx=_n(cx), cy=_n(cy), r=4, fill=ACCENT)
    size = 7
    if CUSUM_UP in signals:
        corners = [(cx, cy - size), (cx + size, cy + size * 0.8), (cx - size, cy + size * 0.8)]
        shape = "cusum-up"
    elif CUSUM_DOWN in signals:
        corners = [(cx, cy + size), (cx + size, cy - size * 0.8), (cx - size, cy - size * 0.8)]
        shape = "cusum-down"
    else:
        corners = [(cx, cy - size), (cx + size, cy), (cx, cy + size), (cx - size, cy)]
        shape = "threshold"
    return plot.add(
        "polygon",
        points=" ".join(f"{_n(px)},{_n(py)}" for px, py in corners),
        fill=BAD,
        stroke="#fff",
        data_signal=shape,
    )


def _band(plot: _TrendPlot, points: Sequence[TrendPoint]) -> None:
    """The control limits as a dashed band, a step per batch (each batch has its own limits,
    wider for fewer records), broken where a batch has none."""
    runs: list[list[int]] = []
    for i, point in enumerate(points):
        if point.lower is None or point.upper is None:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    half = plot.slot / 2
    for run in runs:
        upper: list[tuple[float, float]] = []
        lower: list[tuple[float, float]] = []
        for i in run:
            point = points[i]
            assert point.lower is not None and point.upper is not None
            for x in (plot.x(i) - half, plot.x(i) + half):
                upper.append((x, plot.y(point.upper)))
                lower.append((x, plot.y(point.lower)))
        outline = " ".join(f"{_n(x)},{_n(y)}" for x, y in [*upper, *reversed(lower)])
        plot.add("polygon", points=outline, fill=ACCENT, fill_opacity=".07", stroke="none")
        for edge in (upper, lower):
            plot.add(
                "polyline",
                points=" ".join(f"{_n(x)},{_n(y)}" for x, y in edge),
                fill="none",
                stroke=MUTED,
                stroke_dasharray="6 4",
            )


def _legend(plot: _TrendPlot, with_thresholds: bool) -> None:
    x, y = 8.0, 18.0
    items: list[tuple[str, str]] = [
        ("value", "value, 95% CI"),
        ("baseline", "baseline"),
        ("limits", f"limits ±{LIMIT_WIDTH:g} SE"),
    ]
    if with_thresholds:
        items.append(("threshold", "threshold"))
    items += [("cusum", "▲▼ CUSUM"), ("beyond", "◆ beyond threshold")]
    for kind, text in items:
        if kind == "value":
            plot.add("circle", cx=x + 6, cy=y - 4, r=4, fill=ACCENT)
        elif kind in ("cusum", "beyond"):
            x -= 16  # the symbol in the text is the key
        else:
            dash = {"baseline": None, "limits": "6 4", "threshold": "5 3"}[kind]
            colour = {"baseline": INK, "limits": MUTED, "threshold": BAD}[kind]
            line = plot.add("line", x1=x, y1=y - 4, x2=x + 14, y2=y - 4, stroke=colour)
            if dash:
                line.set("stroke-dasharray", dash)
        fill = BAD if kind in ("cusum", "beyond") else INK
        plot.add("text", text, x=_n(x + 18), y=y, font_size=11, fill=fill)
        x += 18 + 6.2 * len(text) + 14


def _line_labels(plot: _TrendPlot, labels: Sequence[tuple[str, float, str]]) -> None:
    """The baseline's and thresholds' labels at the left end of their lines, just above them,
    stacked when lines lie close together, with a white halo so they stay readable over data."""
    taken: list[float] = []
    for text, line_y, colour in labels:
        label_y = line_y - 4
        while any(abs(label_y - other) < 12 for other in taken):
            label_y -= 12
        taken.append(label_y)
        plot.add(
            "text",
            text,
            x=plot.x0 + 4,
            y=_n(max(label_y, plot.y1 + 10)),
            font_size=11,
            fill=colour,
            stroke="#fff",
            stroke_width=3,
            paint_order="stroke",
        )


def _point_note(point: TrendPoint) -> str:
    """The Signals cell: the signals in words, or why the rules could not judge the point."""
    words = [describe_signal(s) for s in point.signals]
    if point.observation.value is None:
        words.append("no result for this batch (CUSUM carried forward)")
    elif point.se is None:
        words.append("no standard error: no control limits, CUSUM carried forward")
    elif point.lower is None:
        words.append("no baseline value: no control limits")
    return "; ".join(words)


def trend_chart(trend: Trend, slug: str) -> Chart:
    """x: batches in period order (period labels, thinned to fit), y: the metric. Draws the
    batch values with their 95% interval whiskers, the baseline as a line, the control limits
    as a dashed band, each applicable criterion threshold as a labelled line, and marks
    signalling points (a distinct shape AND the word in the data table, never colour alone)."""
    points = trend.points
    title = trend.label
    signalled = [p.batch for p in points if p.signals]
    thresholds = "; ".join(f"the criterion {c.expression}" for c in trend.criteria)
    description = (
        f"{trend.label} in each monitoring batch, by period, with its 95% interval, against "
        f"the baseline run's value {_value(trend.baseline.value)} (solid line). The dashed "
        f"band is the control limits: the baseline ± {LIMIT_WIDTH:g} standard errors, scaled "
        "to each batch's number of records."
        + (f" Red dashed lines: {thresholds}." if thresholds else "")
        + " Triangles mark a CUSUM signal (up or down), diamonds a batch whose interval lies "
        "wholly beyond a threshold; the table lists every signal."
        + (
            f" Signals at batch{'es' if len(signalled) > 1 else ''} "
            f"{', '.join(map(str, signalled))}."
            if signalled
            else (" No signals." if points else " No monitoring batches yet.")
        )
    )
    plot = _TrendPlot(slug, title, description, trend, trend.metric)
    _legend(plot, bool(trend.criteria))
    if not points:
        plot.add(
            "text",
            "No monitoring batches yet",
            x=(plot.x0 + plot.x1) / 2,
            y=(plot.y0 + plot.y1) / 2,
            font_size=13,
            fill=MUTED,
            text_anchor="middle",
        )
    _band(plot, points)
    # Reference lines under the data; their labels are written last, over it (with a halo).
    labels: list[tuple[str, float, str]] = []
    if (x0 := trend.baseline.value) is not None and math.isfinite(x0):
        by = _n(plot.y(x0))
        line = plot.add("line", x1=plot.x0, y1=by, x2=plot.x1, y2=by, stroke=INK, stroke_width=1.5)
        _add(line, "title", f"baseline {_value(x0)}")
        labels.append((f"baseline {_value(x0)}", plot.y(x0), INK))
    for criterion in trend.criteria:
        ty = _n(plot.y(criterion.threshold))
        line = plot.add(
            "line", x1=plot.x0, y1=ty, x2=plot.x1, y2=ty, stroke=BAD, stroke_dasharray="5 3"
        )
        _add(line, "title", f"threshold of {criterion.expression}")
        labels.append((criterion.expression, plot.y(criterion.threshold), BAD))
    # The batch values joined in order (broken where a batch has no value), then per batch its
    # interval whisker and marker on top.
    segment: list[str] = []
    segments = [segment]
    for i, point in enumerate(points):
        value = point.observation.value
        if value is None or not math.isfinite(value):
            segment = []
            segments.append(segment)
            continue
        segment.append(f"{_n(plot.x(i))},{_n(plot.y(value))}")
    for joined in segments:
        if len(joined) > 1:
            plot.add(
                "polyline",
                points=" ".join(joined),
                fill="none",
                stroke=ACCENT,
                stroke_width=1.5,
                stroke_opacity=".6",
            )
    for i, point in enumerate(points):
        obs, cx = point.observation, plot.x(i)
        low, high = obs.ci_low, obs.ci_high
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            ly, hy = _n(plot.y(low)), _n(plot.y(high))
            plot.add("line", x1=_n(cx), y1=ly, x2=_n(cx), y2=hy, stroke=INK)
            for cap in (ly, hy):
                plot.add("line", x1=_n(cx - 4), y1=cap, x2=_n(cx + 4), y2=cap, stroke=INK)
        if obs.value is None or not math.isfinite(obs.value):
            continue
        marker = _marker(plot, cx, plot.y(obs.value), point.signals)
        signals = "; ".join(describe_signal(s) for s in point.signals)
        _add(
            marker,
            "title",
            f"Batch {point.batch} ({point.label}): {_value(obs.value)}, 95% CI "
            f"{_value(low)}–{_value(high)}, n {obs.n if obs.n is not None else '—'}"
            + (f"; {signals}" if signals else ""),
        )
    _line_labels(plot, labels)
    plot.x_axis([p.label for p in points])
    rows = [
        [
            str(p.batch),
            p.label,
            _value(p.observation.value),
            _value(p.observation.ci_low),
            _value(p.observation.ci_high),
            "—" if p.observation.n is None else str(p.observation.n),
            _value(p.lower),
            _value(p.upper),
            _value(p.cusum_high) if p.cusum_high >= 1e7 else _fmt(p.cusum_high, 2),
            _value(p.cusum_low) if p.cusum_low >= 1e7 else _fmt(p.cusum_low, 2),
            _point_note(p),
        ]
        for p in points
    ]
    return Chart(slug, title, description, plot.markup(), list(HEADERS), rows)
