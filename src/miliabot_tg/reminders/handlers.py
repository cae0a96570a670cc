"""Every reminder flow in one ``ReminderHandlers``, and the order they are registered in."""

from typing import Any

from telegram import Message, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from miliabot_tg.handlers import Context
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.common import message_of
from miliabot_tg.reminders.listing import ListHandlers
from miliabot_tg.reminders.occurrence import OccurrenceHandlers
from miliabot_tg.reminders.quiet import QuietHandlers
from miliabot_tg.reminders.remind import RemindHandlers
from miliabot_tg.reminders.zone import ZoneHandlers


class _AwaitingInput(filters.MessageFilter):
    """Matches a message from a user the bot is waiting for typed input from."""

    def __init__(self, owner: "ReminderHandlers") -> None:
        super().__init__(name="AwaitingInput")
        self._owner = owner

    def filter(self, message: Message) -> bool:
        user = message.from_user
        return user is not None and self._owner.waiting_for(user.id) is not None


class ReminderHandlers(
    RemindHandlers, ListHandlers, ZoneHandlers, QuietHandlers, OccurrenceHandlers
):
    """The reminder callbacks, bound to their dependencies."""

    # The flows are mixins of one object, so they share one ``deps`` and one record of the
    # typed input awaited, whichever flow asked for it.

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register every reminder handler; call before the guide's catch-all handlers."""
        private = filters.ChatType.PRIVATE
        new = private & filters.UpdateType.MESSAGE  # not edits: an edited /remind adds nothing
        # Group -2 runs first: a command, or a button outside the /remind flow, ends any wait
        # for typed input, so a later question is not mistaken for an answer.
        app.add_handler(MessageHandler(new & filters.COMMAND, self.drop_pending), group=-2)
        app.add_handler(
            CallbackQueryHandler(self.drop_pending, pattern=rf"^(?!{rt.CB_FLOW})"), group=-2
        )

        app.add_handler(CommandHandler("remind", self.remind, filters=new))
        app.add_handler(CommandHandler("reminders", self.reminders, filters=new))
        app.add_handler(CommandHandler("timezone", self.timezone, filters=new))
        app.add_handler(CommandHandler("quiet", self.quiet, filters=new))
        app.add_handler(CommandHandler("stop", self.stop, filters=new))
        # Before the guide's "I can only read text" answer.
        app.add_handler(MessageHandler(new & filters.LOCATION, self.location))
        # Before the guide's search, which takes every other text.
        app.add_handler(
            MessageHandler(new & filters.TEXT & ~filters.COMMAND & _AwaitingInput(self), self.typed)
        )
        app.add_handler(CallbackQueryHandler(self.flow_button, pattern=rf"^{rt.CB_FLOW}"))
        app.add_handler(CallbackQueryHandler(self.list_button, pattern=rf"^{rt.CB_LIST}"))
        app.add_handler(CallbackQueryHandler(self.zone_button, pattern=rf"^{rt.CB_ZONE}"))
        app.add_handler(
            CallbackQueryHandler(self.occurrence_button, pattern=rf"^{rt.CB_OCCURRENCE}")
        )

    async def typed(self, update: Update, context: Context) -> None:
        """Take typed input the bot asked for: a name, a time, days, a rule or a city."""
        message, user = message_of(update), update.effective_user
        if user is None:
            return
        text = message.text or ""
        pending = self.waiting_for(user.id)
        if pending is None:
            await message.reply_text(rt.FLOW_EXPIRED)
        elif pending.step == "label":
            await self._typed_label(message, user.id, text)
        elif pending.step in ("time", "days"):
            await self._typed_when(message, user.id, pending, text)
        elif pending.step == "edit":
            await self._typed_edit(message, user.id, pending, text)
        else:
            self._pending.pop(user.id, None)
            await self._set_zone_from_text(message, user.id, text)
