"""Every user-facing string and keyboard. Interpolated input is always HTML-escaped here."""

from html import escape

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg.content import Guide, Snippet

MAX_MESSAGE = 4096
MAX_CALLBACK_BYTES = 64
# Queries are echoed back; a paragraph pasted into the chat is cut to a readable length.
MAX_ECHOED_QUERY = 60

DISCLAIMER = (
    "ℹ️ <i>I give general education, not a diagnosis or treatment. "
    "For anything that worries you, see a doctor or dermatologist.</i>"
)

COMMANDS = (
    BotCommand("guide", "Short answers about milia"),
    BotCommand("help", "What I can do"),
    BotCommand("remind", "Set a reminder: sunscreen, moisturizer, exfoliation"),
    BotCommand("reminders", "See, pause, edit or delete your reminders"),
    BotCommand("timezone", "Set your timezone"),
    BotCommand("quiet", "Quiet hours: no reminders at night"),
    BotCommand("stop", "Pause all reminders"),
    BotCommand("outdoors", "Outside today: reminders to reapply sunscreen"),
    BotCommand("progress", "Your streaks and a 12-week calendar"),
    BotCommand("settings", "Announcements, timezone and quiet hours"),
    BotCommand("privacy", "What I store and why"),
    BotCommand("mydata", "Get everything I store about you, as a file"),
    BotCommand("forget", "Delete everything I store about you"),
    BotCommand("start", "Welcome and overview"),
)

# Callback data. Snippet ids are at most 32 bytes, so every value fits in 64 bytes.
CB_MENU = "guide:menu"
CB_OPEN = "guide:open:"
CB_SECTION = "guide:section:"
CB_FORGET_YES = "forget:yes"
CB_FORGET_NO = "forget:no"

# The guide's menu shows sections, one per content topic, in the order of their first
# snippet; a section opens its topics. Twenty-odd topics in one message made a wall of
# buttons on a phone (and the heaviest message the bot sends).
SECTION_LABELS = {
    "basics": "🔍 Milia basics",
    "types": "🧬 Types",
    "causes": "❓ Causes",
    "babies": "👶 Babies",
    "care": "🏠 Home care",
    "exfoliation": "🧽 Exfoliation",
    "moisturizing": "💧 Moisturizing",
    "sun": "☀️ Sun protection",
    "treatment": "🩺 Treatments",
    "prevention": "🗓 Prevention",
    "doctor": "👩‍⚕️ Dermatologist",
}


def quote(text: str) -> str:
    """Escape user text for echoing, shortened to one readable line."""
    line = " ".join(text.split())
    if len(line) > MAX_ECHOED_QUERY:
        line = line[: MAX_ECHOED_QUERY - 1].rstrip() + "…"
    return escape(line, quote=False)


def welcome(first_name: str, *, returning: bool) -> str:
    """Greet someone at /start."""
    name = escape(first_name.strip()[:64], quote=False) if first_name.strip() else "there"
    hello = f"Welcome back, {name}!" if returning else f"Hi {name}! 👋"
    return (
        f"{hello} I'm MiliaBot. I help you look after skin that gets <b>milia</b>, "
        "the tiny, firm white bumps that often show up around the eyes and cheeks.\n\n"
        "📖 /guide opens short, plain answers: what milia are, home care, sun protection, "
        "gentle exfoliation, treatments and when to see a dermatologist.\n"
        "🔎 Or just type what you want to know, like <i>baby milia</i> or <i>sunscreen</i>.\n"
        "⏰ /remind sets reminders for sunscreen, moisturizing and gentle exfoliation, "
        "at the right time where you live.\n\n"
        f"{DISCLAIMER}"
    )


def help_text() -> str:
    """List what the bot can do."""
    return (
        "<b>What I can do</b>\n\n"
        "/guide: the milia guide, topic by topic\n"
        "/guide <i>words</i>: search the guide, e.g. <code>/guide peel</code>\n\n"
        "/remind: set a reminder with buttons, or in one line, e.g. "
        "<code>/remind sunscreen 08:30 daily</code>\n"
        "/reminders: see, pause, edit or delete your reminders\n"
        "/timezone: set your timezone, e.g. <code>/timezone Lisbon</code>\n"
        "/quiet: quiet hours, e.g. <code>/quiet 22:00-07:00</code> or <code>/quiet off</code>\n"
        "/stop: pause all reminders (/start offers to resume)\n"
        "/outdoors: outside today? I'll remind you to reapply sunscreen while the sun "
        "is strong\n"
        "/progress: your streaks and a calendar of the last 12 weeks\n"
        "/settings: announcements on or off, timezone and quiet hours, with buttons\n\n"
        "/privacy: what I store about you and why\n"
        "/mydata: everything I store about you, as a file\n"
        "/forget: delete everything I store about you\n"
        "/start: the welcome message\n\n"
        "You can also type a question in your own words and I'll find the closest topics.\n\n"
        f"{DISCLAIMER}"
    )


