"""Charts as server-rendered SVG, one renderer for the pages and the PDF reports.

Every chart has a title and a description (in the SVG's <title>/<desc>, referenced by
aria-labelledby) and the data behind it as a table, so nothing depends on seeing colours or
shapes: pass and fail are also written, never only coloured.

Labels come from uploaded files (a group attribute and its values are whatever the file says),
so the SVG is built as an element tree and serialised by `xml.etree.ElementTree`, which escapes
every text and attribute value; no markup is assembled from strings. Element ids are derived
from the chart's slug (a hash prefix in hex), never copied from it.
"""

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 420, 320
MARGIN = {"left": 52, "right": 16, "top": 16, "bottom": 44}
INK, MUTED, ACCENT, GRID, BAD = "#1f2933", "#52606d", "#1d5fa8", "#d9e2ec", "#b42318"


def dom_id(slug: str) -> str:
    """The element id of the chart called `slug`: a fixed prefix and twelve hex digits, the
    same on every render, whatever characters the slug holds."""
    return "chart-" + hashlib.sha256(slug.encode()).hexdigest()[:12]


@dataclass
class Chart:
    """An SVG figure with its accessible title, description and data table. `svg` is the
    renderer's own serialised output (safe to insert as markup); every other field is plain
    text that templates escape."""

    slug: str
    title: str
    description: str
    svg: SafeString
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    @property
    def dom_id(self) -> str:
        return dom_id(self.slug)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _n(value: float) -> str:
    """A coordinate, to a tenth of a unit."""
    return f"{value:.1f}"


