"""The operator surface, the webhook's door and HTML injection, each counted.

A cross-user access is anything a non-operator gets from an operator command or button
that an unknown command or an out-of-date button would not give, any message the bot
sends to someone else because of it, or any row of someone else's that changes.
"""

import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miliabot_tg import texts
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.webhook import SECRET_HEADER
from tests.harness import running_bot
from tests.robustness import audit
from tests.robustness.results import record, size
from tests.robustness.test_fuzz import ATTACKER, OPERATOR, SKIPPED_TABLES, VICTIM, _setup
from tests.test_webhook import SECRET, _update, webhook_bot

OPERATOR_COMMANDS = [
    "/broadcast Free <b>samples</b>",
    "/broadcasts",
    "/stats",
    "/content",
    "/content publish",
    "/whatsnew",
]


async def test_no_non_operator_can_run_an_operator_command_or_button(tmp_path: Path) -> None:
    accesses = checks = 0
    async with running_bot(tmp_path, admin_ids=frozenset({OPERATOR})) as bot:
        harvested = await _setup(bot)
        operator_buttons = [d for d in harvested if d.startswith(("bc:", "content", "ct:"))]
        assert operator_buttons, harvested
        audit.install(bot.engine, ATTACKER, skip=SKIPPED_TABLES)
        seen = {chat: len(bot.standin.chat(chat)) for chat in (VICTIM, OPERATOR)}
        # Non-operators, in private, and the operator himself in a group (operator
        # commands are for private chats only).
        for text in OPERATOR_COMMANDS:
            (reply,) = await bot.say(text, user_id=ATTACKER, first_name="Eve")
            checks += 1
            name = text.split()[0]
            accesses += reply.plain != texts.unknown_command(name)
        for data in operator_buttons:
            calls = len(bot.standin.calls)
            await bot.handled(bot.standin.forge_press(ATTACKER, data, user_id=ATTACKER))
            new = bot.standin.calls[calls:]
            answers = [c.params.get("text") for c in new if c.method == "answerCallbackQuery"]
            checks += 1
            accesses += answers != [texts.STALE_BUTTON] or any(
                c.method.startswith(("send", "edit")) for c in new
            )
        # A group each: the bot paces replies to one group at 20 a minute (3 s apart).
        for group, text in enumerate(OPERATOR_COMMANDS, start=100_777):
            update_id = bot.standin.send_message(
                text, user_id=OPERATOR, chat_id=-group, chat_type="group", chat_title="G"
            )
            await bot.handled(update_id)
            checks += 1
            accesses += any(
                "Broadcast" in m.plain or "Free" in m.plain for m in bot.standin.chat(-group)
            )
        accesses += bool(audit.writes_since(bot.engine, 0))
        accesses += any(len(bot.standin.chat(chat)) != n for chat, n in seen.items())
        assert bot.failures() == []
    record("operator surface", checks=checks, cross_user_accesses=accesses)
    assert accesses == 0


async def test_the_standin_refuses_bad_html_as_telegram_does() -> None:
    # Without this, the injection test below could not fail.
    async with StandIn() as standin, httpx.AsyncClient() as client:
        url = f"{standin.api_root}/bot{DEFAULT_TOKEN}/sendMessage"
        for bad in ("<b>open", "<script>x</script>", "a < b & c", "<b><i>x</b></i>"):
            body = {"chat_id": 1001, "text": bad, "parse_mode": "HTML"}
            response = await client.post(url, json=body)
            assert response.status_code == 400, bad


HOSTILE = [
    "<b>bold</b> & <i>",
    "</code><a href='javascript:x'>x</a>",
    "&amp; &lt; &#0; &#x110000;",
    "<tg-spoiler>",
    "‮ RTL \u200f \u0000 \U0001f9f4" + "ß" * 40,
]


async def test_hostile_names_labels_and_broadcast_text_never_break_a_message(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, admin_ids=frozenset({OPERATOR})) as bot:
        for i, nasty in enumerate(HOSTILE):
            user = 3000 + i
            await bot.say("/start", user_id=user, first_name=nasty)
            await bot.say(f"/remind {nasty[:40]} 08:30 daily", user_id=user, first_name=nasty)
            await bot.say("/reminders", user_id=user, first_name=nasty)
            await bot.say("/settings", user_id=user, first_name=nasty)
            await bot.say(nasty, user_id=user, first_name=nasty)
        await bot.say("/start", user_id=OPERATOR)
        for nasty in HOSTILE:
            await bot.say(f"/broadcast {nasty}", user_id=OPERATOR)
        await bot.say("/broadcasts", user_id=OPERATOR)
        await bot.say("/stats", user_id=OPERATOR)
        refused = bot.failures()
    record("injection", checks=len(HOSTILE) * 6, unhandled_errors=len(refused))
    assert refused == []


bodies = st.one_of(
    st.binary(max_size=2000),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda text, uid, extra: json.dumps({**_update(text, uid), **extra}).encode(),
        st.text(max_size=100),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.dictionaries(
            st.sampled_from(["message", "edited_message", "callback_query"]), st.text()
        ),
    ),
)
secrets = st.sampled_from([None, SECRET, "wrong", SECRET + "x", ""])


def _draw(count: int) -> list[tuple[bytes, str | None]]:
    drawn: list[tuple[bytes, str | None]] = []

    @settings(
        max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(bodies, secrets)
    def collect(body: bytes, secret: str | None) -> None:
        drawn.append((body, secret))

    collect()
    return drawn


async def test_webhook_bodies_and_secrets(tmp_path: Path) -> None:
    drawn = _draw(size(100, 2_000))
    wrong = 0
    async with webhook_bot(tmp_path) as h:
        statuses: dict[int, int] = {}
        for body, secret in drawn:
            headers: dict[str, Any] = {} if secret is None else {SECRET_HEADER: secret}
            status = await h.post(body, headers)
            statuses[status] = statuses.get(status, 0) + 1
            if secret != SECRET:
                wrong += status != 403
            else:
                wrong += status not in (200, 400)
    record("webhook", fuzz_cases=len(drawn), unhandled_errors=wrong)
    assert wrong == 0, statuses
