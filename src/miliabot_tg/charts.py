"""The progress picture: a calendar of the last 12 weeks per reminder, as PNG bytes.

matplotlib is imported inside `render` only, so neither start-up time nor memory grows for
a bot that never draws a chart. Rendering is CPU work: `render_png` runs it on a worker
thread, at most `MAX_RENDERS` at a time per event loop, so a burst of /progress or a
Sunday evening of weekly summaries never fills every worker thread (database work shares
them) nor the memory of many figures at once.
"""

import asyncio
import io
import weakref
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from miliabot_tg.progress import CHART_WEEKS, Mark, Progress, ReminderProgress

MAX_RENDERS: Final = 2
# Up to this many reminders get a calendar each; the caption names the rest.
MAX_PANELS: Final = 6
SQUARE: Final = 0.3  # inches a day's square takes, gap included
DPI: Final = 100

# A mid-tone card: neither a glaring block in a dark theme nor lost in a light one.
CARD: Final = "#46505c"
INK: Final = "#f4f6f8"
SOFT_INK: Final = "#c9d0d8"
# Okabe–Ito colours, told apart with every common colour-vision deficiency.
COLOURS: Final[dict[Mark, str]] = {
    Mark.DONE: "#009e73",  # bluish green
    Mark.SNOOZED_DONE: "#56b4e9",  # sky blue
    Mark.SKIPPED: "#f0e442",  # yellow
    Mark.MISSED: "#d55e00",  # vermilion
    Mark.OPEN: "#6b7684",  # due today, not answered yet: as "nothing" with an outline
    Mark.NOTHING: "#6b7684",
}
LEGEND: Final = (
    (Mark.DONE, "done"),
    (Mark.SNOOZED_DONE, "snoozed, then done"),
    (Mark.SKIPPED, "skipped"),
    (Mark.MISSED, "missed"),
    (Mark.NOTHING, "nothing due"),
)
_FUTURE: Final = -1  # days after today: not drawn
_ORDER: Final = tuple(COLOURS)
_WEEKDAYS: Final = ("Mon", "", "Wed", "", "Fri", "", "Sun")


@dataclass(frozen=True)
class Panel:
    """One reminder's calendar: 7 rows (Monday first) by `CHART_WEEKS` columns."""

    title: str
    cells: tuple[tuple[int, ...], ...]  # index into _ORDER, or _FUTURE
    today: tuple[int, int]  # (row, column) of today


def first_monday(today: date) -> date:
    """The Monday that starts the chart: the last column is the week holding `today`."""
    return today - timedelta(days=today.weekday(), weeks=CHART_WEEKS - 1)


def panel(reminder: ReminderProgress, today: date, title: str) -> Panel:
    """Lay one reminder's days out as a calendar."""
    start = first_monday(today)
    rows = []
    for weekday in range(7):
        row = []
        for week in range(CHART_WEEKS):
            day = start + timedelta(weeks=week, days=weekday)
            mark = reminder.days.get(day, Mark.NOTHING)
            row.append(_FUTURE if day > today else _ORDER.index(mark))
        rows.append(tuple(row))
    return Panel(title, tuple(rows), (today.weekday(), CHART_WEEKS - 1))


def week_labels(today: date) -> list[str]:
    """The Monday of each column, e.g. "7 Sep"; every other one, so they stay legible."""
    start = first_monday(today)
    labels = []
    for week in range(CHART_WEEKS):
        monday = start + timedelta(weeks=week)
        keep = (CHART_WEEKS - 1 - week) % 2 == 0
        labels.append(f"{monday.day} {monday:%b}" if keep else "")
    return labels


def panels(progress: Progress, titles: list[str]) -> list[Panel]:
    """The calendars to draw, one per reminder, at most MAX_PANELS."""
    return [
        panel(reminder, progress.today, title)
        for reminder, title in zip(progress.reminders[:MAX_PANELS], titles, strict=False)
    ]


