"""/quiet, for quiet hours, and /stop, which pauses every reminder at once."""

from sqlmodel import Session
from telegram import Update

from miliabot_tg import repo
from miliabot_tg.handlers import Context
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.common import ReminderBase, command_text, message_of, reply
from miliabot_tg.schedule import ParseError, parse_quiet


class QuietHandlers(ReminderBase):
    """/quiet and /stop."""

    async def quiet(self, update: Update, context: Context) -> None:
        """Show, set or clear quiet hours."""
        message, user = message_of(update), update.effective_user
        if user is None:
            return
        text = command_text(message)
        zone, current = await self.deps.read(
            user.id,
            lambda s: (
                self._zone(s, user.id),
                repo.quiet_hours(repo.get_preferences(session=s, user_id=user.id)),
            ),
        )
        if not text:
            await message.reply_text(rt.quiet_status(current, zone.key))
            return
        try:
            quiet = parse_quiet(text)
        except ParseError as exc:
            await message.reply_text(rt.quiet_problem(exc.message))
            return
        now = self.deps.clock()
        await self.deps.write(
            user.id,
            lambda s: repo.set_quiet_hours(session=s, user_id=user.id, quiet=quiet, now=now),
        )
        await message.reply_text(rt.QUIET_OFF if quiet is None else rt.quiet_set(quiet, zone.key))

    async def stop(self, update: Update, context: Context) -> None:
        """Pause every reminder at once and say how to resume."""
        message, user = message_of(update), update.effective_user
        if user is None:
            return
        now, default_key = self.deps.clock(), self.deps.settings.default_tz

        def pause_all(session: Session) -> tuple[int, bool]:
            prefs = repo.get_preferences(session=session, user_id=user.id)
            count = len(repo.list_reminders(session=session, user_id=user.id))
            already = prefs is not None and prefs.reminders_paused
            if count and not already:
                repo.set_all_paused(
                    session=session, user_id=user.id, paused=True, now=now, default_key=default_key
                )
            return count, already

        count, already = await self.deps.write(user.id, pause_all)
        if not count:
            await message.reply_text(rt.NOTHING_TO_STOP)
        elif already:
            await message.reply_text(rt.ALREADY_STOPPED)
        else:
            await reply(message, rt.stopped(count))
