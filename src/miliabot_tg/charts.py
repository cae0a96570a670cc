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
from typing import Final

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
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    drawn = panels(progress, titles)
    columns = 1 if len(drawn) <= 1 else 2
    grid_rows = max(1, -(-len(drawn) // columns))
    # Inches: each panel is 12 by 7 squares of SQUARE, with room for its title and labels.
    panel_w, panel_h, pad_w, pad_h = CHART_WEEKS * SQUARE, 7 * SQUARE, 0.45, 0.62
    top, bottom = 0.55, 0.5 if columns == 2 else 0.72
    width = columns * (panel_w + pad_w) + 0.2
    height = top + grid_rows * (panel_h + pad_h) + bottom
    figure = Figure(figsize=(width, height), dpi=DPI, facecolor=CARD)
    FigureCanvasAgg(figure)
    figure.text(
        0.5,
        1 - 0.3 / height,
        heading,
        color=INK,
        fontsize=15,
        fontweight="bold",
        ha="center",
        va="center",
    )
    colours = ListedColormap([COLOURS[m] for m in _ORDER])
    labels = week_labels(progress.today)
    for index, item in enumerate(drawn):
        row, column = divmod(index, columns)
        left = 0.1 + pad_w + column * (panel_w + pad_w)
        lower = height - top - (row + 1) * (panel_h + pad_h) + 0.3
        axes = figure.add_axes((left / width, lower / height, panel_w / width, panel_h / height))
        axes.set_axis_off()
        values = np.ma.masked_equal(np.array(item.cells), _FUTURE)
        axes.pcolormesh(
            values,
            cmap=colours,
            vmin=-0.5,
            vmax=len(_ORDER) - 0.5,
            edgecolors=CARD,
            linewidth=2.2,
        )
        today_row, today_column = item.today
        axes.add_patch(
            Rectangle((today_column, today_row), 1, 1, fill=False, edgecolor=INK, linewidth=1.6)
        )
        axes.set_xlim(0, CHART_WEEKS)
        axes.set_ylim(7, 0)  # Monday on top
        # Texts belong to the figure, placed in the panel's coordinates: an axes' own texts
        # are each clipped to it, and setting that up costs more than drawing them.
        at = axes.transData
        figure.text(
            0,
            -0.35,
            item.title,
            color=INK,
            fontsize=11.5,
            va="bottom",
            parse_math=False,
            transform=at,
        )
        # Weekday names at the left of each row of panels, week labels under each
        # column's lowest panel: every text costs render time, and they read the same.
        if column == 0:
            for day, name in enumerate(_WEEKDAYS):
                if name:
                    figure.text(
                        -0.2,
                        day + 0.5,
                        name,
                        color=SOFT_INK,
                        fontsize=7.5,
                        ha="right",
                        va="center",
                        transform=at,
                    )
        if index + columns >= len(drawn):
            for week, name in enumerate(labels):
                if name:
                    figure.text(
                        week + 0.5,
                        7.25,
                        name,
                        color=SOFT_INK,
                        fontsize=7.5,
                        ha="center",
                        va="top",
                        transform=at,
                    )
    # The legend, drawn by hand: matplotlib's own legend costs a third of a render.
    # Each entry is as wide as its words (about 0.075 inch a letter at this size).
    per_row = len(LEGEND) if columns == 2 else 3
    for line in range(-(-len(LEGEND) // per_row)):
        entries = LEGEND[line * per_row : (line + 1) * per_row]
        widths = [0.5 + 0.075 * len(text) for _, text in entries]
        x = (width - sum(widths)) / 2
        y = bottom - 0.28 - line * 0.27
        for (mark, text), entry_width in zip(entries, widths, strict=True):
            figure.patches.append(
                Rectangle(
                    (x / width, (y - 0.07) / height),
                    0.14 / width,
                    0.14 / height,
                    facecolor=COLOURS[mark],
                    edgecolor="none",
                    transform=figure.transFigure,
                    figure=figure,
                )
            )
            figure.text((x + 0.2) / width, y / height, text, color=INK, fontsize=9, va="center")
            x += entry_width
    buffer = io.BytesIO()
    # Light compression: a third of the time of the default for a slightly larger file.
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
