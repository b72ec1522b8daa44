"""The calibration chart's geometry, drawn as server-side SVG by
templates/quality/_calibration_chart.html: two overlaid histograms (positives and negatives per
similarity bin) and a line per threshold. Only numbers and text leave here; the template escapes
the text, and the looks are classes in static/css/calibration.css (the Content-Security-Policy
refuses style attributes)."""

from dataclasses import dataclass, field

from quality.calibration import CalibrationGroup

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 22, 34
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
LOW, HIGH = 0.0, 1.0  # the similarity axis, as calibration.histogram bins it

# What a positive and a negative point are, per threshold kind.
LABELS = {
    "ask_similarity": ("helpful", "not helpful"),
    "case_similarity": ("resolved", "escalated or cancelled"),
}


@dataclass(frozen=True)
class Bar:
    css_class: str
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Marker:
    css_class: str
    x: float
    label: str
    dx: int  # the label beside its line: in force to the left, suggested to the right


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass
class Chart:
    chart_id: str
    title: str
    description: str
    positive_label: str
    negative_label: str
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_max: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = PLOT_WIDTH
    plot_height: int = PLOT_HEIGHT

    @property
    def bottom(self) -> int:
        return TOP + PLOT_HEIGHT

    @property
    def right(self) -> int:
        return LEFT + PLOT_WIDTH


def _x(value: float) -> float:
    clamped = min(HIGH, max(LOW, value))
    return round(LEFT + (clamped - LOW) / (HIGH - LOW) * PLOT_WIDTH, 1)


def calibration_chart(group: CalibrationGroup, *, chart_id: str) -> Chart:
    positive, negative = LABELS[group.kind]
    where = group.embedding_model + (f", brand {group.brand_key}" if group.brand_key else "")
    y_max = max([1, *(max(b.positives, b.negatives) for b in group.bins)])
    suggested = group.suggestion.threshold if group.suggestion else None
    chart = Chart(
        chart_id=chart_id,
        title=f"Similarity of {positive} and {negative} outcomes, {where}",
        description=(
            f"Histogram of the best similarity of {group.positives} {positive} and"
            f" {group.negatives} {negative} outcomes in {len(group.bins)} bins from {LOW:g} to"
            f" {HIGH:g}. Threshold in force {group.current:.3f}"
            + (f"; suggested {suggested:.3f}." if suggested is not None else "; no suggestion.")
        ),
        positive_label=positive,
        negative_label=negative,
        y_max=y_max,
    )
    for b in group.bins:
        x, width = _x(b.low), round(PLOT_WIDTH / len(group.bins), 1)
        span = f"{b.low:.2f}–{b.high:.2f}"
        for count, css_class, label in (
            (b.negatives, "bar-negative", negative),
            (b.positives, "bar-positive", positive),
        ):
            if count:
                height = round(count / y_max * PLOT_HEIGHT, 1)
                chart.bars.append(
                    Bar(css_class, x, TOP + PLOT_HEIGHT - height, width, height,
                        f"{span}: {count} {label}")
                )  # fmt: skip
    chart.markers.append(
        Marker("line-current", _x(group.current), f"in force {group.current:.3f}", -4)
    )
    if suggested is not None:
        chart.markers.append(
            Marker("line-suggested", _x(suggested), f"suggested {suggested:.3f}", 4)
        )
    chart.x_ticks = [Tick(_x(v / 4), f"{v / 4:g}") for v in range(5)]
    return chart