def privacy_text() -> str:
    """Say what is stored, who can see what, and how to get or delete it; accurately."""
    return (
        "<b>Your privacy</b>\n\n"
        "I store only what I need to talk to you and remind you:\n"
        "• your Telegram user id, so I can reply;\n"
        "• your first name and language setting, to greet you properly;\n"
        "• when you first and last used the bot;\n"
        "• whether I may message you (if you block me, I stop);\n"
        "• your timezone, if you set one (a location you share is only used to look it up "
        "and is not kept, unless you say yes to keeping it for UV forecasts: then it is "
        "kept rounded to about 10 km, shown in /settings and deleted there or by /forget);\n"
        "• your reminders (what, when, paused or not), your quiet hours and whether you "
        "paused everything;\n"
        "• for each reminder I send, when it was due and what became of it (done, snoozed, "
        "skipped or missed): the history behind /progress and the weekly summary;\n"
        "• whether you want announcements (news about the guide from the people who run me), "
        "and for each announcement I send you, when it went out and whether it arrived, so "
        "nobody gets it twice.\n\n"
        "I don't keep the questions you type or the topics you read, and I share nothing "
        "with anyone, except that a kept location, rounded, is sent to a weather service "
        "(Open-Meteo) for its UV forecast.\n\n"
        "<b>What the people who run me can see:</b> counts (how many users, reminders and "
        "their outcomes, in /stats) and how each announcement went (sent, blocked, "
        "failed). They can read the database, so the list above, but I don't store the "
        "messages you write, so there is nothing of that to see. Error reports they get "
        "carry no message text.\n\n"
        "Send /mydata to get everything I store about you as a file.\n"
        "Send /forget to delete it all, reminders, announcements and their history "
        "included; afterwards I keep only your user id marked as deleted, so I never "
        "message you again unless you write to me, which starts afresh."
    )


# What /mydata's file says is deliberately absent.
NOT_STORED = (
    "The messages you write and the guide topics you read are not stored; a location you "
    "share only if you agreed to keep it for UV forecasts."
)
MYDATA_CAPTION = "📄 Everything I store about you. /forget deletes it; /privacy explains each part."


def forget_question() -> tuple[str, InlineKeyboardMarkup]:
    """Ask before deleting a user's data."""
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes, delete my data", callback_data=CB_FORGET_YES),
                InlineKeyboardButton("No, keep it", callback_data=CB_FORGET_NO),
            ]
        ]
    )
    return "Delete everything I store about you? This can't be undone.", keyboard


FORGOTTEN = "Done: I've deleted what I stored about you. If you write again, I'll start afresh."
NOT_FORGOTTEN = "Okay, nothing was deleted."


def sections(guide: Guide) -> dict[str, list[Snippet]]:
    """The guide's snippets by topic; topics in the order of their first snippet."""
    grouped: dict[str, list[Snippet]] = {}
    for snippet in guide.snippets:
        grouped.setdefault(snippet.topic, []).append(snippet)
    return grouped


def section_label(topic: str) -> str:
    """A section's button label (a topic without one of its own gets its name)."""
    return SECTION_LABELS.get(topic, topic.capitalize())