def render(progress: Progress, titles: list[str], heading: str) -> bytes:
    """Draw the calendars (titles: one per reminder, plain text) and return a PNG."""
    # Imported here, not at module level: see the module's docstring.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    drawn = panels(progress, titles)
    columns = 1 if len(drawn) <= 1 else 2
    grid_rows = max(1, -(-len(drawn) // columns))
    # Everything is placed in inches from the bottom left, on the figure itself: no axes
    # (building one, with ticks and grids never shown, costs more than all the drawing).
    panel_w, panel_h, pad_w, pad_h = CHART_WEEKS * SQUARE, 7 * SQUARE, 0.45, 0.62
    top, bottom = 0.55, 0.5 if columns == 2 else 0.72
    width = columns * (panel_w + pad_w) + 0.2
    height = top + grid_rows * (panel_h + pad_h) + bottom
    figure = Figure(figsize=(width, height), dpi=DPI, facecolor=CARD)
    FigureCanvasAgg(figure)
    inches = figure.dpi_scale_trans

    def text(x: float, y: float, words: str, **style: Any) -> None:
        figure.text(x, y, words, transform=inches, parse_math=False, **style)

    text(
        width / 2,
        height - 0.3,
        heading,
        color=INK,
        fontsize=15,
        fontweight="bold",
        ha="center",
        va="center",
    )
    labels = week_labels(progress.today)
    squares: list[list[tuple[float, float]]] = []
    colours: list[str] = []
    gap = 0.07
    for index, item in enumerate(drawn):
        row, column = divmod(index, columns)
        left = 0.1 + pad_w + column * (panel_w + pad_w)
        lower = height - top - (row + 1) * (panel_h + pad_h) + 0.3

        def corner(
            day: int, week: int, left: float = left, lower: float = lower
        ) -> tuple[float, float]:
            return left + week * SQUARE, lower + (6 - day) * SQUARE  # Monday on top

        for day, cells in enumerate(item.cells):
            for week, cell in enumerate(cells):
                if cell == _FUTURE:
                    continue
                x, y = corner(day, week)
                x, y = x + gap / 2, y + gap / 2
                side = SQUARE - gap
                squares.append([(x, y), (x + side, y), (x + side, y + side), (x, y + side)])
                colours.append(COLOURS[_ORDER[cell]])
        x, y = corner(*item.today)
        figure.patches.append(
            Rectangle(
                (x + gap / 4, y + gap / 4),
                SQUARE - gap / 2,
                SQUARE - gap / 2,
                fill=False,
                edgecolor=INK,
                linewidth=1.6,
                transform=inches,
                figure=figure,
            )
        )
        text(left, lower + panel_h + 0.08, item.title, color=INK, fontsize=11.5, va="bottom")
        # Weekday names at the left of each row of panels, week labels under each
        # column's lowest panel: every text costs render time, and they read the same.
        if column == 0:
            for day, name in enumerate(_WEEKDAYS):
                if name:
                    x, y = corner(day, 0)
                    text(
                        x - 0.06,
                        y + SQUARE / 2,
                        name,
                        color=SOFT_INK,
                        fontsize=7.5,
                        ha="right",
                        va="center",
                    )
        if index + columns >= len(drawn):
            for week, name in enumerate(labels):
                if name:
                    x, y = corner(6, week)
                    text(
                        x + SQUARE / 2,
                        y - 0.06,
                        name,
                        color=SOFT_INK,
                        fontsize=7.5,
                        ha="center",
                        va="top",
                    )
    figure.add_artist(
        PolyCollection(squares, facecolors=colours, edgecolors="none", transform=inches)
    )
    # The legend, drawn by hand: matplotlib's own legend costs a third of a render.
    # Each entry is as wide as its words (about 0.075 inch a letter at this size).
    per_row = len(LEGEND) if columns == 2 else 3
    for line in range(-(-len(LEGEND) // per_row)):
        entries = LEGEND[line * per_row : (line + 1) * per_row]
        widths = [0.5 + 0.075 * len(words) for _, words in entries]
        x = (width - sum(widths)) / 2
        y = bottom - 0.28 - line * 0.27
        for (mark, words), entry_width in zip(entries, widths, strict=True):
            figure.patches.append(
                Rectangle(
                    (x, y - 0.07),
                    0.14,
                    0.14,
                    facecolor=COLOURS[mark],
                    edgecolor="none",
                    transform=inches,
                    figure=figure,
                )
            )
            text(x + 0.2, y, words, color=INK, fontsize=9, va="center")
            x += entry_width
    buffer = io.BytesIO()
    # Light compression: a fraction of the default's time for a slightly larger file.
    figure.savefig(buffer, format="png", facecolor=CARD, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


_LIMITS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)


def _limit() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    limit = _LIMITS.get(loop)
    if limit is None:
        limit = _LIMITS[loop] = asyncio.Semaphore(MAX_RENDERS)
    return limit


async def render_png(progress: Progress, titles: list[str], heading: str) -> bytes:
    """Render off the event loop, at most MAX_RENDERS at once; others wait their turn."""
    async with _limit():
        return await asyncio.to_thread(render, progress, titles, heading)
