"""Behaviour of /timezone input resolution, stored zone keys and location lookup."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from miliabot_tg import timezones
from miliabot_tg.schedule import Rule, next_occurrence
from miliabot_tg.timezones import (
    TimezoneError,
    format_offset,
    resolve_location,
    resolve_timezone,
    timezone_from_location,
    zone_from_key,
    zone_key,
)

# --------------------------------------------------------------------------- IANA names and cities


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Europe/Berlin", "Europe/Berlin"),
        ("europe/berlin", "Europe/Berlin"),
        ("EUROPE/BERLIN", "Europe/Berlin"),
        ("America/New_York", "America/New_York"),
        ("america/new york", "America/New_York"),
        ("  Asia/Kolkata  ", "Asia/Kolkata"),
        ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
    ],
)
def test_iana_names_in_any_case_resolve_to_their_canonical_key(text: str, key: str) -> None:
    resolved = resolve_timezone(text)
    assert resolved.key == key
    assert resolved.tz == ZoneInfo(key)
    assert not resolved.fixed_offset
    assert resolved.notes == ()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Europe/Kiev", "Europe/Kyiv"),
        ("asia/calcutta", "Asia/Kolkata"),
        ("US/Eastern", "America/New_York"),
    ],
)
def test_old_iana_aliases_are_stored_under_their_current_name(text: str, key: str) -> None:
    assert resolve_timezone(text).key == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Lisbon", "Europe/Lisbon"),
        ("New York", "America/New_York"),
        ("new_york", "America/New_York"),
        ("new york", "America/New_York"),
        ("Mumbai", "Asia/Kolkata"),
        ("São Paulo", "America/Sao_Paulo"),
        ("Sao Paulo", "America/Sao_Paulo"),
        ("San Francisco", "America/Los_Angeles"),
        ("Kyiv", "Europe/Kyiv"),
        ("Kiev", "Europe/Kyiv"),
        ("Beijing", "Asia/Shanghai"),
        ("Delhi", "Asia/Kolkata"),
        ("New Delhi", "Asia/Kolkata"),
        ("Sydney", "Australia/Sydney"),
        ("BERLIN", "Europe/Berlin"),
        ("Zürich", "Europe/Zurich"),
        ("Łódź", "Europe/Warsaw"),
        ("St. Petersburg", "Europe/Moscow"),
        ("Istanbul", "Europe/Istanbul"),
        ("Buenos Aires", "America/Argentina/Buenos_Aires"),
        ("Berlin, Germany", "Europe/Berlin"),
        ("Germany", "Europe/Berlin"),
    ],
)
def test_cities_and_countries_resolve_offline(text: str, key: str) -> None:
    resolved = resolve_timezone(text)
    assert resolved.key == key
    assert not resolved.fixed_offset


def test_a_city_result_shows_the_place_name_with_accents() -> None:
    assert resolve_timezone("sao paulo").name == "São Paulo"
    assert resolve_timezone("Mumbai").name == "Mumbai"


@pytest.mark.parametrize(
    ("text", "key", "picked"),
    [
        ("Portland", "America/Los_Angeles", "Portland, Oregon"),
        ("Hyderabad", "Asia/Kolkata", "Hyderabad, India"),
        ("Cordoba", "America/Argentina/Cordoba", "Córdoba, Argentina"),
        ("San Jose", "America/Los_Angeles", "San Jose, California"),
    ],
)
def test_ambiguous_cities_pick_the_most_populous_and_say_so(
    text: str, key: str, picked: str
) -> None:
    resolved = resolve_timezone(text)
    assert resolved.key == key
    assert len(resolved.notes) == 1
    assert picked in resolved.notes[0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Portland, Maine", "America/New_York"),
        ("Hyderabad, Pakistan", "Asia/Karachi"),
        ("Córdoba, Spain", "Europe/Madrid"),
    ],
)
def test_a_qualified_name_chooses_the_other_place_without_a_note(text: str, key: str) -> None:
    resolved = resolve_timezone(text)
    assert (resolved.key, resolved.notes) == (key, ())


def test_a_country_with_several_zones_picks_one_and_asks_for_a_city() -> None:
    resolved = resolve_timezone("USA")
    assert resolved.key == "America/New_York"
    assert "several time zones" in resolved.notes[0]


def test_abbreviations_mean_a_zone_that_follows_daylight_saving() -> None:
    resolved = resolve_timezone("EST")
    assert resolved.key == "America/New_York"
    assert not resolved.fixed_offset
    assert resolved.notes == ("I read “EST” as US Eastern time.",)
    assert resolve_timezone("cet").key == "Europe/Berlin"


# --------------------------------------------------------------------------- offsets


@pytest.mark.parametrize(
    ("text", "key", "offset"),
    [
        ("+05:30", "+05:30", timedelta(hours=5, minutes=30)),
        ("+0530", "+05:30", timedelta(hours=5, minutes=30)),
        ("-3", "-03:00", timedelta(hours=-3)),
        ("UTC+2", "+02:00", timedelta(hours=2)),
        ("utc +2", "+02:00", timedelta(hours=2)),
        ("GMT-03:00", "-03:00", timedelta(hours=-3)),
        ("UTC−5", "-05:00", timedelta(hours=-5)),
        ("+14", "+14:00", timedelta(hours=14)),
        ("-12:00", "-12:00", timedelta(hours=-12)),
        ("UTC", "UTC", timedelta(0)),
        ("GMT", "UTC", timedelta(0)),
        ("Z", "UTC", timedelta(0)),
        ("+00:00", "UTC", timedelta(0)),
    ],
)
def test_offsets_become_fixed_zones_marked_as_such(text: str, key: str, offset: timedelta) -> None:
    resolved = resolve_timezone(text)
    assert resolved.key == key
    assert resolved.tz.utcoffset(None) == offset
    assert resolved.fixed_offset
    assert any("won't follow daylight saving" in note for note in resolved.notes)


def test_an_offset_shows_as_utc_plus_offset() -> None:
    assert resolve_timezone("+05:30").name == "UTC+05:30"
    assert resolve_timezone("Etc/GMT+3").name == "UTC-03:00"  # Etc signs are inverted


def test_etc_zones_and_utc_are_marked_fixed_but_real_places_without_dst_are_not() -> None:
    assert resolve_timezone("Etc/GMT+3").fixed_offset
    assert resolve_timezone("Etc/UTC").fixed_offset
    assert not resolve_timezone("Asia/Kolkata").fixed_offset


@pytest.mark.parametrize("text", ["+15", "-13:00", "UTC+5:75"])
def test_offsets_outside_the_real_range_are_rejected(text: str) -> None:
    with pytest.raises(TimezoneError, match="isn't a real UTC offset"):
        resolve_timezone(text)


# --------------------------------------------------------------------------- unknown input


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("Lisbn", "Lisbon"),
        ("Berlim", "Berlin"),
        ("Mumbay", "Mumbai"),
        ("Europe/Berln", "Europe/Berlin"),
    ],
)
def test_unknown_input_suggests_close_matches(text: str, suggestion: str) -> None:
    with pytest.raises(TimezoneError) as caught:
        resolve_timezone(text)
    assert caught.value.suggestions[0] == suggestion
    assert 1 <= len(caught.value.suggestions) <= 3
    assert caught.value.message == f"I don't know “{text}” as a place or time zone."


def test_nonsense_gets_no_suggestions_and_a_hint() -> None:
    with pytest.raises(TimezoneError) as caught:
        resolve_timezone("qwzxv")
    assert caught.value.suggestions == ()
    assert "+05:30" in caught.value.message


def test_suggestions_never_offer_old_iana_aliases() -> None:
    with pytest.raises(TimezoneError) as caught:
        resolve_timezone("Europe/Kieve")
    assert "Europe/Kiev" not in caught.value.suggestions


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_input_asks_for_a_city_or_offset(text: str) -> None:
    with pytest.raises(TimezoneError, match="Send a city"):
        resolve_timezone(text)


def test_every_curated_zone_exists_in_the_installed_tz_database() -> None:
    available = timezones._available_keys()
    targets = {key for _, key, _ in timezones._PLACE_TABLE}
    targets |= set(timezones._RENAMED_KEYS.values())
    targets |= {key for key, _ in timezones._ABBREVIATIONS.values()}
    assert targets <= available, sorted(targets - available)


def test_every_curated_name_resolves_to_its_table_zone() -> None:
    for names, key, _ in timezones._PLACE_TABLE:
        for name in names.split("|"):
            assert resolve_timezone(name).key == key, name


# --------------------------------------------------------------------------- stored keys


@pytest.mark.parametrize("key", ["Europe/Berlin", "Asia/Kolkata", "+05:30", "-03:00", "UTC"])
def test_zone_keys_round_trip(key: str) -> None:
    assert zone_key(zone_from_key(key)) == key


def test_zone_from_key_gives_usable_zones() -> None:
    assert zone_from_key("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert zone_from_key("+05:30") == timezone(timedelta(hours=5, minutes=30))
    assert zone_from_key("UTC") is UTC
    assert zone_from_key("-00:00") is UTC


def test_zone_key_of_fixed_offsets() -> None:
    assert zone_key(timezone(timedelta(hours=-3, minutes=-30))) == "-03:30"
    assert zone_key(UTC) == "UTC"
    assert zone_key(timezone(timedelta(0))) == "UTC"


@pytest.mark.parametrize(
    "key", ["", "Mars/Olympus", "europe/berlin", "../../etc/passwd", "+15:00", "+05:60", "5:30"]
)
def test_zone_from_key_rejects_unknown_keys(key: str) -> None:
    with pytest.raises(ValueError, match=r"key"):
        zone_from_key(key)


def test_zone_key_rejects_zones_it_cannot_store() -> None:
    with pytest.raises(ValueError, match="whole number of minutes"):
        zone_key(timezone(timedelta(seconds=30)))


@pytest.mark.parametrize("text", ["Lisbon", "+05:30", "UTC", "EST", "Portland"])
def test_a_resolved_key_restores_the_same_zone(text: str) -> None:
    resolved = resolve_timezone(text)
    assert zone_from_key(resolved.key) == resolved.tz


def test_format_offset() -> None:
    assert format_offset(timedelta(hours=5, minutes=45)) == "+05:45"
    assert format_offset(timedelta(hours=-9, minutes=-30)) == "-09:30"
    assert format_offset(timedelta(0)) == "+00:00"


def test_a_typed_offset_drives_the_schedule() -> None:
    tz = resolve_timezone("+05:30").tz
    nxt = next_occurrence(Rule((time(8, 30),)), tz, datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert nxt == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- location


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Location lookup must work offline: any socket use fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("lat", "lon", "key"),
    [
        (52.5200, 13.4050, "Europe/Berlin"),
        (19.0760, 72.8777, "Asia/Kolkata"),
        (40.7128, -74.0060, "America/New_York"),
        (-33.8688, 151.2093, "Australia/Sydney"),
        (-23.5505, -46.6333, "America/Sao_Paulo"),
        (50.4501, 30.5234, "Europe/Kyiv"),
    ],
)
def test_coordinates_resolve_to_the_zone_there_without_network(
    lat: float, lon: float, key: str
) -> None:
    assert timezone_from_location(lat, lon) == key


@pytest.mark.usefixtures("no_network")
def test_a_point_in_the_ocean_gives_the_nautical_etc_zone() -> None:
    # Mid-Atlantic: tzfpy answers with the nautical zone, UTC-2.
    assert timezone_from_location(0.0, -30.0) == "Etc/GMT+2"
    resolved = resolve_location(0.0, -30.0)
    assert resolved is not None
    assert resolved.fixed_offset
    assert resolved.name == "UTC-02:00"


def test_resolve_location_on_land_is_a_regular_zone() -> None:
    resolved = resolve_location(52.52, 13.405)
    assert resolved is not None
    assert (resolved.key, resolved.fixed_offset) == ("Europe/Berlin", False)


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (0.0, 181.0), (-90.5, 10.0)])
def test_impossible_coordinates_are_rejected(lat: float, lon: float) -> None:
    with pytest.raises(ValueError, match="not a coordinate"):
        timezone_from_location(lat, lon)
