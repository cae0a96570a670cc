"""Broadcasts: audiences, recipients recorded before sending, delivery once, and the switch."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from miliabot_tg import broadcasts as store
from miliabot_tg import repo
from miliabot_tg.broadcaster import Broadcaster
from miliabot_tg.broadcasts import DELIVERIES, Audience, BroadcastError, due_for
from miliabot_tg.db import new_session
from miliabot_tg.leases import Lease
from miliabot_tg.schedule import QuietHours
from tests.harness import USER, Harness, running_bot
from tests.test_dispatch import _at, _remind, _user

NOW = _at(date(2026, 11, 26), 9, 0)


def _start(h: Harness, *, text: str = "Hello <b>everyone</b>", **kwargs: object) -> int:
    with h.engine.begin() as conn:
        broadcast_id = store.create_draft(conn, created_by=1, now=h.clock(), text=text, **kwargs)  # type: ignore[arg-type]
    store.start(h.engine, broadcast_id, h.clock(), "UTC")
    return broadcast_id


def _deliveries(h: Harness, broadcast_id: int) -> dict[int, str]:
    with h.engine.connect() as conn:
        rows = conn.execute(
            select(DELIVERIES.c.user_id, DELIVERIES.c.status).where(
                DELIVERIES.c.broadcast_id == broadcast_id
            )
        )
        return {row.user_id: row.status for row in rows}


def _status(h: Harness, broadcast_id: int) -> str:
    with h.engine.connect() as conn:
        row = store.get(conn, broadcast_id)
    assert row is not None
    return str(row.status)


# --- pure parts ---------------------------------------------------------------------------


def test_audiences_read_and_refuse() -> None:
    assert Audience.parse("all") == Audience()
    assert Audience.parse(" KIND:sunscreen ") == Audience(kind="sunscreen")
    assert Audience.parse("active:30") == Audience(active_days=30)
    assert Audience.parse("active:30").to_text() == "active:30"
    for bad in ("", "kind:water", "active:0", "active:-3", "active:²", "everyone", "active:99999"):
        with pytest.raises(BroadcastError):
            Audience.parse(bad)


def test_a_local_hour_is_the_users_own_and_quiet_hours_hold_it() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    # 10:00 in Tokyo (UTC+9) has passed at 21:00 there: tomorrow's 10:00.
    assert due_for(now, "10:00", "Asia/Tokyo", None) == datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    # 10:00 in New York (UTC-5) is still ahead today.
    assert due_for(now, "10:00", "America/New_York", None) == datetime(
        2026, 11, 26, 15, 0, tzinfo=UTC
    )
    assert due_for(now, None, "UTC", None) == now
    # At once, but it is 21:00 in Tokyo and quiet hours run 20:00-08:00 there.
    quiet = QuietHours(time(20, 0), time(8, 0))
    assert due_for(now, None, "Asia/Tokyo", quiet) == datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    tokyo_morning = due_for(now, None, "Asia/Tokyo", quiet).astimezone(ZoneInfo("Asia/Tokyo"))
    assert tokyo_morning.time() == time(8, 0)


# --- through the real bot ---------------------------------------------------------------------


async def test_a_broadcast_reaches_its_audience_once_each_with_a_way_out(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        for user_id in (101, 102, 103, 104, 105):
            _user(h, user_id)
        with new_session(h.engine) as session:
            repo.mark_blocked(session=session, user_id=104, now=NOW)
            repo.forget_user(session=session, user_id=105)
        with h.engine.begin() as conn:
            store.set_announcements(conn, 103, False, NOW)

        broadcast_id = _start(h)
        assert _deliveries(h, broadcast_id) == {101: "pending", 102: "pending"}, "recorded first"
        assert h.standin.calls_to("sendMessage") == []

        await h.broadcaster.run_round()
        for user_id in (101, 102):
            (message,) = h.standin.chat(user_id)
            assert message.plain == "Hello everyone"
            assert [label for row in message.buttons for label, _ in row] == [
                "🔕 No more announcements"
            ]
        assert h.standin.chat(103) == [] and h.standin.chat(104) == []
        assert _deliveries(h, broadcast_id) == {101: "sent", 102: "sent"}
        assert _status(h, broadcast_id) == "done"

        await h.broadcaster.run_round()  # nothing is sent twice
        assert len(h.standin.calls_to("sendMessage")) == 2
        assert h.failures() == []


async def test_audiences_by_reminder_kind_and_by_recent_activity(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW - timedelta(days=40)
        _user(h, 201)  # seen 40 days ago
        h.clock.now = NOW
        _user(h, 202)
        _user(h, 203)
        _remind(h, "sunscreen 08:00 daily", 203)
        _remind(h, "moisturize 08:00 daily", 202)
        with h.engine.connect() as conn:
            assert store.count_audience(conn, Audience(), NOW) == 3
            assert store.count_audience(conn, Audience(kind="sunscreen"), NOW) == 1
            assert store.count_audience(conn, Audience(active_days=30), NOW) == 2
        by_kind = _start(h, audience=Audience(kind="sunscreen"))
        recent = _start(h, audience=Audience(active_days=30))
        assert set(_deliveries(h, by_kind)) == {203}
        assert set(_deliveries(h, recent)) == {202, 203}


async def test_a_user_who_blocked_the_bot_is_marked_blocked_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        for user_id in (301, 302):
            _user(h, user_id)
        h.standin.block(301)
        h.allow_failures("Forbidden: bot was blocked by the user")
        broadcast_id = _start(h)
        await h.broadcaster.run_round()
        assert _deliveries(h, broadcast_id) == {301: "blocked", 302: "sent"}
        with new_session(h.engine) as session:
            blocked = repo.get_user(session=session, user_id=301)
        assert blocked is not None and blocked.status == "blocked"
        assert _status(h, broadcast_id) == "done"


async def test_the_button_turns_announcements_off_and_the_next_broadcast_skips_them(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        _user(h)
        _start(h)
        await h.broadcaster.run_round()
        answer = await h.press("🔕 No more announcements")
        assert "no more announcements" in answer.plain.lower()
        later = _start(h)
        assert _deliveries(h, later) == {}, "left out of the next audience"
        await h.press("🔔 Turn them back on")
        again = _start(h)
        assert _deliveries(h, again) == {USER: "pending"}


async def test_opting_out_after_recipients_are_recorded_still_skips_them(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        _user(h, 401)
        _user(h, 402)
        broadcast_id = _start(h)
        with h.engine.begin() as conn:
            store.set_announcements(conn, 401, False, NOW)
        await h.broadcaster.run_round()
        assert _deliveries(h, broadcast_id) == {401: "skipped", 402: "sent"}
        assert h.standin.chat(401) == []


async def test_pause_resume_and_cancel(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        for user_id in (501, 502):
            _user(h, user_id)
        paused = _start(h)
        with h.engine.begin() as conn:
            assert store.pause(conn, paused)
            assert not store.pause(conn, paused), "only a running broadcast pauses"
        await h.broadcaster.run_round()
        assert h.standin.calls_to("sendMessage") == []
        with h.engine.begin() as conn:
            assert store.resume(conn, paused)
        await h.broadcaster.run_round()
        assert set(_deliveries(h, paused).values()) == {"sent"}

        cancelled = _start(h, text="second")
        with h.engine.begin() as conn:
            assert store.cancel(conn, cancelled, NOW)
        await h.broadcaster.run_round()
        assert set(_deliveries(h, cancelled).values()) == {"skipped"}
        assert len(h.standin.calls_to("sendMessage")) == 2
        with pytest.raises(BroadcastError):
            store.start(h.engine, cancelled, NOW, "UTC")


async def test_a_snippet_broadcast_opens_the_snippet(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        _user(h)
        snippet = h.guide.snippets[0]
        with h.engine.begin() as conn:
            broadcast_id = store.create_draft(conn, created_by=1, now=NOW, snippet_id=snippet.id)
        store.start(h.engine, broadcast_id, NOW, "UTC")
        await h.broadcaster.run_round()
        (message,) = h.standin.chat(USER)
        assert snippet.title in message.plain
        opened = await h.press(f"📖 Read: {snippet.title}")
        assert opened.plain.startswith(snippet.title)


async def test_a_crashed_senders_recipients_are_sent_by_another_and_none_twice(
    tmp_path: Path,
) -> None:
    """Sent ones stay sent; claims of a dead process are taken over after the lease."""
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        users = list(range(600, 640))
        for user_id in users:
            _user(h, user_id)
        broadcast_id = _start(h)
        # A process that died mid-batch: it sent to the first ten and recorded it, and
        # held claims on ten more when it was killed.
        with h.engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(DELIVERIES.c.id)
                    .where(DELIVERIES.c.broadcast_id == broadcast_id)
                    .order_by(DELIVERIES.c.user_id)
                ).scalars()
            )
            conn.execute(
                update(DELIVERIES).where(DELIVERIES.c.id.in_(ids[:10])).values(status="sent")
            )
            conn.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id.in_(ids[10:20]))
                .values(status="sending", claimed_by="dead:1:x", claimed_at=NOW)
            )
        await h.broadcaster.run_round()
        assert len(h.standin.calls_to("sendMessage")) == 20, "not the dead one's claims yet"
        h.clock.advance(timedelta(seconds=61))
        await h.broadcaster.run_round()
        assert all(h.standin.chat(u) == [] for u in users[:10]), "recorded as sent: never again"
        assert all(len(h.standin.chat(u)) == 1 for u in users[10:])
        assert _status(h, broadcast_id) == "done"


async def test_a_429_gives_the_recipient_back_and_it_is_sent_after_the_wait(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        _user(h)
        broadcast_id = _start(h)
        h.standin.fail_next("sendMessage", status=429, retry_after=2)
        h.allow_failures("Too Many Requests: retry after 2")
        await h.broadcaster.run_round()
        assert _deliveries(h, broadcast_id) == {USER: "pending"}
        await h.broadcaster.run_round()
        assert h.standin.chat(USER) == [], "not before retry_after"
        h.clock.advance(timedelta(seconds=3))
        await h.broadcaster.run_round()
        assert len(h.standin.chat(USER)) == 1
        assert _deliveries(h, broadcast_id) == {USER: "sent"}


async def test_the_operator_sees_progress_and_a_final_report(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.clock.now = NOW
        operator = 900
        _user(h, operator)
        for user_id in (701, 702, 703):
            _user(h, user_id)
        with h.engine.begin() as conn:
            store.set_announcements(conn, operator, False, NOW)
            broadcast_id = store.create_draft(conn, created_by=operator, now=NOW, text="hi")
        status = await h.app.bot.send_message(operator, "starting")
        with h.engine.begin() as conn:
            store.set_progress_message(conn, broadcast_id, operator, status.message_id)
        store.start(h.engine, broadcast_id, NOW, "UTC")
        await h.broadcaster.run_round()
        report = h.standin.chat(operator)[-1]
        assert report.message_id == status.message_id, "edited in place"
        assert f"Broadcast #{broadcast_id} is done" in report.plain
        assert "Sent: 3 of 3" in report.plain


async def test_two_processes_share_one_broadcast_on_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    async with running_bot(tmp_path, database_url=postgres_url) as h:
        h.clock.now = NOW
        users = list(range(800, 900))
        for user_id in users:
            _user(h, user_id)
        broadcast_id = _start(h)
        other = Broadcaster(
            bot=h.app.bot,
            engine=h.engine,
            guide=lambda: h.guide,
            clock=h.clock,
            instance="other:2:y",
            lease=Lease(),
        )
        import asyncio

        await asyncio.gather(h.broadcaster.run_round(), other.run_round())
        assert all(len(h.standin.chat(u)) == 1 for u in users)
        assert set(_deliveries(h, broadcast_id).values()) == {"sent"}
        assert _status(h, broadcast_id) == "done"


@pytest.mark.parametrize("paid", [False, True])
async def test_paid_broadcasts_are_off_by_default_and_go_at_their_own_rate(
    tmp_path: Path, paid: bool
) -> None:
    """With them on, broadcasts say so and are not held to the free 30 a second."""
    async with running_bot(tmp_path, global_rate=20.0, paid_broadcasts=paid) as h:
        h.clock.now = NOW
        users = list(range(1100, 1140))
        for user_id in users:
            _user(h, user_id)
        broadcast_id = _start(h)
        await h.broadcaster.run_round()
        calls = h.standin.calls_to("sendMessage")
        assert len(calls) == len(users)
        assert {c.params.get("allow_paid_broadcast") for c in calls} == (
            {"true"} if paid else {None}
        )
        assert h.standin.rate_limited == 0
        assert set(_deliveries(h, broadcast_id).values()) == {"sent"}
        if paid:  # the free pacer was never used for them
            pacer = h.app.bot.rate_limiter
            assert pacer is not None
            assert pacer.stats.sent == 0
