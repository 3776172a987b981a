"""Charts as inline SVG, drawn on the server: bars over time, lines, sparklines, histograms, timelines.

Every chart is one ``<svg class="chart ...">`` string with a ``viewBox``, so it scales with the
page; colours come from the stylesheet's classes (``s0``..``s7`` for series, ``state-open`` and
friends for breaker states), and every mark carries a ``<title>`` that the browser shows on
hover. Text is escaped here: callers pass plain strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Final

W: Final = 760.0
WIDE: Final = 1280.0  # a chart across the whole page: the same text size at twice the width
H: Final = 200.0
_LEFT, _RIGHT, _TOP, _BOTTOM = 64.0, 12.0, 12.0, 26.0
SERIES: Final = 8  # colour classes s0..s7 in the stylesheet
_TIME_FORMATS: Final = {1.0: "%H:%M:%S", 60.0: "%H:%M", 3600.0: "%m-%d %H:00", 86400.0: "%Y-%m-%d"}

Fmt = Callable[[float], str]


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def time_label(ts: float, size: float) -> str:
    """A bucket start as the chart's axis writes it (UTC), at the bucket's precision."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime(_TIME_FORMATS.get(size, "%m-%d %H:%M"))


def count(value: float) -> str:
    """A count on an axis: whole numbers plain, a quarter step with its decimal."""
    return f"{value:,.1f}".removesuffix(".0")


def _nice_max(value: float) -> float:
    """A round number at or above ``value`` for the top of an axis."""
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    while step > value:
        step /= 10
    for factor in (1, 2, 2.5, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def _svg(body: str, label: str, cls: str = "", height: float = H, width: float = W) -> str:
    return (
        f'<svg class="chart {cls}" viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{escape(label)}"'
        f' preserveAspectRatio="xMidYMid meet">{body}</svg>'
    )


def _y_axis(top: float, fmt: Fmt, width: float, height: float = H) -> str:
    plot_h = height - _TOP - _BOTTOM
    parts = []
    for k in range(5):
        y = _TOP + plot_h * (1 - k / 4)
        parts.append(f'<line class="gridline" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{_num(y)}" y2="{_num(y)}"/>')
        parts.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{_num(y + 4)}" text-anchor="end">{escape(fmt(top * k / 4))}</text>'
        )
    return "".join(parts)


def _x_labels(labels: Sequence[str], xs: Sequence[float], height: float = H) -> str:
    if not labels:
        return ""
    every = max(1, len(labels) // 6)
    return "".join(
        f'<text class="tick" x="{_num(x)}" y="{_num(height - 8)}" text-anchor="middle">{escape(label)}</text>'
        for i, (label, x) in enumerate(zip(labels, xs, strict=True))
        if i % every == 0
    )


def empty(label: str, message: str = "no records in this window", width: float = W) -> str:
    """A chart frame saying there is nothing to draw."""
    body = f'<text class="empty" x="{width / 2:g}" y="{H / 2:g}" text-anchor="middle">{escape(message)}</text>'
    return _svg(body, label, "chart-empty", width=width)


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    label: str,
    fmt: Fmt,
    series: int = 0,
    width: float = W,
    tick: Fmt | None = None,
) -> str:
    """One bar per bucket, ``values[i]`` over ``labels[i]``, y axis from 0 to a round maximum."""
    if not values:
        return empty(label, width=width)
    top = _nice_max(max(values))
    plot_w, plot_h = width - _LEFT - _RIGHT, H - _TOP - _BOTTOM
    step = plot_w / len(values)
    gap = min(2.0, step * 0.2)
    marks, centres = [], []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / top
        x = _LEFT + i * step
        centres.append(x + step / 2)
        marks.append(
            f'<rect class="bar s{series % SERIES}" x="{_num(x + gap / 2)}" y="{_num(_TOP + plot_h - h)}"'
            f' width="{_num(max(step - gap, 0.5))}" height="{_num(h)}">'
            f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>"
        )
    return _svg(_y_axis(top, tick or fmt, width) + "".join(marks) + _x_labels(labels, centres), label, width=width)


def lines(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    label: str,
    fmt: Fmt,
    top: float | None = None,
    limits: Mapping[str, float] | None = None,
    width: float = W,
    tick: Fmt | None = None,
) -> str:
    """One line per named series over the same buckets (None leaves a gap); ``limits`` draws dashed caps."""
    present = [v for values in series.values() for v in values if v is not None]
    if not labels or not present:
        return empty(label, width=width)
    ceiling = top or _nice_max(max([*present, *(limits or {}).values()]))
    inset = 24.0  # the first and last points' labels stay inside the frame
    plot_w, plot_h = width - _LEFT - _RIGHT - 2 * inset, H - _TOP - _BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    xs = [_LEFT + inset + i * step for i in range(len(labels))] if len(labels) > 1 else [_LEFT + inset + plot_w / 2]

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - min(value, ceiling) / ceiling)

    marks = []
    for k, (name, values) in enumerate(series.items()):
        cls = f"s{k % SERIES}"
        points = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        path = " ".join(f"{_num(x)},{_num(y(v))}" for x, v in points)
        marks.append(f'<polyline class="line {cls}" points="{path}"><title>{escape(name)}</title></polyline>')
        marks.extend(
            f'<circle class="dot {cls}" cx="{_num(x)}" cy="{_num(y(v))}" r="2.5">'
            f"<title>{escape(name)}: {escape(fmt(v))}</title></circle>"
            for x, v in points
        )
        if limits and name in limits:
            ly = _num(y(limits[name]))
            marks.append(
                f'<line class="limit {cls}" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{ly}" y2="{ly}">'
                f"<title>{escape(name)} budget: {escape(fmt(limits[name]))}</title></line>"
            )
    return _svg(_y_axis(ceiling, tick or fmt, width) + "".join(marks) + _x_labels(labels, xs), label, width=width)


