"""/outdoors, its buttons, keeping a location for UV, and the UV on reminder messages.

`UvService` is the part the dispatcher uses: `decorate` adds the day's UV to a morning
sunscreen reminder and writes reapply reminders, from the cache only (it never waits on
the network while claims are held); `prefetch`, run every few minutes off the dispatch
path, fills the cache for everyone with such a reminder due soon.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from sqlalchemy import Engine
from telegram import InlineKeyboardMarkup, Message, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from miliabot_tg import outdoors, repo, texts
from miliabot_tg import outdoors_texts as ot
from miliabot_tg.db import db_read
from miliabot_tg.handlers import Context, Deps, show_in_place
from miliabot_tg.outdoors import FALLBACK_END, MORNING_ENDS, REAPPLY, Place
from miliabot_tg.reminders.texts import DueReminder
from miliabot_tg.schedule import QuietHours
from miliabot_tg.uv import STALE_OK, DayUv, Forecast, UvClient, reapply_times, rounded, uv_line

log = logging.getLogger(__name__)

# Forecasts are fetched this far ahead of the reminders that show them.
PREFETCH_AHEAD: Final = timedelta(minutes=30)
PREFETCH_EVERY: Final = timedelta(minutes=10)
# A reply waits at most this long for a forecast it has not cached, then does without.
REPLY_DEADLINE: Final = 2.0
PARALLEL_FETCHES: Final = 4


def day_of(forecast: Forecast | None, when: datetime) -> DayUv | None:
    """The forecast's day that contains `when` (in the place's own time)."""
    if forecast is None:
        return None
    return forecast.day(when.astimezone(timezone(forecast.offset)).date())


class UvService:
    """The UV forecasts the bot has at hand, and how reminders show them."""

    def __init__(self, *, client: UvClient, engine: Engine, clock: Callable[[], datetime]):
        self.client = client
        self.engine = engine
        self.clock = clock
        # Who needs which place's forecast soon; filled by `prefetch`, read by `decorate`.
        self._places: dict[int, Place] = {}

    def start(self, job_queue: Any) -> None:
        """Prefetch now and every few minutes."""
        job_queue.run_repeating(
            self._job, interval=PREFETCH_EVERY.total_seconds(), first=0.0, name="uv-prefetch"
        )

    async def _job(self, _context: Context) -> None:
        try:
            await self.prefetch()
        except Exception:  # the database is down, say: reminders go out without UV
            log.warning("UV prefetch failed; trying again later", exc_info=True)

    async def prefetch(self) -> int:
        """Fetch forecasts for every place with a sunscreen or reapply reminder due soon."""
        now = self.clock()
        places = await db_read(
            self.engine,
            lambda s: outdoors.places_due_soon(session=s, now=now, within=PREFETCH_AHEAD),
        )
        # Replaced, not added to: a place deleted since, or no longer needed, is dropped.
        self._places = places
        keys = {rounded(p.latitude, p.longitude) for p in places.values()}
        limit = asyncio.Semaphore(PARALLEL_FETCHES)

        async def fetch(key: tuple[float, float]) -> None:
            async with limit:
                await self.client.forecast(*key)

        await asyncio.gather(*(fetch(key) for key in keys))
        return len(keys)

    def remember(self, user_id: int, place: Place | None) -> None:
        """Note (or forget) a user's place, known from a reply, for their next reminders."""
        if place is None:
            self._places.pop(user_id, None)
        else:
            self._places[user_id] = place

    def _cached_day(self, user_id: int, when: datetime) -> tuple[Place | None, DayUv | None]:
        place = self._places.get(user_id)
        if place is None:
            return None, None
        forecast = self.client.cached(place.latitude, place.longitude, max_age=STALE_OK)
        return place, day_of(forecast, when)

    def decorate(
        self,
        user_id: int,
        items: Sequence[DueReminder],
        text: str,
        keyboard: InlineKeyboardMarkup,
    ) -> tuple[str, InlineKeyboardMarkup]:
        """Add the UV to a reminder message about to be sent; cache only, never waits.

        A morning sunscreen reminder gets today's peak and strongest hours and an "I'm
        outside today" button, when a forecast is at hand; otherwise it stays as it was.
        A reapply reminder (outdoor mode) gets its own wording and buttons.
        """
        if not items:
            return text, keyboard
        rows = [list(row) for row in keyboard.inline_keyboard]
        if len(items) == 1 and items[0].kind == REAPPLY:
            return self._reapply(user_id, items[0], rows)
        if any(item.kind == REAPPLY for item in items):
            return text, InlineKeyboardMarkup([*rows, list(ot.OUTDOOR_ROW)])
        morning = [
            item
            for item in items
            if item.kind == "sunscreen" and item.scheduled_local.time() < MORNING_ENDS
        ]
        if not morning:
            return text, keyboard
        place, day = self._cached_day(user_id, morning[0].scheduled_local)
        if place is None or day is None:
            return text, keyboard
        heading, _, rest = text.partition("\n")
        line = ot.morning_line(uv_line(day), place)
        text = f"{heading}\n{line}" + (f"\n{rest}" if rest else "")
        return text, InlineKeyboardMarkup([*rows, [ot.OUTSIDE_BUTTON]])

    def _reapply(
        self, user_id: int, item: DueReminder, rows: list[list[Any]]
    ) -> tuple[str, InlineKeyboardMarkup]:
        place, day = self._cached_day(user_id, item.scheduled_local)
        at = item.scheduled_local
        local_end = at.replace(hour=FALLBACK_END.hour, minute=FALLBACK_END.minute, second=0)
        last = not reapply_times(at, day=day, local_end=local_end)
        text = ot.reapply_message(
            uv_now=day.uv_at(at) if day is not None else None,
            last=last,
            fallback=day is None,
            place=place,
        )
        done = rows[0] if rows else []
        return text, InlineKeyboardMarkup([done, list(ot.OUTDOOR_ROW)])