def _add(parent: ET.Element, tag: str, text: object = None, /, **attrs: object) -> ET.Element:
    """Append a child element; attribute names use `_` for `-` (`font_size` → font-size).
    ElementTree escapes `text` and the attribute values when serialising."""
    element = ET.SubElement(parent, tag, {k.replace("_", "-"): str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element


class _Svg:
    """An <svg> root with its <title> and <desc>, labelled by ids derived from the slug."""

    def __init__(self, slug: str, title: str, description: str, width: float, height: float):
        ident = dom_id(slug)
        self.root = ET.Element(
            "svg",
            {
                "xmlns": "http://www.w3.org/2000/svg",
                "viewBox": f"0 0 {width} {height}",
                "width": "100%",
                "role": "img",
                "aria-labelledby": f"{ident}-title {ident}-desc",
                "font-family": "system-ui, sans-serif",
            },
        )
        _add(self.root, "title", title, id=f"{ident}-title")
        _add(self.root, "desc", description, id=f"{ident}-desc")

    def add(self, tag: str, text: object = None, /, **attrs: object) -> ET.Element:
        return _add(self.root, tag, text, **attrs)

    def markup(self) -> SafeString:
        # Safe because ElementTree wrote it: every text and attribute value is escaped.
        return mark_safe(ET.tostring(self.root, encoding="unicode"))  # noqa: S308


class _Plot(_Svg):
    """A unit-square plot area (x and y from 0 to 1, or to `y_max`) with axes and grid."""

    def __init__(
        self,
        slug: str,
        title: str,
        description: str,
        x_label: str,
        y_label: str,
        y_max: float = 1.0,
        width: int = WIDTH,
        height: int = HEIGHT,
    ):
        super().__init__(slug, title, description, width, height)
        self.width, self.height, self.y_max = width, height, y_max
        self.x0, self.x1 = MARGIN["left"], width - MARGIN["right"]
        self.y0, self.y1 = height - MARGIN["bottom"], MARGIN["top"]
        self._axes(x_label, y_label)

    def x(self, value: float) -> float:
        return self.x0 + value * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        return self.y0 - (value / self.y_max) * (self.y0 - self.y1)

    def _axes(self, x_label: str, y_label: str) -> None:
        for i in range(6):
            t = i / 5
            gx, gy = self.x(t), self.y(t * self.y_max)
            self.add("line", x1=_n(gx), y1=self.y0, x2=_n(gx), y2=self.y1, stroke=GRID)
            self.add("line", x1=self.x0, y1=_n(gy), x2=self.x1, y2=_n(gy), stroke=GRID)
            self.add(
                "text",
                f"{t:g}",
                x=_n(gx),
                y=self.y0 + 16,
                font_size=11,
                fill=MUTED,
                text_anchor="middle",
            )
            self.add(
                "text",
                f"{t * self.y_max:g}",
                x=self.x0 - 6,
                y=_n(gy + 4),
                font_size=11,
                fill=MUTED,
                text_anchor="end",
            )
        self.add(
            "text",
            x_label,
            x=(self.x0 + self.x1) / 2,
            y=self.height - 8,
            font_size=12,
            fill=INK,
            text_anchor="middle",
        )
        self.add(
            "text",
            y_label,
            transform=f"translate(14 {(self.y0 + self.y1) / 2}) rotate(-90)",
            font_size=12,
            fill=INK,
            text_anchor="middle",
        )

    def diagonal(self, label: str) -> None:
        line = self.add(
            "line",
            x1=self.x(0),
            y1=self.y(0),
            x2=self.x(1),
            y2=self.y(self.y_max),
            stroke=MUTED,
            stroke_dasharray="4 4",
        )
        _add(line, "title", label)


def roc_curve(slug: str, curve: dict[str, Any], auroc: float | None) -> Chart:
    """The ROC curve behind an AUROC (false positive rate against sensitivity)."""
    title = f"ROC curve (AUROC {_fmt(auroc)})"
    description = (
        "Sensitivity against false positive rate at every score threshold; the dashed "
        "diagonal is a model no better than chance."
    )
    plot = _Plot(slug, title, description, "False positive rate (1 − specificity)", "Sensitivity")
    plot.diagonal("chance")
    points = " ".join(
        f"{plot.x(f):.1f},{plot.y(t):.1f}" for f, t in zip(curve["fpr"], curve["tpr"], strict=True)
    )
    plot.add("polyline", points=points, fill="none", stroke=ACCENT, stroke_width="2.5")
    step = max(1, len(curve["fpr"]) // 12)
    rows = [
        [_fmt(f), _fmt(t)] for f, t in list(zip(curve["fpr"], curve["tpr"], strict=True))[::step]
    ]
    return Chart(
        slug, title, description, plot.markup(), ["False positive rate", "Sensitivity"], rows
    )


def reliability_diagram(slug: str, bins: list[dict[str, Any]], ece: float | None) -> Chart:
    """Calibration: observed positive rate against mean predicted score, per ECE bin."""
    title = f"Calibration (ECE {_fmt(ece)})"
    description = (
        "Observed fraction of positives against the mean predicted score in each of ten score "
        "bins; a well-calibrated model lies on the dashed diagonal. Marker size follows the "
        "number of records."
    )
    plot = _Plot(slug, title, description, "Mean predicted score", "Observed fraction positive")
    plot.diagonal("perfect calibration")
    filled = [b for b in bins if b["n"]]
    largest = max((b["n"] for b in filled), default=1)
    for b in filled:
        r = 3 + 7 * (b["n"] / largest) ** 0.5
        circle = plot.add(
            "circle",
            cx=_n(plot.x(b["mean_score"])),
            cy=_n(plot.y(b["fraction_positive"])),
            r=_n(r),
            fill=ACCENT,
            fill_opacity=".75",
        )
        _add(
            circle,
            "title",
            f"{b['lower']:g}–{b['upper']:g}: {b['n']} records, mean score "
            f"{_fmt(b['mean_score'])}, observed {_fmt(b['fraction_positive'])}",
        )
    rows = [
        [
            f"{b['lower']:g}–{b['upper']:g}",
            str(b["n"]),
            _fmt(b["mean_score"]),
            _fmt(b["fraction_positive"]),
        ]
        for b in bins
    ]
    return Chart(
        slug,
        title,
        description,
        plot.markup(),
        ["Score bin", "Records", "Mean score", "Observed positive"],
        rows,
    )


def confusion_matrix(slug: str, matrix: list[list[int]], labels: list[Any]) -> Chart:
    """Counts by true class (rows) and predicted class (columns), numbers written in cells."""
    title = "Confusion matrix"
    description = "Rows are the true class, columns the predicted class; each cell gives the count."
    k = len(labels)
    cell = min(64, 300 // max(k, 1))
    left, top = 90, 40
    width, height = left + cell * k + 16, top + cell * k + 40
    largest = max((v for row in matrix for v in row), default=1) or 1
    svg = _Svg(slug, title, description, width, height)
    svg.add(
        "text",
        "Predicted",
        x=left + cell * k / 2,
        y=18,
        font_size=12,
        fill=INK,
        text_anchor="middle",
    )
    svg.add(
        "text",
        "True",
        transform=f"translate(16 {top + cell * k / 2}) rotate(-90)",
        font_size=12,
        fill=INK,
        text_anchor="middle",
    )
    for j, label in enumerate(labels):
        middle = cell * (j + 0.5)
        svg.add(
            "text",
            label,
            x=left + middle,
            y=top - 6,
            font_size=11,
            fill=MUTED,
            text_anchor="middle",
        )
        svg.add(
            "text",
            label,
            x=left - 8,
            y=top + middle + 4,
            font_size=11,
            fill=MUTED,
            text_anchor="end",
        )
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            share = value / largest
            svg.add(
                "rect",
                x=left + cell * j,
                y=top + cell * i,
                width=cell,
                height=cell,
                fill=ACCENT,
                fill_opacity=f"{0.08 + 0.85 * share:.2f}",
                stroke="#fff",
            )
            svg.add(
                "text",
                value,
                x=left + cell * (j + 0.5),
                y=top + cell * (i + 0.5) + 4,
                font_size=12,
                text_anchor="middle",
                fill="#fff" if share > 0.55 else INK,
            )
    rows = [[str(labels[i]), *map(str, row)] for i, row in enumerate(matrix)]
    headers = ["True \\ predicted", *map(str, labels)]
    return Chart(slug, title, description, svg.markup(), headers, rows)


def interval_bars(
    slug: str,
    title: str,
    description: str,
    bars: list[tuple[str, float | None, float | None, float | None, str]],
    *,
    threshold: float | None = None,
    value_label: str = "Value",
) -> Chart:
    """Horizontal bars with 95% CI whiskers, one per subgroup (or run); the last tuple item is
    a note (a small-group warning) written next to the bar."""
    row_height = 28
    left, right = 150, 140
    width = 560
    height = 40 + row_height * len(bars) + 24
    values = [v for _, v, lo, hi, _ in bars for v in (v, lo, hi) if v is not None]
    top_value = max([1.0, *values, threshold or 0]) if values else 1.0
    scale = (width - left - right) / top_value
    svg = _Svg(slug, title, description, width, height)
    for i in range(6):
        t = top_value * i / 5
        gx = _n(left + t * scale)
        svg.add("line", x1=gx, y1=24, x2=gx, y2=height - 24, stroke=GRID)
        svg.add(
            "text", f"{t:.2g}", x=gx, y=height - 8, font_size=11, fill=MUTED, text_anchor="middle"
        )
    if threshold is not None:
        tx = _n(left + threshold * scale)
        svg.add("line", x1=tx, y1=20, x2=tx, y2=height - 24, stroke=BAD, stroke_dasharray="5 3")
        svg.add(
            "text",
            f"threshold {threshold:g}",
            x=tx,
            y=16,
            font_size=11,
            fill=BAD,
            text_anchor="middle",
        )
    rows = []
    for index, (label, value, low, high, note) in enumerate(bars):
        cy = 40 + row_height * index + row_height / 2
        svg.add("text", label, x=left - 8, y=cy + 4, font_size=12, fill=INK, text_anchor="end")
        if value is not None:
            svg.add(
                "rect",
                x=left,
                y=cy - 8,
                width=_n(value * scale),
                height=16,
                fill=ACCENT,
                fill_opacity=".8",
            )
        if low is not None and high is not None:
            lx, hx = _n(left + low * scale), _n(left + high * scale)
            svg.add("line", x1=lx, y1=cy, x2=hx, y2=cy, stroke=INK, stroke_width="1.5")
            svg.add("line", x1=lx, y1=cy - 6, x2=lx, y2=cy + 6, stroke=INK)
            svg.add("line", x1=hx, y1=cy - 6, x2=hx, y2=cy + 6, stroke=INK)
        text = f"{_fmt(value)}" + (f" ⚠ {note}" if note else "")
        svg.add("text", text[:40], x=width - right + 8, y=cy + 4, font_size=11, fill=MUTED)
        rows.append([label, _fmt(value), _fmt(low), _fmt(high), note or ""])
    return Chart(
        slug,
        title,
        description,
        svg.markup(),
        ["", value_label, "95% CI low", "95% CI high", "Note"],
        rows,
    )


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def run_charts(
    overall: Sequence[Any],
    groups: dict[str, dict[str, dict[str, Any]]],
    criteria_metrics: Sequence[str],
    prefix: str = "",
) -> list[Chart]:
    """The charts of one run, as the run page and the dossier draw them: ROC curve,
    calibration, confusion matrix, and subgroup intervals for the metrics the gate's criteria
    name (else the first three). `overall` are the run's overall results, `groups` its subgroup
    results by attribute, value and metric; `prefix` keeps slugs unique on a page of runs."""
    found: list[Chart] = []
    by_metric = {r.metric: r for r in overall}
    if (auroc := by_metric.get("auroc")) and auroc.detail.get("curve"):
        found.append(roc_curve(f"{prefix}roc", auroc.detail["curve"], auroc.value))
    if (ece := by_metric.get("ece")) and ece.detail.get("bins"):
        found.append(reliability_diagram(f"{prefix}calibration", ece.detail["bins"], ece.value))
    if (matrix := by_metric.get("confusion_matrix")) and matrix.detail.get("value"):
        found.append(
            confusion_matrix(f"{prefix}confusion", matrix.detail["value"], matrix.detail["labels"])
        )
    named = [m for m in dict.fromkeys(criteria_metrics) if m in by_metric] or [
        m for m, r in by_metric.items() if r.value is not None and m != "confusion_matrix"
    ][:3]
    for metric in named:
        for attribute, values in groups.items():
            bars = [
                (
                    f"{attribute} = {value}",
                    _finite(metrics[metric].value),
                    _finite(metrics[metric].ci_low),
                    _finite(metrics[metric].ci_high),
                    "small group" if metrics[metric].warnings else "",
                )
                for value, metrics in sorted(values.items())
                if metric in metrics
            ]
            if bars:
                found.append(
                    interval_bars(
                        f"{prefix}groups-{metric}-{attribute}",
                        f"{metric} by {attribute}",
                        f"{metric} in each {attribute} subgroup with its 95% confidence "
                        "interval; ⚠ marks a subgroup below the minimum size.",
                        bars,
                        value_label=metric,
                    )
                )
    return found
