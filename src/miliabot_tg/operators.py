"""Who is an operator, checked on every operator command and every operator button.

Operators are the Telegram user ids in `MILIABOT_ADMIN_IDS`. Anyone else who sends an
operator command gets exactly what an unknown command gets (the command handlers filter
on the user, so the update falls through to the unknown-command handler), and anyone
else who presses an operator button gets exactly what an out-of-date button gets.
Nothing happens either way, and nothing says that the command exists.
"""

from telegram import Update
from telegram.ext import filters

from miliabot_tg import texts


def is_operator(admin_ids: frozenset[int], update: Update) -> bool:
    """Whether the update comes from an operator, in a private chat."""
    user, chat = update.effective_user, update.effective_chat
    return (
        user is not None and user.id in admin_ids and chat is not None and chat.type == chat.PRIVATE
    )


def operator_commands(admin_ids: frozenset[int]) -> filters.BaseFilter:
    """A filter for operator commands: private chats with an operator only.

    An empty set of operators matches nobody (PTB's `filters.User` with no ids would too,
    but says so only in a warning).
    """
    return filters.ChatType.PRIVATE & filters.User(user_id=admin_ids or {0}, allow_empty=True)


async def refuse_button(update: Update) -> None:
    """Answer a non-operator's press of an operator button like any out-of-date button."""
    query = update.callback_query
    if query is not None:
        await query.answer(texts.STALE_BUTTON)