def sparkline(values: Sequence[float], *, label: str) -> str:
    """A small line of ``values`` with no axes, for a table cell."""
    width, height = 120.0, 28.0
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(len(values) - 1, 1)
    path = " ".join(f"{_num(i * step)},{_num(height - 2 - (height - 4) * v / top)}" for i, v in enumerate(values))
    return (
        f'<svg class="spark" viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{escape(label)}">'
        f'<polyline class="line s0" points="{path}"><title>{escape(label)}</title></polyline></svg>'
    )


def histogram(counts: Sequence[int], edges: Sequence[float], *, label: str, series: int = 0) -> str:
    """Bars of ``counts`` over latency bins whose upper edges are ``edges`` (the last bin is open)."""
    names = [f"< {e:g} ms" for e in edges] + [f"≥ {edges[-1]:g} ms"]
    short = [f"<{e:g}" for e in edges] + [f"≥{edges[-1]:g}"]
    if not any(counts):
        return empty(label)
    top = _nice_max(max(counts))
    plot_w, plot_h = W - _LEFT - _RIGHT, H - _TOP - _BOTTOM
    step = plot_w / len(counts)
    marks = []
    for i, n in enumerate(counts):
        h = plot_h * n / top
        marks.append(
            f'<rect class="bar s{series % SERIES}" x="{_num(_LEFT + i * step + 3)}" y="{_num(_TOP + plot_h - h)}"'
            f' width="{_num(step - 6)}" height="{_num(h)}"><title>{escape(names[i])}: {n}</title></rect>'
        )
    centres = [_LEFT + i * step + step / 2 for i in range(len(counts))]
    every_label = "".join(
        f'<text class="tick" x="{_num(x)}" y="{_num(H - 8)}" text-anchor="middle">{escape(s)}</text>'
        for s, x in zip(short, centres, strict=True)
    )
    return _svg(_y_axis(top, count, W) + "".join(marks) + every_label, label, "histogram")


class Span:
    """One mark on a timeline lane: ``start`` to ``end`` (the axis's units), a CSS class, a tooltip."""

    __slots__ = ("cls", "end", "start", "text")

    def __init__(self, start: float, end: float, cls: str, text: str) -> None:
        self.start, self.end, self.cls, self.text = start, end, cls, text


def timeline(
    lanes: Mapping[str, Sequence[Span]],
    lo: float,
    hi: float,
    *,
    label: str,
    tick: Fmt,
    marks: Sequence[float] = (),
    width: float = W,
) -> str:
    """Horizontal lanes of spans over ``lo``..``hi``, lane names on the left; ``marks`` draws event ticks."""
    if not lanes:
        return empty(label, width=width)
    lane_h, left = 26.0, 270.0
    height = _TOP + lane_h * len(lanes) + _BOTTOM
    span_w = max(hi - lo, 1e-9)
    plot_w = width - left - _RIGHT - 36.0  # room for the last tick's label

    def x(value: float) -> float:
        return left + plot_w * (min(max(value, lo), hi) - lo) / span_w

    parts = []
    for row, (name, spans) in enumerate(lanes.items()):
        y = _TOP + row * lane_h
        parts.append(
            f'<text class="lane" x="{left - 8}" y="{_num(y + lane_h / 2 + 4)}" text-anchor="end">{escape(name)}</text>'
        )
        parts.append(
            f'<rect class="lane-bg" x="{left}" y="{_num(y + 3)}" width="{_num(plot_w)}" height="{lane_h - 6:g}"/>'
        )
        for s in spans:
            x0, x1 = x(s.start), x(s.end)
            parts.append(
                f'<rect class="span {escape(s.cls)}" x="{_num(x0)}" y="{_num(y + 5)}" width="{_num(max(x1 - x0, 2.0))}"'
                f' height="{lane_h - 10:g}" rx="2"><title>{escape(s.text)}</title></rect>'
            )
    bottom = _TOP + lane_h * len(lanes)
    for m in marks:
        parts.append(f'<line class="event" x1="{_num(x(m))}" x2="{_num(x(m))}" y1="{_TOP}" y2="{_num(bottom)}"/>')
    for k in range(5):
        value = lo + span_w * k / 4
        parts.append(
            f'<text class="tick" x="{_num(x(value))}" y="{_num(height - 8)}" text-anchor="middle">'
            f"{escape(tick(value))}</text>"
        )
    return _svg("".join(parts), label, "timeline", height, width)
