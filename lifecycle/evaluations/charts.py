"""Charts as server-rendered SVG, one renderer for the pages and the PDF reports.

Every chart has a title and a description (in the SVG's <title>/<desc>, referenced by
aria-labelledby) and the data behind it as a table, so nothing depends on seeing colours or
shapes: pass and fail are also written, never only coloured.
"""

from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 420, 320
MARGIN = {"left": 52, "right": 16, "top": 16, "bottom": 44}
INK, MUTED, ACCENT, GRID, BAD = "#1f2933", "#52606d", "#1d5fa8", "#d9e2ec", "#b42318"


@dataclass
class Chart:
    """An SVG figure with its accessible title, description and data table."""

    slug: str
    title: str
    description: str
    svg: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


class _Plot:
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
        self.slug, self.title, self.description = slug, title, description
        self.width, self.height, self.y_max = width, height, y_max
        self.x0, self.x1 = MARGIN["left"], width - MARGIN["right"]
        self.y0, self.y1 = height - MARGIN["bottom"], MARGIN["top"]
        self.parts: list[str] = []
        self._axes(x_label, y_label)

    def x(self, value: float) -> float:
        return self.x0 + value * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        return self.y0 - (value / self.y_max) * (self.y0 - self.y1)

    def _axes(self, x_label: str, y_label: str) -> None:
        for i in range(6):
            t = i / 5
            gx, gy = self.x(t), self.y(t * self.y_max)
            self.parts.append(
                f'<line x1="{gx:.1f}" y1="{self.y0}" x2="{gx:.1f}" y2="{self.y1}" stroke="{GRID}"/>'
                f'<line x1="{self.x0}" y1="{gy:.1f}" x2="{self.x1}" y2="{gy:.1f}" stroke="{GRID}"/>'
                f'<text x="{gx:.1f}" y="{self.y0 + 16}" font-size="11" fill="{MUTED}" '
                f'text-anchor="middle">{t:g}</text>'
                f'<text x="{self.x0 - 6}" y="{gy + 4:.1f}" font-size="11" fill="{MUTED}" '
                f'text-anchor="end">{t * self.y_max:g}</text>'
            )
        self.parts.append(
            f'<text x="{(self.x0 + self.x1) / 2}" y="{self.height - 8}" font-size="12" '
            f'fill="{INK}" text-anchor="middle">{escape(x_label)}</text>'
            f'<text transform="translate(14 {(self.y0 + self.y1) / 2}) rotate(-90)" '
            f'font-size="12" fill="{INK}" text-anchor="middle">{escape(y_label)}</text>'
        )

    def diagonal(self, label: str) -> None:
        self.parts.append(
            f'<line x1="{self.x(0)}" y1="{self.y(0)}" x2="{self.x(1)}" y2="{self.y(self.y_max)}" '
            f'stroke="{MUTED}" stroke-dasharray="4 4"><title>{escape(label)}</title></line>'
        )

    def svg(self) -> str:
        return _svg(self.slug, self.title, self.description, self.width, self.height, self.parts)


def _svg(slug: str, title: str, description: str, width: int, height: int, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-labelledby="{slug}-title {slug}-desc" '
        f'font-family="system-ui, sans-serif">'
        f'<title id="{slug}-title">{escape(title)}</title>'
        f'<desc id="{slug}-desc">{escape(description)}</desc>' + "".join(parts) + "</svg>"
    )


