"""/timezone, a shared location, and the question about an assumed zone."""

from typing import Final

from telegram import Message, ReplyKeyboardRemove, Update

from miliabot_tg import repo
from miliabot_tg.handlers import Context, show_in_place
from miliabot_tg.outdoors_handlers import ask_to_keep
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.common import (
    Pending,
    ReminderBase,
    chat_of,
    command_text,
    message_of,
    reply,
    send,
)
from miliabot_tg.timezones import (
    ResolvedZone,
    TimezoneError,
    resolve_location,
    resolve_timezone,
    zone_from_key,
)

MAX_ZONE_TEXT: Final = 100


class ZoneHandlers(ReminderBase):
    """Choosing the timezone reminders are planned in."""

    async def timezone(self, update: Update, context: Context) -> None:
        """Set the timezone from a name, city or offset; without one, explain and offer GPS."""
        message, user = message_of(update), update.effective_user
        if user is None:
            return
        text = command_text(message)
        if text:
            await self._set_zone_from_text(message, user.id, text)
            return
        zone = await self._user_zone(user.id)
        self._wait(user.id, Pending("timezone", self.deps.clock()))
        local_now = self.deps.clock().astimezone(zone.tz)
        await reply(message, rt.timezone_prompt(zone.key, local_now, assumed=zone.assumed))

    async def location(self, update: Update, context: Context) -> None:
        """Set the timezone from a shared location (looked up offline, never stored)."""
        message, user = message_of(update), update.effective_user
        if user is None or message.location is None:
            return
        self._pending.pop(user.id, None)
        try:
            zone = resolve_location(message.location.latitude, message.location.longitude)
        except ValueError:
            zone = None
        if zone is None:
            await message.reply_text(rt.LOCATION_UNKNOWN, reply_markup=ReplyKeyboardRemove())
            return
        await message.reply_text(
            await self._apply_zone(user.id, zone), reply_markup=ReplyKeyboardRemove()
        )
        # Ask whether to keep the location for UV forecasts (stored only on a yes).
        await ask_to_keep(
            self.deps, message, user.id, message.location.latitude, message.location.longitude
        )

    async def _set_zone_from_text(self, message: Message, user_id: int, text: str) -> None:
        if len(text) > MAX_ZONE_TEXT:
            await message.reply_text(rt.TIMEZONE_TOO_LONG)
            return
        try:
            zone = resolve_timezone(text)
        except TimezoneError as exc:
            suggestions = [(name, key) for name in exc.suggestions if (key := _key_of(name))]
            await reply(message, rt.timezone_unknown(exc.message, suggestions))
            return
        await message.reply_text(
            await self._apply_zone(user_id, zone), reply_markup=ReplyKeyboardRemove()
        )

    async def _apply_zone(self, user_id: int, zone: ResolvedZone) -> str:
        """Store the zone, re-plan every reminder, and describe the result."""
        now, default_key = self.deps.clock(), self.deps.settings.default_tz
        reminders = await self.deps.write(
            user_id,
            lambda s: repo.set_timezone(
                session=s, user_id=user_id, key=zone.key, now=now, default_key=default_key
            ),
        )
        due = [r.next_due_at for r in reminders if r.next_due_at is not None]
        if due:
            self.deps.wake(min(due))
        return rt.timezone_set(
            name=zone.name,
            key=zone.key,
            local_now=now.astimezone(zone.tz),
            notes=zone.notes,
            rescheduled=len(due),
        )

    async def zone_button(self, update: Update, context: Context) -> None:
        """Keep the assumed zone, pick a suggested one, or ask for a location."""
        query, user = update.callback_query, update.effective_user
        if query is None or query.data is None or user is None:
            return
        if query.data == rt.CB_ZONE_LOCATION:
            zone = await self._user_zone(user.id)
            self._wait(user.id, Pending("timezone", self.deps.clock()))
            await query.answer()
            local_now = self.deps.clock().astimezone(zone.tz)
            await send(
                chat_of(update), rt.timezone_prompt(zone.key, local_now, assumed=zone.assumed)
            )
            return
        keep = query.data.startswith(rt.CB_ZONE_KEEP)
        key = query.data.removeprefix(rt.CB_ZONE_KEEP if keep else rt.CB_ZONE_SET)
        resolved = _zone_for_key(key)
        if not (keep or query.data.startswith(rt.CB_ZONE_SET)) or resolved is None:
            await query.answer(rt.ZONE_GONE, show_alert=True)
            return
        await query.answer()
        zone = await self._user_zone(user.id)
        if keep and not zone.assumed:
            await show_in_place(update, rt.timezone_already(zone.key), None)
            return
        await show_in_place(update, await self._apply_zone(user.id, resolved), None)


def _key_of(name: str) -> str | None:
    """The zone key a suggested name stands for."""
    try:
        return resolve_timezone(name).key
    except TimezoneError:
        return None


def _zone_for_key(key: str) -> ResolvedZone | None:
    """A stored or suggested key as a zone to set, or None when it is not a zone."""
    try:
        tz = zone_from_key(key)
    except ValueError:
        return None
    try:
        resolved = resolve_timezone(key)
    except TimezoneError:
        resolved = None
    if resolved is not None and resolved.key == key:
        return resolved
    return ResolvedZone(key, tz, rt.zone_name(key), fixed_offset=False)