class OutdoorHandlers:
    """/outdoors, its buttons, and the question whether to keep a shared location."""

    def __init__(self, deps: Deps, service: UvService) -> None:
        self.deps = deps
        self.service = service

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /outdoors and the buttons; before the catch-alls for commands and buttons."""
        new = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("outdoors", self.outdoors_command, filters=new))
        app.add_handler(CallbackQueryHandler(self.outdoor_button, pattern=rf"^{ot.CB_OUT}"))
        app.add_handler(CallbackQueryHandler(self.location_button, pattern=rf"^{ot.CB_UV}"))

    async def outdoors_command(self, update: Update, context: Context) -> None:
        """Turn outdoor mode on (or say it is on), with the day's reapply plan."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        text, keyboard = await self._turn_on(user.id)
        await message.reply_text(text, reply_markup=keyboard)

    async def outdoor_button(self, update: Update, context: Context) -> None:
        """ "I'm outside today", "I'm inside now" and "I'm swimming"."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        now = self.deps.clock()
        if query.data == ot.CB_OUT_ON:
            await query.answer()
            text, keyboard = await self._turn_on(user.id)
            await context.bot.send_message(user.id, text, reply_markup=keyboard)
        elif query.data == ot.CB_OUT_IN:
            stopped = await self.deps.write(
                user.id, lambda s: outdoors.stop_outdoors(session=s, user_id=user.id, now=now)
            )
            await query.answer()
            await context.bot.send_message(
                user.id, ot.OUTDOORS_OFF if stopped else ot.OUTDOORS_WAS_OFF
            )
        elif query.data == ot.CB_OUT_SWIM:
            at = await self.deps.write(
                user.id, lambda s: outdoors.add_swim(session=s, user_id=user.id, now=now)
            )
            if at is None:
                await query.answer(ot.NOT_STARTED, show_alert=True)
                return
            self.deps.wake(at)
            zone = await self._zone(user.id)
            await query.answer()
            await context.bot.send_message(user.id, ot.swim_planned(at, zone))
        else:
            await query.answer(texts.STALE_BUTTON)

    async def location_button(self, update: Update, context: Context) -> None:
        """Keep the shared location for UV forecasts, or not."""
        query, user = update.callback_query, update.effective_user
        if query is None or query.data is None or user is None:
            return
        if query.data == ot.CB_UV_NO:
            await query.answer()
            await show_in_place(update, ot.LOCATION_NOT_KEPT, None)
            return
        coordinates = _coordinates(query.data.removeprefix(ot.CB_UV_KEEP))
        if not query.data.startswith(ot.CB_UV_KEEP) or coordinates is None:
            await query.answer(texts.STALE_BUTTON, show_alert=True)
            return
        now = self.deps.clock()
        try:
            lat, lon = await self.deps.write(
                user.id,
                lambda s: outdoors.save_location(
                    session=s,
                    user_id=user.id,
                    latitude=coordinates[0],
                    longitude=coordinates[1],
                    now=now,
                ),
            )
        except LookupError:
            await query.answer(ot.NOT_STARTED, show_alert=True)
            return
        self.service.remember(user.id, Place(lat, lon, None))
        await query.answer()
        await show_in_place(update, ot.location_kept(lat, lon), None)

    async def _zone(self, user_id: int) -> Any:
        default = self.deps.settings.default_tz
        user = await self.deps.read(user_id, lambda s: repo.get_user(session=s, user_id=user_id))
        return repo.user_zone(user, default)

    async def _turn_on(self, user_id: int) -> tuple[str, InlineKeyboardMarkup | None]:
        """Plan today's reapply reminders from the UV forecast (or every 2 h until 16:00)."""
        now, default = self.deps.clock(), self.deps.settings.default_tz

        def look(session: Any) -> tuple[Any, Place | None, list[datetime], QuietHours | None]:
            return (
                repo.get_user(session=session, user_id=user_id),
                outdoors.user_place(session=session, user_id=user_id),
                outdoors.upcoming_reapply(session=session, user_id=user_id),
                repo.quiet_hours(repo.get_preferences(session=session, user_id=user_id)),
            )

        user, place, upcoming, quiet = await self.deps.read(user_id, look)
        if user is None:
            return ot.NOT_STARTED, None
        tz = repo.user_zone(user, default)
        if upcoming:
            return ot.outdoors_already(upcoming, tz)
        self.service.remember(user_id, place)
        forecast = None
        if place is not None:
            forecast = await self.service.client.forecast(
                place.latitude, place.longitude, deadline=REPLY_DEADLINE
            )
        day = day_of(forecast, now)
        local_now = now.astimezone(tz)
        local_end = local_now.replace(
            hour=FALLBACK_END.hour, minute=FALLBACK_END.minute, second=0, microsecond=0
        )
        times = reapply_times(now, day=day, local_end=local_end)
        # A reminder in quiet hours would only wake them: those times are left out.
        times = [t for t in times if quiet is None or not quiet.contains(t.astimezone(tz).time())]
        if not times:
            if day is None:
                return ot.TOO_LATE, None
            return ot.no_need(uv_line(day), place), None
        stored = await self.deps.write(
            user_id,
            lambda s: outdoors.start_outdoors(session=s, user_id=user_id, times=times, now=now),
        )
        if not stored:
            return ot.NOT_STARTED, None
        self.deps.wake(min(times))
        ends = ot.ends_text(
            fallback=day is None,
            sunset=day.sunset if day is not None else None,
            last=times[-1],
            tz=tz,
        )
        return ot.outdoors_on(times, tz, place=place, ends=ends, fallback=day is None)


async def ask_to_keep(deps: Deps, message: Message, user_id: int, lat: float, lon: float) -> None:
    """After a shared location set the timezone: ask whether to keep it for UV forecasts.

    Nothing is asked when that (rounded) location is kept already.
    """
    try:
        key = rounded(lat, lon)
    except ValueError:
        return
    kept = await deps.read(user_id, lambda s: outdoors.get_location(session=s, user_id=user_id))
    if kept is not None and (kept.latitude, kept.longitude) == key:
        return
    text, keyboard = ot.consent_question(*key)
    await message.reply_text(text, reply_markup=keyboard)


def _coordinates(data: str) -> tuple[float, float] | None:
    """ "38.7:-9.1" from a button, or None when it is not a location."""
    parts = data.split(":")
    if len(parts) != 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
        return rounded(lat, lon)
    except ValueError:
        return None