def roc_curve(slug: str, curve: dict, auroc: float | None) -> Chart:
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
    plot.parts.append(
        f'<polyline points="{points}" fill="none" stroke="{ACCENT}" stroke-width="2.5"/>'
    )
    step = max(1, len(curve["fpr"]) // 12)
    rows = [
        [_fmt(f), _fmt(t)] for f, t in list(zip(curve["fpr"], curve["tpr"], strict=True))[::step]
    ]
    return Chart(slug, title, description, plot.svg(), ["False positive rate", "Sensitivity"], rows)


def reliability_diagram(slug: str, bins: list[dict], ece: float | None) -> Chart:
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
        plot.parts.append(
            f'<circle cx="{plot.x(b["mean_score"]):.1f}" cy="{plot.y(b["fraction_positive"]):.1f}" '
            f'r="{r:.1f}" fill="{ACCENT}" fill-opacity=".75"><title>{b["lower"]:g}–{b["upper"]:g}: '
            f"{b['n']} records, mean score {_fmt(b['mean_score'])}, observed "
            f"{_fmt(b['fraction_positive'])}</title></circle>"
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
        plot.svg(),
        ["Score bin", "Records", "Mean score", "Observed positive"],
        rows,
    )


def confusion_matrix(slug: str, matrix: list[list[int]], labels: list) -> Chart:
    """Counts by true class (rows) and predicted class (columns), numbers written in cells."""
    title = "Confusion matrix"
    description = "Rows are the true class, columns the predicted class; each cell gives the count."
    k = len(labels)
    cell = min(64, 300 // max(k, 1))
    left, top = 90, 40
    width, height = left + cell * k + 16, top + cell * k + 40
    largest = max((v for row in matrix for v in row), default=1) or 1
    parts = [
        f'<text x="{left + cell * k / 2}" y="18" font-size="12" fill="{INK}" '
        f'text-anchor="middle">Predicted</text>'
        f'<text transform="translate(16 {top + cell * k / 2}) rotate(-90)" font-size="12" '
        f'fill="{INK}" text-anchor="middle">True</text>'
    ]
    for j, label in enumerate(labels):
        parts.append(
            f'<text x="{left + cell * (j + 0.5)}" y="{top - 6}" font-size="11" fill="{MUTED}" '
            f'text-anchor="middle">{escape(str(label))}</text>'
            f'<text x="{left - 8}" y="{top + cell * (j + 0.5) + 4}" font-size="11" fill="{MUTED}" '
            f'text-anchor="end">{escape(str(label))}</text>'
        )
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            share = value / largest
            text_colour = "#fff" if share > 0.55 else INK
            parts.append(
                f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell}" height="{cell}" '
                f'fill="{ACCENT}" fill-opacity="{0.08 + 0.85 * share:.2f}" stroke="#fff"/>'
                f'<text x="{left + cell * (j + 0.5)}" y="{top + cell * (i + 0.5) + 4}" '
                f'font-size="12" text-anchor="middle" fill="{text_colour}">{value}</text>'
            )
    rows = [[str(labels[i]), *map(str, row)] for i, row in enumerate(matrix)]
    headers = ["True \\ predicted", *map(str, labels)]
    return Chart(
        slug,
        title,
        description,
        _svg(slug, title, description, width, height, parts),
        headers,
        rows,
    )


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
    parts = []
    for i in range(6):
        t = top_value * i / 5
        gx = left + t * scale
        parts.append(
            f'<line x1="{gx:.1f}" y1="24" x2="{gx:.1f}" y2="{height - 24}" stroke="{GRID}"/>'
            f'<text x="{gx:.1f}" y="{height - 8}" font-size="11" fill="{MUTED}" '
            f'text-anchor="middle">{t:.2g}</text>'
        )
    if threshold is not None:
        tx = left + threshold * scale
        parts.append(
            f'<line x1="{tx:.1f}" y1="20" x2="{tx:.1f}" y2="{height - 24}" stroke="{BAD}" '
            f'stroke-dasharray="5 3"/><text x="{tx:.1f}" y="16" font-size="11" fill="{BAD}" '
            f'text-anchor="middle">threshold {threshold:g}</text>'
        )
    rows = []
    for index, (label, value, low, high, note) in enumerate(bars):
        cy = 40 + row_height * index + row_height / 2
        parts.append(
            f'<text x="{left - 8}" y="{cy + 4}" font-size="12" fill="{INK}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        if value is not None:
            parts.append(
                f'<rect x="{left}" y="{cy - 8}" width="{value * scale:.1f}" height="16" '
                f'fill="{ACCENT}" fill-opacity=".8"/>'
            )
        if low is not None and high is not None:
            lx, hx = left + low * scale, left + high * scale
            parts.append(
                f'<line x1="{lx:.1f}" y1="{cy}" x2="{hx:.1f}" y2="{cy}" stroke="{INK}" '
                'stroke-width="1.5"/>'
                f'<line x1="{lx:.1f}" y1="{cy - 6}" x2="{lx:.1f}" y2="{cy + 6}" stroke="{INK}"/>'
                f'<line x1="{hx:.1f}" y1="{cy - 6}" x2="{hx:.1f}" y2="{cy + 6}" stroke="{INK}"/>'
            )
        text = f"{_fmt(value)}" + (f" ⚠ {note}" if note else "")
        parts.append(
            f'<text x="{width - right + 8}" y="{cy + 4}" font-size="11" fill="{MUTED}">'
            f"{escape(text[:40])}</text>"
        )
        rows.append([label, _fmt(value), _fmt(low), _fmt(high), note or ""])
    return Chart(
        slug,
        title,
        description,
        _svg(slug, title, description, width, height, parts),
        ["", value_label, "95% CI low", "95% CI high", "Note"],
        rows,
    )