def guide_menu(guide: Guide) -> tuple[str, InlineKeyboardMarkup]:
    """Show the guide's sections, two to a row; a one-topic section opens that topic."""
    buttons = [
        InlineKeyboardButton(
            section_label(topic),
            callback_data=CB_OPEN + found[0].id if len(found) == 1 else CB_SECTION + topic,
        )
        for topic, found in sections(guide).items()
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    text = (
        "📖 <b>The milia guide</b>\n\n"
        "Pick a section, or type what you're looking for.\n\n"
        f"{DISCLAIMER}"
    )
    return text, InlineKeyboardMarkup(rows)


def section_view(guide: Guide, topic: str) -> tuple[str, InlineKeyboardMarkup] | None:
    """Show one section's topics, one to a row, and the way back; None if it is gone."""
    found = sections(guide).get(topic)
    if not found:
        return None
    rows = [[InlineKeyboardButton(s.title, callback_data=CB_OPEN + s.id)] for s in found]
    rows.append([InlineKeyboardButton("« All topics", callback_data=CB_MENU)])
    text = f"<b>{escape(section_label(topic), quote=False)}</b>\n\nPick a topic."
    return text, InlineKeyboardMarkup(rows)


def snippet_view(guide: Guide, snippet: Snippet) -> tuple[str, InlineKeyboardMarkup]:
    """Show one snippet with buttons to its related topics and back to the menu."""
    rows = []
    for related_id in snippet.related:
        related = guide.get(related_id)
        if related is not None:
            rows.append(
                [InlineKeyboardButton(f"➜ {related.title}", callback_data=CB_OPEN + related.id)]
            )
    siblings = sections(guide).get(snippet.topic, [])
    if len(siblings) > 1:  # back to its section, or (a section of one) to the menu
        back = InlineKeyboardButton(
            f"« {section_label(snippet.topic)}", callback_data=CB_SECTION + snippet.topic
        )
        rows.append([back, InlineKeyboardButton("« All topics", callback_data=CB_MENU)])
    else:
        rows.append([InlineKeyboardButton("« All topics", callback_data=CB_MENU)])
    text = f"<b>{escape(snippet.title, quote=False)}</b>\n\n{snippet.html}"
    # The pages the snippet rests on, so a reader can check it (link previews are off).
    sources = ", ".join(
        f'<a href="{escape(r.url)}">{escape(r.title, quote=False)}</a>' for r in snippet.references
    )
    if sources:
        text += f"\n\n<i>Sources:</i> {sources}"
    return text, InlineKeyboardMarkup(rows)


def search_results(query: str, found: list[Snippet]) -> tuple[str, InlineKeyboardMarkup]:
    """Offer the best matches for a search as buttons."""
    rows = [[InlineKeyboardButton(s.title, callback_data=CB_OPEN + s.id)] for s in found]
    rows.append([InlineKeyboardButton("« All topics", callback_data=CB_MENU)])
    return f"🔎 Topics about “{quote(query)}”:", InlineKeyboardMarkup(rows)


def no_results(query: str, suggestions: list[Snippet]) -> tuple[str, InlineKeyboardMarkup]:
    """Answer a search that found nothing with places to start instead of silence."""
    rows = [[InlineKeyboardButton(s.title, callback_data=CB_OPEN + s.id)] for s in suggestions]
    rows.append([InlineKeyboardButton("« All topics", callback_data=CB_MENU)])
    text = (
        f"I couldn't find anything about “{quote(query)}” in the guide. "
        "Try other words, like <i>baby</i>, <i>exfoliation</i> or <i>sunscreen</i>, "
        "or start with one of these:"
    )
    return text, InlineKeyboardMarkup(rows)


def closest_topics(query: str, closest: list[Snippet]) -> tuple[str, InlineKeyboardMarkup]:
    """Answer a search that nothing answers well: say so, and offer the nearest topics."""
    rows = [[InlineKeyboardButton(s.title, callback_data=CB_OPEN + s.id)] for s in closest]
    rows.append([InlineKeyboardButton("« All topics", callback_data=CB_MENU)])
    text = (
        f"I don't have a topic that answers “{quote(query)}”. "
        "These are the closest in the guide, or see all topics:"
    )
    return text, InlineKeyboardMarkup(rows)


STALE_BUTTON = "That button is out of date. Send /guide to start again."


def unknown_command(command: str) -> str:
    """Answer a command the bot does not have."""
    return (
        f"I don't know the command {quote(command)}. "
        "Try /guide for the milia guide or /help to see everything I can do."
    )


def group_notice(bot_username: str) -> str:
    """Explain, once and briefly, that the bot works in private chats."""
    return (
        "Hi! I answer in private chats, so your skin questions stay between us. "
        f"Message me at @{escape(bot_username, quote=False)}."
    )


NOT_TEXT = "I can only read text. Type a topic like <i>sunscreen</i>, or send /guide to browse."
TOPIC_GONE = "That topic is no longer in the guide. Here is the current list:"
SOMETHING_WENT_WRONG = (
    "Sorry, something went wrong on my side. Please try again in a moment; "
    "/guide and /help are always there."
)
