"""What a user types for ``/timezone`` (or shares as a location), turned into a zone.

Pure policy, no Telegram and no database.  What gets stored is a *key*: an IANA name
(``Europe/Berlin``), ``UTC``, or a fixed offset (``+05:30``); :func:`zone_from_key` and
:func:`zone_key` convert between keys and ``tzinfo`` objects.

City names come from two offline sources: the city part of the IANA names shipped with
tzdata (``Lisbon``, ``New York``, ``Sao Paulo``, ``Kyiv``…), and the curated table
:data:`_PLACE_TABLE` below for big cities that no IANA name mentions (``Mumbai``,
``Beijing``, ``San Francisco``…), common old spellings (``Kiev``, ``Calcutta``), and
countries.  Where a name is ambiguous the table picks the most populous place and says
so in the result's notes.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from typing import Final

import tzfpy

__all__ = [
    "ResolvedZone",
    "TimezoneError",
    "format_offset",
    "resolve_location",
    "resolve_timezone",
    "timezone_from_location",
    "zone_from_key",
    "zone_key",
]

MAX_OFFSET: Final = timedelta(hours=14)
MIN_OFFSET: Final = timedelta(hours=-12)


class TimezoneError(ValueError):
    """The text is not a zone I know; ``message`` is one short friendly sentence."""

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions


@dataclass(frozen=True)
class ResolvedZone:
    """A zone picked from what the user typed.

    ``key`` is what to store; ``name`` is what to show (``Lisbon``, ``Europe/Berlin``,
    ``UTC+05:30``); ``fixed_offset`` is true when the zone never changes its offset, so the
    UI can warn that reminders will not follow daylight saving; ``notes`` are short
    sentences about choices made (an ambiguous city, an abbreviation, a fixed offset).
    """

    key: str
    tz: tzinfo = field(compare=False)
    name: str
    fixed_offset: bool
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- keys

_OFFSET_KEY: Final = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_EXCLUDED_KEYS: Final = frozenset({"localtime", "Factory"})


@cache
def _available_keys() -> frozenset[str]:
    keys = zoneinfo.available_timezones() - _EXCLUDED_KEYS
    return frozenset(k for k in keys if not k.startswith(("posix/", "right/")))


@cache
def _keys_by_lower() -> dict[str, str]:
    return {k.lower(): k for k in _available_keys()}


def format_offset(offset: timedelta) -> str:
    """``+05:30`` / ``-03:00`` for a whole-minute UTC offset."""
    minutes, rest = divmod(offset, timedelta(minutes=1))
    if rest:
        raise ValueError(f"offset {offset!r} is not a whole number of minutes")
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _fixed_zone(offset: timedelta) -> timezone:
    return UTC if not offset else timezone(offset)


def zone_key(tz: tzinfo) -> str:
    """The storable key of a zone: its IANA key, ``UTC``, or ``+05:30``."""
    if isinstance(tz, zoneinfo.ZoneInfo):
        if tz.key is None:
            raise ValueError("a ZoneInfo built from a file has no key")
        return tz.key
    if isinstance(tz, timezone):
        offset = tz.utcoffset(None)
        return "UTC" if not offset else format_offset(offset)
    raise ValueError(f"cannot store a {type(tz).__name__} zone")


def zone_from_key(key: str) -> tzinfo:
    """Inverse of :func:`zone_key`; raises ``ValueError`` for an unknown key."""
    if key == "UTC":
        return UTC
    m = _OFFSET_KEY.match(key)
    if m is not None:
        offset = timedelta(hours=int(m[2]), minutes=int(m[3]))
        offset = -offset if m[1] == "-" else offset
        if not MIN_OFFSET <= offset <= MAX_OFFSET or int(m[3]) > 59:
            raise ValueError(f"offset key out of range: {key!r}")
        return _fixed_zone(offset)
    if key not in _available_keys():
        raise ValueError(f"unknown time zone key: {key!r}")
    return zoneinfo.ZoneInfo(key)


def _is_fixed(tz: tzinfo) -> bool:
    """Whether the zone keeps one offset (checked over a few years around now)."""
    if isinstance(tz, timezone):
        return True
    samples = {
        datetime(year, month, 15, tzinfo=UTC).astimezone(tz).utcoffset()
        for year in (2025, 2026, 2027)
        for month in (1, 4, 7, 10)
    }
    return len(samples) == 1


# --------------------------------------------------------------------------- place names


_LETTERS: Final[dict[str, str | int | None]] = {"ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae"}
_TRANSLITERATE: Final = str.maketrans(_LETTERS)


def _normalize(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: ``São Paulo`` → ``sao paulo``."""
    s = unicodedata.normalize("NFKD", text.strip().lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.translate(_TRANSLITERATE)
    s = re.sub(r"['’`]", "", s)
    s = re.sub(r"[\s_\-./,()]+", " ", s).strip()
    return re.sub(r"\bsaint\b", "st", s)


def _several(country: str, city: str) -> str:
    return (
        f"{country} has several time zones; I picked {city}'s. "
        "Send your city if you live elsewhere."
    )


# Big places that no IANA name mentions, old spellings, countries.  Each row: names
# separated by "|", the zone, and a note for names that are ambiguous (the most populous
# place wins) or that stand for a country with several zones.
_PLACE_TABLE: Final[tuple[tuple[str, str, str | None], ...]] = (
    # --- accented spellings of IANA cities, for display
    ("São Paulo", "America/Sao_Paulo", None),
    ("Zürich", "Europe/Zurich", None),
    ("Bogotá", "America/Bogota", None),
    ("Asunción", "America/Asuncion", None),
    ("Mexico City|Ciudad de México|CDMX", "America/Mexico_City", None),
    ("Reykjavík", "Atlantic/Reykjavik", None),
    # --- South Asia
    (
        "Mumbai|Bombay|Delhi|New Delhi|Bangalore|Bengaluru|Chennai|Madras|Pune|Ahmedabad"
        "|Surat|Jaipur|Lucknow|Kanpur|Nagpur|Calcutta|Goa|India",
        "Asia/Kolkata",
        None,
    ),
    (
        "Hyderabad",
        "Asia/Kolkata",
        "Several places are called Hyderabad; I picked Hyderabad, India.",
    ),
    ("Hyderabad, Pakistan|Lahore|Islamabad|Faisalabad|Rawalpindi|Pakistan", "Asia/Karachi", None),
    ("Chittagong|Chattogram|Dacca|Bangladesh", "Asia/Dhaka", None),
    ("Katmandu|Nepal", "Asia/Kathmandu", None),
    ("Sri Lanka", "Asia/Colombo", None),
    # --- East Asia
    (
        "Beijing|Peking|Guangzhou|Canton|Shenzhen|Chengdu|Chongqing|Tianjin|Wuhan|Xi'an"
        "|Hangzhou|Nanjing|Suzhou|Shenyang|Harbin|Dongguan|Foshan|Qingdao|China",
        "Asia/Shanghai",
        None,
    ),
    ("Osaka|Yokohama|Nagoya|Kyoto|Kobe|Sapporo|Fukuoka|Japan", "Asia/Tokyo", None),
    ("Busan|Incheon|Daegu|South Korea|Korea", "Asia/Seoul", None),
    ("North Korea", "Asia/Pyongyang", None),
    ("Kaohsiung|Taichung|Taiwan", "Asia/Taipei", None),
    ("Mongolia|Ulan Bator", "Asia/Ulaanbaatar", None),
    # --- South-East Asia
    ("Ho Chi Minh City|Saigon|Hanoi|Da Nang|Vietnam", "Asia/Ho_Chi_Minh", None),
    ("Chiang Mai|Phuket|Pattaya|Thailand", "Asia/Bangkok", None),
    ("Quezon City|Cebu|Davao|Philippines", "Asia/Manila", None),
    ("Penang|Johor Bahru|Malaysia", "Asia/Kuala_Lumpur", None),
    ("Rangoon|Mandalay|Myanmar|Burma", "Asia/Yangon", None),
    ("Cambodia", "Asia/Phnom_Penh", None),
    ("Bali|Denpasar", "Asia/Makassar", None),
    ("Surabaya|Bandung|Medan|Semarang", "Asia/Jakarta", None),
    (
        "Indonesia",
        "Asia/Jakarta",
        _several("Indonesia", "Jakarta"),
    ),
    # --- Central Asia, Middle East
    ("Astana|Nur-Sultan|Kazakhstan", "Asia/Almaty", None),
    ("Uzbekistan", "Asia/Tashkent", None),
    ("Afghanistan", "Asia/Kabul", None),
    ("Isfahan|Mashhad|Shiraz|Tabriz|Iran", "Asia/Tehran", None),
    ("Basra|Mosul|Erbil|Iraq", "Asia/Baghdad", None),
    ("Tel Aviv|Tel Aviv-Yafo|Haifa|Israel", "Asia/Jerusalem", None),
    ("Abu Dhabi|Sharjah|UAE|United Arab Emirates|Emirates", "Asia/Dubai", None),
    ("Jeddah|Mecca|Makkah|Medina|Dammam|Saudi Arabia", "Asia/Riyadh", None),
    ("Doha", "Asia/Qatar", None),
    ("Kuwait City", "Asia/Kuwait", None),
    ("Manama", "Asia/Bahrain", None),
    ("Oman", "Asia/Muscat", None),
    ("Jordan", "Asia/Amman", None),
    ("Lebanon", "Asia/Beirut", None),
    (
        "Georgia",
        "America/New_York",
        "Several places are called Georgia; I picked the US state. For the country send “Tbilisi”.",
    ),
    ("Armenia", "Asia/Yerevan", None),
    ("Azerbaijan", "Asia/Baku", None),
    # --- Europe
    (
        "Munich|München|Hamburg|Frankfurt|Cologne|Köln|Stuttgart|Düsseldorf|Dortmund|Essen"
        "|Leipzig|Dresden|Hanover|Hannover|Nuremberg|Nürnberg|Bremen|Bonn|Germany",
        "Europe/Berlin",
        None,
    ),
    (
        "Milan|Milano|Naples|Napoli|Turin|Torino|Florence|Firenze|Venice|Venezia|Bologna"
        "|Palermo|Genoa|Genova|Italy",
        "Europe/Rome",
        None,
    ),
    (
        "Barcelona|Seville|Sevilla|Zaragoza|Málaga|Bilbao|Córdoba, Spain|Valencia, Spain|Spain",
        "Europe/Madrid",
        None,
    ),
    (
        "Valencia",
        "Europe/Madrid",
        "Several places are called Valencia; I picked Valencia, Spain.",
    ),
    ("Valencia, Venezuela|Maracaibo|Barquisimeto|Venezuela", "America/Caracas", None),
    ("Porto|Oporto|Braga|Faro|Portugal", "Europe/Lisbon", None),
    (
        "Manchester|Leeds|Glasgow|Edinburgh|Liverpool|Bristol|Sheffield|Cardiff|Belfast"
        "|Newcastle upon Tyne|Nottingham|Leicester|Oxford|Cambridge|UK|United Kingdom"
        "|Great Britain|Britain|England|Scotland|Wales|Northern Ireland",
        "Europe/London",
        None,
    ),
    (
        "Birmingham",
        "Europe/London",
        "Several places are called Birmingham; I picked Birmingham, England.",
    ),
    ("Birmingham, Alabama", "America/Chicago", None),
    (
        "Marseille|Lyon|Toulouse|Nice|Nantes|Strasbourg|Montpellier|Bordeaux|Lille|France",
        "Europe/Paris",
        None,
    ),
    (
        "Rotterdam|The Hague|Den Haag|Utrecht|Eindhoven|Netherlands|Holland",
        "Europe/Amsterdam",
        None,
    ),
    ("Antwerp|Antwerpen|Ghent|Gent|Liège|Bruges|Belgium", "Europe/Brussels", None),
    ("Geneva|Genève|Basel|Bern|Lausanne|Switzerland", "Europe/Zurich", None),
    ("Graz|Linz|Salzburg|Innsbruck|Austria", "Europe/Vienna", None),
    (
        "Kraków|Krakow|Cracow|Łódź|Wrocław|Poznań|Gdańsk|Szczecin|Poland",
        "Europe/Warsaw",
        None,
    ),
    ("Brno|Ostrava|Czechia|Czech Republic", "Europe/Prague", None),
    ("Bratislava|Slovakia", "Europe/Bratislava", None),
    ("Gothenburg|Göteborg|Malmö|Uppsala|Sweden", "Europe/Stockholm", None),
    ("Bergen|Trondheim|Stavanger|Norway", "Europe/Oslo", None),
    ("Aarhus|Odense|Denmark", "Europe/Copenhagen", None),
    ("Espoo|Tampere|Turku|Finland", "Europe/Helsinki", None),
    ("Thessaloniki|Greece", "Europe/Athens", None),
    ("Cluj-Napoca|Cluj|Timișoara|Iași|Romania", "Europe/Bucharest", None),
    ("Debrecen|Hungary", "Europe/Budapest", None),
    ("Plovdiv|Varna|Bulgaria", "Europe/Sofia", None),
    ("Novi Sad|Serbia", "Europe/Belgrade", None),
    ("Split|Croatia", "Europe/Zagreb", None),
    ("Cork|Galway|Ireland", "Europe/Dublin", None),
    ("Iceland", "Atlantic/Reykjavik", None),
    ("Estonia|Tartu", "Europe/Tallinn", None),
    ("Latvia", "Europe/Riga", None),
    ("Lithuania|Kaunas", "Europe/Vilnius", None),
    ("Moldova|Chișinău", "Europe/Chisinau", None),
    ("Belarus|Gomel", "Europe/Minsk", None),
    (
        "Kiev|Kharkiv|Kharkov|Odesa|Odessa|Dnipro|Lviv|Zaporizhzhia|Ukraine",
        "Europe/Kyiv",
        None,
    ),
    (
        "St Petersburg|Saint Petersburg|Petersburg|Leningrad",
        "Europe/Moscow",
        "Several places are called St Petersburg; I picked St Petersburg, Russia.",
    ),
    ("St Petersburg, Florida", "America/New_York", None),
    ("Nizhny Novgorod|Kazan|Rostov-on-Don|Voronezh|Sochi", "Europe/Moscow", None),
    ("Chelyabinsk|Ufa|Perm", "Asia/Yekaterinburg", None),
    (
        "Russia",
        "Europe/Moscow",
        _several("Russia", "Moscow"),
    ),
    ("Ankara|Izmir|İzmir|Bursa|Antalya|Adana|Turkey|Türkiye", "Europe/Istanbul", None),
    ("Cyprus|Limassol", "Asia/Nicosia", None),
    # --- Africa
    ("Alexandria|Giza|Egypt", "Africa/Cairo", None),
    ("Abuja|Kano|Ibadan|Port Harcourt|Benin City|Nigeria", "Africa/Lagos", None),
    (
        "Cape Town|Durban|Pretoria|Port Elizabeth|Gqeberha|Soweto|South Africa",
        "Africa/Johannesburg",
        None,
    ),
    ("Mombasa|Kisumu|Kenya", "Africa/Nairobi", None),
    ("Ethiopia", "Africa/Addis_Ababa", None),
    ("Dodoma|Tanzania", "Africa/Dar_es_Salaam", None),
    ("Kumasi|Ghana", "Africa/Accra", None),
    ("Rabat|Marrakesh|Marrakech|Fez|Fes|Tangier|Morocco", "Africa/Casablanca", None),
    ("Oran|Algeria", "Africa/Algiers", None),
    ("Tunisia|Sfax", "Africa/Tunis", None),
    ("Omdurman|Sudan", "Africa/Khartoum", None),
    ("Uganda", "Africa/Kampala", None),
    ("Zimbabwe", "Africa/Harare", None),
    ("Senegal", "Africa/Dakar", None),
    ("Angola", "Africa/Luanda", None),
    ("Yamoussoukro|Ivory Coast|Côte d'Ivoire", "Africa/Abidjan", None),
    (
        "Congo|DR Congo",
        "Africa/Kinshasa",
        "Congo spans two time zones; I picked Kinshasa's. Send your city if you live elsewhere.",
    ),
    # --- North America
    (
        "San Francisco|San Diego|Seattle|Sacramento|Las Vegas|Oakland|Fresno|Long Beach"
        "|Silicon Valley|California|Washington State|Oregon|Nevada",
        "America/Los_Angeles",
        None,
    ),
    (
        "San Jose",
        "America/Los_Angeles",
        "Several places are called San Jose; I picked San Jose, California.",
    ),
    ("San José, Costa Rica|Costa Rica", "America/Costa_Rica", None),
    (
        "Portland",
        "America/Los_Angeles",
        "Several places are called Portland; I picked Portland, Oregon.",
    ),
    ("Portland, Maine", "America/New_York", None),
    (
        "Houston|Dallas|San Antonio|Austin|Fort Worth|Minneapolis|St Paul|Kansas City"
        "|St Louis|New Orleans|Nashville|Memphis|Milwaukee|Oklahoma City|Omaha|Texas"
        "|Illinois|Minnesota",
        "America/Chicago",
        None,
    ),
    (
        "Atlanta|Miami|Boston|Philadelphia|Washington|Washington DC|Baltimore|Orlando|Tampa"
        "|Charlotte|Pittsburgh|Columbus|Cleveland|Cincinnati|Jacksonville|Raleigh|Brooklyn"
        "|Manhattan|Queens|Bronx|Newark|Buffalo|Florida|Massachusetts|Pennsylvania",
        "America/New_York",
        None,
    ),
    ("Salt Lake City|Albuquerque|Colorado Springs|El Paso|Colorado|Utah", "America/Denver", None),
    ("Tucson|Mesa|Scottsdale|Arizona", "America/Phoenix", None),
    ("Hawaii", "Pacific/Honolulu", None),
    ("Alaska", "America/Anchorage", None),
    (
        "USA|US|United States|United States of America|America",
        "America/New_York",
        _several("The USA", "New York"),
    ),
    (
        "Montreal|Montréal|Ottawa|Quebec|Québec|Quebec City|Mississauga|Hamilton",
        "America/Toronto",
        None,
    ),
    ("Calgary|Alberta", "America/Edmonton", None),
    ("Victoria, Canada|Victoria, BC|Surrey|British Columbia", "America/Vancouver", None),
    ("Saskatoon|Saskatchewan", "America/Regina", None),
    (
        "Canada",
        "America/Toronto",
        _several("Canada", "Toronto"),
    ),
    ("Guadalajara|Puebla|León|Zapopan|Querétaro", "America/Mexico_City", None),
    (
        "Mexico",
        "America/Mexico_City",
        _several("Mexico", "Mexico City"),
    ),
    ("Guatemala City", "America/Guatemala", None),
    ("San Salvador", "America/El_Salvador", None),
    ("Panama City", "America/Panama", None),
    ("Kingston", "America/Jamaica", None),
    (
        "San Juan",
        "America/Puerto_Rico",
        "Several places are called San Juan; I picked San Juan, Puerto Rico.",
    ),
    ("San Juan, Argentina", "America/Argentina/San_Juan", None),
    ("Dominican Republic|Santiago de los Caballeros", "America/Santo_Domingo", None),
    # --- South America
    ("Medellín|Cali|Barranquilla|Cartagena|Colombia", "America/Bogota", None),
    ("Arequipa|Trujillo|Cusco|Peru", "America/Lima", None),
    ("Quito|Ecuador", "America/Guayaquil", None),
    (
        "Santiago",
        "America/Santiago",
        "Several places are called Santiago; I picked Santiago, Chile.",
    ),
    ("Valparaíso|Chile", "America/Santiago", None),
    (
        "Rio de Janeiro|Rio|Brasília|Belo Horizonte|Porto Alegre|Curitiba|Campinas"
        "|Florianópolis|Goiânia",
        "America/Sao_Paulo",
        None,
    ),
    ("Salvador", "America/Bahia", None),
    (
        "Brazil",
        "America/Sao_Paulo",
        _several("Brazil", "São Paulo"),
    ),
    ("Mar del Plata|La Plata|Argentina", "America/Argentina/Buenos_Aires", None),
    ("Rosario|Santa Fe, Argentina", "America/Argentina/Cordoba", None),
    (
        "Córdoba",
        "America/Argentina/Cordoba",
        "Several places are called Córdoba; I picked Córdoba, Argentina.",
    ),
    (
        "Santa Cruz|Santa Cruz de la Sierra|Bolivia",
        "America/La_Paz",
        None,
    ),
    ("Uruguay", "America/Montevideo", None),
    ("Paraguay", "America/Asuncion", None),
    # --- Oceania
    ("Canberra|Newcastle, Australia|Wollongong|New South Wales", "Australia/Sydney", None),
    ("Gold Coast|Sunshine Coast|Queensland", "Australia/Brisbane", None),
    ("Victoria, Australia|Geelong", "Australia/Melbourne", None),
    (
        "Victoria",
        "Australia/Melbourne",
        "Several places are called Victoria; I picked Victoria, Australia.",
    ),
    ("Western Australia", "Australia/Perth", None),
    ("South Australia", "Australia/Adelaide", None),
    (
        "Australia",
        "Australia/Sydney",
        _several("Australia", "Sydney"),
    ),
    ("Wellington|Christchurch|Hamilton, New Zealand|New Zealand", "Pacific/Auckland", None),
)

# Typed IANA names that are old aliases, stored under their current name.
_RENAMED_KEYS: Final[dict[str, str]] = {
    "Europe/Kiev": "Europe/Kyiv",
    "Europe/Uzhgorod": "Europe/Kyiv",
    "Europe/Zaporozhye": "Europe/Kyiv",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
    "Asia/Rangoon": "Asia/Yangon",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Dacca": "Asia/Dhaka",
    "Asia/Ulan_Bator": "Asia/Ulaanbaatar",
    "Asia/Chongqing": "Asia/Shanghai",
    "Asia/Chungking": "Asia/Shanghai",
    "Asia/Harbin": "Asia/Shanghai",
    "Asia/Macao": "Asia/Macau",
    "Asia/Istanbul": "Europe/Istanbul",
    "Europe/Belfast": "Europe/London",
    "America/Godthab": "America/Nuuk",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Indianapolis": "America/Indiana/Indianapolis",
    "US/Eastern": "America/New_York",
    "US/Central": "America/Chicago",
    "US/Mountain": "America/Denver",
    "US/Pacific": "America/Los_Angeles",
    "US/Alaska": "America/Anchorage",
    "US/Hawaii": "Pacific/Honolulu",
    "US/Arizona": "America/Phoenix",
}

# Abbreviations people type; each stands for a zone that follows local daylight saving.
_ABBREVIATIONS: Final[dict[str, tuple[str, str]]] = {
    **dict.fromkeys(("EST", "EDT", "ET"), ("America/New_York", "US Eastern time")),
    **dict.fromkeys(("CST", "CDT", "CT"), ("America/Chicago", "US Central time")),
    **dict.fromkeys(("MST", "MDT", "MT"), ("America/Denver", "US Mountain time")),
    **dict.fromkeys(("PST", "PDT", "PT"), ("America/Los_Angeles", "US Pacific time")),
    **dict.fromkeys(("AKST", "AKDT"), ("America/Anchorage", "Alaska time")),
    "HST": ("Pacific/Honolulu", "Hawaii time"),
    "BST": ("Europe/London", "UK time"),
    **dict.fromkeys(("WET", "WEST"), ("Europe/Lisbon", "Western European time (Lisbon)")),
    **dict.fromkeys(("CET", "CEST"), ("Europe/Berlin", "Central European time (Berlin)")),
    **dict.fromkeys(("EET", "EEST"), ("Europe/Athens", "Eastern European time (Athens)")),
    "MSK": ("Europe/Moscow", "Moscow time"),
    "IST": ("Asia/Kolkata", "India Standard Time"),
    "PKT": ("Asia/Karachi", "Pakistan time"),
    "JST": ("Asia/Tokyo", "Japan time"),
    "KST": ("Asia/Seoul", "Korea time"),
    "SGT": ("Asia/Singapore", "Singapore time"),
    "HKT": ("Asia/Hong_Kong", "Hong Kong time"),
    "PHT": ("Asia/Manila", "Philippine time"),
    "WIB": ("Asia/Jakarta", "Western Indonesia time (Jakarta)"),
    **dict.fromkeys(("AEST", "AEDT"), ("Australia/Sydney", "Australian Eastern time (Sydney)")),
    **dict.fromkeys(("ACST", "ACDT"), ("Australia/Adelaide", "Australian Central time")),
    "AWST": ("Australia/Perth", "Australian Western time"),
    **dict.fromkeys(("NZST", "NZDT"), ("Pacific/Auckland", "New Zealand time")),
    "SAST": ("Africa/Johannesburg", "South African time"),
    "WAT": ("Africa/Lagos", "West Africa time"),
    "CAT": ("Africa/Maputo", "Central Africa time"),
    "EAT": ("Africa/Nairobi", "East Africa time"),
    "BRT": ("America/Sao_Paulo", "Brasília time"),
    "ART": ("America/Argentina/Buenos_Aires", "Argentina time"),
}

# IANA areas whose last component is a place name worth matching on its own.
_CITY_AREAS: Final = (
    "Africa/",
    "America/",
    "Arctic/",
    "Asia/",
    "Atlantic/",
    "Australia/",
    "Europe/",
    "Indian/",
    "Pacific/",
)


@dataclass(frozen=True)
class _Place:
    name: str  # for display and suggestions
    key: str
    note: str | None


def _place_sort_key(key: str) -> tuple[bool, bool, int]:
    # Prefer current names, then the more specific (America/Argentina/Cordoba over the
    # old America/Cordoba), then the shortest.
    return (key in _RENAMED_KEYS, key.count("/") < 2, len(key))


@cache
def _places() -> dict[str, _Place]:
    """Normalised name → place: IANA city parts first, then the curated table on top."""
    by_city: dict[str, list[str]] = {}
    for key in _available_keys():
        if key.startswith(_CITY_AREAS):
            by_city.setdefault(key.rsplit("/", 1)[1], []).append(key)
    places: dict[str, _Place] = {}
    for city, keys in by_city.items():
        key = min(keys, key=_place_sort_key)
        key = _RENAMED_KEYS.get(key, key)
        places[_normalize(city)] = _Place(city.replace("_", " "), key, None)
    from_table: set[str] = set()
    for names, key, note in _PLACE_TABLE:
        for name in names.split("|"):
            norm = _normalize(name)
            if norm not in from_table:  # the first spelling listed is the one shown
                places[norm] = _Place(name, key, note)
                from_table.add(norm)
    return places


# --------------------------------------------------------------------------- resolving

_OFFSET_TEXT: Final = re.compile(
    r"^(?:utc|gmt|z)?\s*([+\-−])\s*(\d{1,2})(?:(?::|\.|h)?(\d{2}))?$", re.IGNORECASE
)
_UTC_WORDS: Final = frozenset({"utc", "gmt", "z", "zulu", "utc0", "gmt0", "utc+0", "gmt+0"})


def _fixed_note(offset: timedelta) -> str:
    return (
        f"That's a fixed offset (UTC{format_offset(offset)}), "
        "so reminders won't follow daylight saving changes."
    )


def _parse_offset(text: str) -> ResolvedZone | None:
    s = text.strip().replace(" ", "")
    if s.lower() in _UTC_WORDS:
        return ResolvedZone("UTC", UTC, "UTC", True, (_fixed_note(timedelta(0)),))
    m = _OFFSET_TEXT.match(s)
    if m is None:
        return None
    hours, minutes = int(m[2]), int(m[3] or 0)
    offset = timedelta(hours=hours, minutes=minutes)
    if m[1] != "+":
        offset = -offset
    if minutes > 59 or not MIN_OFFSET <= offset <= MAX_OFFSET:
        raise TimezoneError(
            f"“{text.strip()}” isn't a real UTC offset; they run from -12:00 to +14:00."
        )
    tz = _fixed_zone(offset)
    key = zone_key(tz)
    name = "UTC" if key == "UTC" else f"UTC{key}"
    return ResolvedZone(key, tz, name, True, (_fixed_note(offset),))


def _from_key(key: str, name: str, notes: tuple[str, ...] = ()) -> ResolvedZone:
    tz = zone_from_key(key)
    fixed = _is_fixed(tz) and (key.startswith("Etc/") or "/" not in key)
    if fixed:
        offset = tz.utcoffset(datetime(2026, 1, 1, tzinfo=UTC))
        assert offset is not None
        notes = (*notes, _fixed_note(offset))
        if key.startswith("Etc/"):  # "Etc/GMT+3" means UTC-03:00: show the latter
            name = f"UTC{format_offset(offset)}" if offset else "UTC"
    return ResolvedZone(key, tz, name, fixed, notes)


def _lookup_place(text: str) -> ResolvedZone | None:
    places = _places()
    norm = _normalize(text)
    place = places.get(norm)
    if place is None and "," in text:
        # "Berlin, Germany": fall back to the part before the first comma.
        place = places.get(_normalize(text.split(",", 1)[0]))
    if place is None:
        return None
    notes = (place.note,) if place.note else ()
    return _from_key(place.key, place.name, notes)


def _suggestions(text: str) -> tuple[str, ...]:
    norm = _normalize(text)
    if "/" in text:
        names = {_normalize(k): k for k in _available_keys() - _RENAMED_KEYS.keys() if "/" in k}
    else:
        names = {n: p.name for n, p in _places().items()}
    found: list[str] = []
    for match in difflib.get_close_matches(norm, list(names), n=6, cutoff=0.7):
        if names[match] not in found:
            found.append(names[match])
    return tuple(found[:3])


def resolve_timezone(text: str) -> ResolvedZone:
    """A zone from an IANA name, a city or country, an abbreviation, or a UTC offset.

    Raises :class:`TimezoneError` (with up to 3 ``suggestions``) when nothing fits.
    """
    s = " ".join(text.strip().split())
    if not s:
        raise TimezoneError("Send a city like “Berlin” or an offset like “+05:30”.")
    fixed = _parse_offset(s)
    if fixed is not None:
        return fixed
    abbreviation = _ABBREVIATIONS.get(s.upper())
    if abbreviation is not None:
        key, meaning = abbreviation
        return _from_key(key, key, (f"I read “{s}” as {meaning}.",))
    if "/" in s:
        typed_key = _keys_by_lower().get(s.lower().replace(" ", "_"))
        if typed_key is not None:
            typed_key = _RENAMED_KEYS.get(typed_key, typed_key)
            return _from_key(typed_key, typed_key)
    place = _lookup_place(s)
    if place is not None:
        return place
    suggestions = _suggestions(s)
    if suggestions:
        raise TimezoneError(f"I don't know “{s}” as a place or time zone.", suggestions)
    raise TimezoneError(
        f"I don't know “{s}” as a place or time zone; try a big city near you or “+05:30”."
    )


# --------------------------------------------------------------------------- location


def timezone_from_location(lat: float, lon: float) -> str | None:
    """The IANA key at a point, offline; ``Etc/GMT±N`` at sea, None if unknown.

    Backed by tzfpy's bundled polygons (a 3 MB wheel with no dependencies, where
    timezonefinder would bring 110 MB with numpy); the first call loads them (~0.1 s).
    """
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"not a coordinate: {lat}, {lon}")
    key = tzfpy.get_tz(lon, lat)
    if not key:
        return None
    key = _RENAMED_KEYS.get(key, key)
    return key if key in _available_keys() else None


def resolve_location(lat: float, lon: float) -> ResolvedZone | None:
    """:func:`timezone_from_location` as a :class:`ResolvedZone` (fixed at sea)."""
    key = timezone_from_location(lat, lon)
    return None if key is None else _from_key(key, key)
