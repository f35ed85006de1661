"""Maintenance windows: when a job may start on a host.

A window is an RFC 5545 recurrence rule (``RRULE``) evaluated in an IANA time zone, a
duration, and blackout dates. Everything here is pure: callers pass ``now`` (always
timezone-aware) and get UTC values back. docs/maintenance-windows.md has the user guide.

Semantics
=========

**Local wall-clock rules.** The rule is expanded in the window's zone as naive local
times ("02:00 every Saturday" stays 02:00 local all year) and each start is then
converted to UTC:

* a start inside a spring-forward gap is read with the UTC offset in force *before* the
  gap (RFC 5545 section 3.3.5), so 02:30 on 2026-03-29 in Europe/Berlin opens at 03:30
  CEST (01:30 UTC). This is what ``zoneinfo`` does for ``fold=0``;
* a start inside the repeated fall-back hour means its *first* occurrence (``fold=0``),
  so 02:30 on 2026-10-25 in Europe/Berlin opens at 02:30 CEST (00:30 UTC). A rule firing
  every hour therefore fires once, not twice, in the repeated hour;
* two starts that land on the same instant (02:30 and 03:30 on a spring-forward day)
  make one instance, as RFC 5545 counts duplicates once.

**Elapsed durations.** An instance lasts ``duration`` of real time from its start: a
three-hour window opening at 01:00 on the Berlin fall-back night closes at 03:00 CET,
three real hours later, although the wall clock moved only two hours.

**Start date.** The rule is anchored at 00:00 local on ``start_date`` (default
``DEFAULT_START_DATE``, a fixed day, so nothing depends on the clock). It is *not* an
instance by itself, unlike an RFC 5545 DTSTART. A rule that would take something from
the start date (the weekday of a WEEKLY rule without BYDAY, the day of a MONTHLY or
YEARLY rule without BYMONTHDAY/BYDAY, the phase of INTERVAL > 1, the first instance
COUNT counts from) needs an explicit ``start_date``.

**Supported RRULE parts.** FREQ (YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY), INTERVAL,
COUNT, UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, BYMINUTE, BYSETPOS, WKST. The start
time must be pinned: BYHOUR is required (BYMINUTE defaults to 0); an HOURLY rule needs
BYMINUTE. Instances start on whole minutes. ``UNTIL`` is either a local date
(``UNTIL=20261231``: the last local day an instance may start, inclusive) or a UTC
date-time (``UNTIL=20261231T230000Z``: the last instant an instance may start), as RFC
5545 requires for rules anchored in a time zone; a floating date-time is refused.

**No self-overlap.** Validation samples the first 400 days after the start date (and
400 days from 2025-01-01, so current zone rules are sampled too) and refuses a duration
longer than the shortest real gap between two starts; durations are also capped at seven
days. Should an instance still reach into the next one (a zone changed its rules), it
ends when the next one starts, so instances never overlap.

**Blackouts** are inclusive ranges of local dates on which no window may be open. An
instance that *starts* inside a blackout is dropped; an instance that starts before a
blackout and runs into it is cut at the blackout's first moment (local midnight). So a
22:00-02:00 window on the evening before a blackout day becomes 22:00-24:00.

**Several windows.** ``can_start`` is true when *one* window is open with enough time
left; instances of different windows are not merged. An empty sequence of windows is
never open (``can_start`` returns False, ``next_start`` None): "no windows means no
restriction" is the caller's decision, taken before asking this module.

**Search bound.** ``next_window`` and ``next_start`` look ``SEARCH_HORIZON`` (400 days)
ahead and return None beyond it.

Performance: expansions are cached per (window, local calendar month) in an LRU cache
(``_month``); parsing and validation per window (``_compile``). Asking many hosts about
the same few windows at the same ``now`` costs two or three cache hits and a bisection
each. Rules are expanded from a recent point of their recurrence, not from their start
date, unless they use COUNT.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule as DateutilRule
from dateutil.rrule import rrulestr

from patchwarden.core.errors import ValidationFailed
from patchwarden.core.values import value

DEFAULT_START_DATE = date(2000, 1, 1)
SEARCH_HORIZON = timedelta(days=400)
MAX_DURATION = timedelta(days=7)

_FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_PARTS = (
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYMONTH",
    "BYMONTHDAY",
    "BYDAY",
    "BYHOUR",
    "BYMINUTE",
    "BYSETPOS",
    "WKST",
)
_REFUSED = {
    "BYSECOND": "windows open on whole minutes; drop BYSECOND",
    "BYYEARDAY": "use BYMONTH with BYMONTHDAY or BYDAY instead",
    "BYWEEKNO": "use BYMONTH with BYMONTHDAY or BYDAY instead",
    "BYEASTER": "BYEASTER is a dateutil extension, not RFC 5545",
}
# (smallest, largest absolute value, negative values allowed)
_INT_LISTS = {
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYHOUR": (0, 23, False),
    "BYMINUTE": (0, 59, False),
    "BYSETPOS": (1, 366, True),
}
_MAX_INTERVAL = 1000
_BYDAY = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_UNTIL_DATE = re.compile(r"\d{8}")
_UNTIL_UTC = re.compile(r"(\d{8}T\d{6})Z")
_UNTIL_FLOATING = re.compile(r"\d{8}T\d{6}")

# Length of the 400-year Gregorian cycle in each frequency's unit: shifting a rule by a
# multiple of it (and of its INTERVAL) changes nothing about which instances it yields.
_CYCLE_UNITS = {
    "YEARLY": 400,
    "MONTHLY": 4800,
    "WEEKLY": 20871,
    "DAILY": 146097,
    "HOURLY": 146097 * 24,
}
# 9972..9999 holds all 14 kinds of calendar year and dateutil stops at year 9999, so an
# INTERVAL=1 rule that fires at all fires there, and a rule that never fires costs at
# most 28 years of iteration (dateutil otherwise loops until year 9999 looking for one).
_PROBE_FROM = datetime(9972, 1, 1)
_OVERLAP_SAMPLE = timedelta(days=400)
_RECENT_SAMPLE_FROM = datetime(2025, 1, 1)
_MIN_START_YEAR = 1900
_MAX_YEAR = 9000
_MARGIN = timedelta(days=2)  # more than any UTC offset change, including date-line jumps


@value
class Blackout:
    """Local dates ``start`` through ``end`` (inclusive) on which no window may be open."""

    start: date
    end: date

    def __post_init__(self) -> None:
        for bound in (self.start, self.end):
            if isinstance(bound, datetime) or not isinstance(bound, date):
                raise ValidationFailed(
                    f"blackout bound {bound!r} is not a date",
                    hint="blackouts are whole local days, e.g. Blackout(date(2026, 12, 24), "
                    "date(2027, 1, 1))",
                )
        if self.start > self.end:
            raise ValidationFailed(
                f"blackout {self.start}..{self.end} ends before it starts",
                hint="blackouts are inclusive date ranges; swap the dates",
            )


@value
class Interval:
    """One instance of a window: open from ``start`` (inclusive) to ``end`` (exclusive), UTC."""

    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        """How long the instance is open."""
        return self.end - self.start

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) lies in ``[start, end)``."""
        return self.start <= moment < self.end


@value
class MaintenanceWindow:
    """A recurring maintenance window; build it with ``parse_window``.

    ``rrule`` is an RFC 5545 RRULE value (an optional ``RRULE:`` prefix is allowed),
    evaluated in the IANA zone ``timezone`` from 00:00 local on ``start_date``
    (``DEFAULT_START_DATE`` when None). Each instance lasts ``duration``; ``blackouts``
    remove instances as the module docstring describes.
    """

    rrule: str
    timezone: str
    duration: timedelta
    start_date: date | None = None
    blackouts: tuple[Blackout, ...] = ()
    name: str = ""


def parse_window(
    rrule: str,
    timezone: str,
    duration_minutes: int,
    *,
    blackouts: Iterable[Blackout | tuple[date, date]] = (),
    start_date: date | None = None,
    name: str = "",
) -> MaintenanceWindow:
    """Validate the parts of a maintenance window and return it.

    Raises ``ValidationFailed`` naming the offending part and how to fix it: RRULE
    syntax and supported parts, a start time that is not pinned, an unknown time zone,
    a duration that is not positive, is over seven days or makes the window overlap its
    next instance, a rule that never fires, and blackouts that end before they start.
    """
    if isinstance(duration_minutes, bool) or not isinstance(duration_minutes, int):
        raise ValidationFailed(
            f"duration_minutes must be a whole number of minutes, not {duration_minutes!r}"
        )
    window = MaintenanceWindow(
        rrule=rrule.strip(),
        timezone=timezone.strip(),
        duration=timedelta(minutes=duration_minutes),
        start_date=start_date,
        blackouts=tuple(sorted(map(_blackout, blackouts), key=lambda b: (b.start, b.end))),
        name=name,
    )
    _compile(window)
    return window


def occurrences(window: MaintenanceWindow, start: datetime, end: datetime) -> list[Interval]:
    """Every instance of ``window`` overlapping ``[start, end)``, in order, in UTC.

    Instances are returned whole (not clipped to the range), after blackouts.
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    if start > end:
        raise ValidationFailed(f"occurrences: start {start} is after end {end}")
    if start == end:
        return []
    return [iv for iv in _instances(window, start - window.duration, end) if iv.end > start]


def current(window: MaintenanceWindow, now: datetime) -> Interval | None:
    """The instance of ``window`` open at ``now``, or None."""
    now = _utc(now, "now")
    for iv in _instances(window, now - window.duration, now + timedelta(microseconds=1)):
        if iv.end > now:
            return iv
    return None


def remaining(window: MaintenanceWindow, now: datetime) -> timedelta:
    """Time left in the instance open at ``now``; zero when the window is closed."""
    iv = current(window, now)
    return iv.end - _utc(now, "now") if iv else timedelta(0)


def next_window(
    window: MaintenanceWindow, now: datetime, *, horizon: timedelta = SEARCH_HORIZON
) -> Interval | None:
    """The instance open at ``now``, else the next one starting before ``now + horizon``."""
    now = _utc(now, "now")
    for iv in _instances(window, now - window.duration, now + horizon):
        if iv.end > now:
            return iv
    return None


def can_start(windows: Iterable[MaintenanceWindow], now: datetime, expected: timedelta) -> bool:
    """Whether a job expected to take ``expected`` may start at ``now``.

    True when one of ``windows`` is open at ``now`` with at least ``expected`` left. An
    empty ``windows`` is never open: callers decide what "no windows" means.
    """
    now = _utc(now, "now")
    _check_expected(expected)
    for window in windows:
        iv = current(window, now)
        if iv is not None and iv.end - now >= expected:
            return True
    return False


def next_start(
    windows: Iterable[MaintenanceWindow],
    now: datetime,
    expected: timedelta,
    *,
    horizon: timedelta = SEARCH_HORIZON,
) -> datetime | None:
    """The earliest moment at or after ``now`` at which ``can_start`` is true, in UTC.

    None when no window has an instance with ``expected`` to spare starting before
    ``now + horizon`` (or ``windows`` is empty).
    """
    now = _utc(now, "now")
    _check_expected(expected)
    best: datetime | None = None
    for window in windows:
        if window.duration < expected:
            continue
        for iv in _instances(window, now - window.duration, now + horizon):
            moment = max(iv.start, now)
            if moment < iv.end and iv.end - moment >= expected:
                best = moment if best is None else min(best, moment)
                break
    return best


# --- expansion ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """A parsed RRULE with every start-date-derived part made explicit."""

    parts: tuple[tuple[str, str], ...]  # as given to dateutil; UNTIL as a local bound
    freq: str
    interval: int
    count: int | None
    until_utc: datetime | None  # exact UTC bound when UNTIL was given in UTC
    anchor: datetime  # 00:00 local on the start date, naive

    def text(self, *, bounded: bool = True, interval: int | None = None) -> str:
        """The rule for dateutil; ``bounded=False`` drops COUNT and UNTIL."""
        parts = dict(self.parts)
        if not bounded:
            parts.pop("COUNT", None)
            parts.pop("UNTIL", None)
        if interval is not None:
            parts["INTERVAL"] = str(interval)
        return ";".join(f"{k}={v}" for k, v in parts.items())


@dataclass(frozen=True, slots=True)
class _Compiled:
    zone: ZoneInfo
    rule: _Rule
    blackouts: tuple[tuple[datetime, datetime], ...]  # UTC, sorted


@lru_cache(maxsize=1024)
def _compile(window: MaintenanceWindow) -> _Compiled:
    """Validate ``window`` once and keep what expansion needs."""
    label = _label(window)
    zone = _zone(window.timezone, label)
    _check_duration(window.duration, label)
    if window.start_date is not None and (
        isinstance(window.start_date, datetime)
        or not _MIN_START_YEAR <= window.start_date.year <= _MAX_YEAR
    ):
        raise ValidationFailed(
            f"{label}: start_date {window.start_date!r} must be a date between "
            f"{_MIN_START_YEAR} and {_MAX_YEAR}"
        )
    rule = _parse_rule(window.rrule, window.start_date, zone, label)
    _check_fires(rule, label)
    _check_no_overlap(rule, zone, window.duration, label)
    blackouts = []
    for b in window.blackouts:
        if not isinstance(b, Blackout):
            raise ValidationFailed(f"{label}: blackout {b!r} is not a Blackout")
        blackouts.append(
            (
                _to_utc(datetime.combine(b.start, time()), zone),
                _to_utc(datetime.combine(b.end + timedelta(days=1), time()), zone),
            )
        )
    return _Compiled(zone, rule, tuple(sorted(blackouts)))


def _instances(window: MaintenanceWindow, lo: datetime, hi: datetime) -> Iterator[Interval]:
    """Instances whose start lies in ``[lo, hi)`` (UTC), in order."""
    compiled = _compile(window)
    zone = compiled.zone
    # A month's instances are those whose UTC start falls between its first local
    # midnight and the next month's; start a month early in case lo's local date sits in
    # a fall-back hour that belongs to the next month.
    month = _month_index(lo.astimezone(zone)) - 1
    month = max(month, _month_index(compiled.rule.anchor) - 1)
    while month < _MAX_YEAR * 12:
        year, month0 = divmod(month, 12)
        if _to_utc(datetime(year, month0 + 1, 1), zone) >= hi:
            return
        starts, intervals = _month(window, year, month0 + 1)
        for iv in intervals[bisect_left(starts, lo) :]:
            if iv.start >= hi:
                return
            yield iv
        month += 1


@lru_cache(maxsize=2048)
def _month(
    window: MaintenanceWindow, year: int, month: int
) -> tuple[tuple[datetime, ...], tuple[Interval, ...]]:
    """The instances whose UTC start falls in local ``year-month`` (and their starts)."""
    compiled = _compile(window)
    zone, rule, duration = compiled.zone, compiled.rule, window.duration
    first = datetime(year, month, 1)
    following = datetime(year + month // 12, month % 12 + 1, 1)
    lo, hi = _to_utc(first, zone), _to_utc(following, zone)
    # Expand a little around the month: DST moves starts across its edges, and the
    # first start after the month may cut the month's last instance short.
    starts = _utc_starts(rule, zone, first - _MARGIN, following + duration + _MARGIN)
    result: list[Interval] = []
    for i, start in enumerate(starts):
        if not lo <= start < hi:
            continue
        end = start + duration
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        interval = _cut_by_blackouts(start, end, compiled.blackouts)
        if interval is not None:
            result.append(interval)
    return tuple(iv.start for iv in result), tuple(result)


def _cut_by_blackouts(
    start: datetime, end: datetime, blackouts: tuple[tuple[datetime, datetime], ...]
) -> Interval | None:
    for b_start, b_end in blackouts:
        if b_start <= start < b_end:
            return None
        if start < b_start < end:
            end = b_start
    return Interval(start, end)


def _utc_starts(rule: _Rule, zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """The distinct UTC starts of the rule's local starts in ``[lo, hi]``, sorted."""
    local = _dateutil(rule.text(), _fast_forward(rule, lo)).between(lo, hi, inc=True)
    starts = {_to_utc(moment, zone) for moment in local}
    if rule.until_utc is not None:
        starts = {moment for moment in starts if moment <= rule.until_utc}
    return sorted(starts)


def _fast_forward(rule: _Rule, target: datetime) -> datetime:
    """A later anchor, at or before ``target`` minus one period, yielding the same starts.

    Moving the anchor by whole INTERVAL periods keeps the rule's lattice of periods, and
    every part dateutil would take from the anchor is already explicit (``_parse_rule``),
    so the starts from the new anchor on are unchanged. COUNT counts from the real
    anchor, so COUNT rules are always expanded from it.
    """
    anchor, n = rule.anchor, rule.interval
    if rule.count is not None or target <= anchor:
        return anchor
    if rule.freq == "YEARLY":
        k = (target.year - 1 - anchor.year) // n
        return datetime(anchor.year + k * n, 1, 1) if k > 0 else anchor
    if rule.freq == "MONTHLY":
        k = (_month_index(target) - 1 - _month_index(anchor)) // n
        if k <= 0:
            return anchor
        year, month0 = divmod(_month_index(anchor) + k * n, 12)
        return datetime(year, month0 + 1, 1)
    if rule.freq == "WEEKLY":
        step_days = 7 * n
    elif rule.freq == "DAILY":
        step_days = n
    else:  # HOURLY: whole days that are also whole INTERVALs
        step_days = math.lcm(n, 24) // 24
    # Keep a week in hand: dateutil truncates the anchor's own WEEKLY period.
    k = ((target - anchor).days - 8) // step_days
    return anchor + timedelta(days=k * step_days) if k > 0 else anchor


def _dateutil(text: str, anchor: datetime) -> DateutilRule:
    parsed = rrulestr(text, dtstart=anchor)
    if not isinstance(parsed, DateutilRule):  # pragma: no cover - one RRULE in, one out
        raise TypeError(f"expected one rule from {text!r}")
    return parsed


# --- validation --------------------------------------------------------------------


def _parse_rule(text: str, start_date: date | None, zone: ZoneInfo, label: str) -> _Rule:
    parts = _split_rule(text, label)
    freq, interval, count = _check_values(parts, label)
    _make_explicit(
        parts, freq=freq, interval=interval, count=count, start_date=start_date, label=label
    )
    anchor = datetime.combine(start_date or DEFAULT_START_DATE, time())
    until_utc: datetime | None = None
    if "UNTIL" in parts:
        bound, until_utc = _parse_until(parts["UNTIL"], zone, label)
        parts["UNTIL"] = f"{bound:%Y%m%dT%H%M%S}"
    rule = _Rule(tuple(parts.items()), freq, interval, count, until_utc, anchor)
    try:
        _dateutil(rule.text(), anchor)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(
            f"{label}: invalid RRULE {text!r}: {exc}",
            hint="see RFC 5545 section 3.3.10 for the syntax",
        ) from exc
    return rule


def _split_rule(text: str, label: str) -> dict[str, str]:
    """The RRULE's NAME=VALUE parts, upper-cased, supported names only."""
    raw = text.strip()
    upper = raw.upper()
    if "DTSTART" in upper:
        raise ValidationFailed(
            f"{label}: DTSTART is not accepted inside the RRULE",
            hint="give the first local day as start_date and the start time as "
            "BYHOUR/BYMINUTE; the window's timezone applies to both",
        )
    if "\n" in raw or "\r" in raw:
        raise ValidationFailed(
            f"{label}: the RRULE must be one line",
            hint="pass a single RRULE value such as FREQ=WEEKLY;BYDAY=SA;BYHOUR=2",
        )
    if upper.startswith("RRULE:"):
        raw = raw[len("RRULE:") :]
    parts: dict[str, str] = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        key, val = key.strip().upper(), val.strip().upper()
        if not sep or not key or not val or "=" in val or any(c.isspace() for c in val):
            raise ValidationFailed(
                f"{label}: RRULE part {item!r} is not NAME=VALUE",
                hint="parts are separated by ';', e.g. FREQ=WEEKLY;BYDAY=SA;BYHOUR=2",
            )
        if key in _REFUSED:
            raise ValidationFailed(
                f"{label}: RRULE part {key} is not supported", hint=_REFUSED[key]
            )
        if key not in _PARTS:
            raise ValidationFailed(
                f"{label}: unknown RRULE part {key!r}", hint=f"supported: {', '.join(_PARTS)}"
            )
        if key in parts:
            raise ValidationFailed(f"{label}: RRULE part {key} is given twice")
        parts[key] = val
    return parts


def _check_values(parts: dict[str, str], label: str) -> tuple[str, int, int | None]:
    """Check each part's value against RFC 5545; return FREQ, INTERVAL and COUNT."""
    freq = parts.get("FREQ")
    if freq is None:
        raise ValidationFailed(
            f"{label}: the RRULE has no FREQ", hint=f"add FREQ=, one of {', '.join(_FREQS)}"
        )
    if freq in ("MINUTELY", "SECONDLY"):
        raise ValidationFailed(
            f"{label}: FREQ={freq} is too fine for a maintenance window",
            hint="use FREQ=HOURLY with BYMINUTE, or DAILY with several BYHOUR values",
        )
    if freq not in _FREQS:
        raise ValidationFailed(
            f"{label}: FREQ={freq} is not a frequency", hint=f"use one of {', '.join(_FREQS)}"
        )
    interval = _positive_int(parts, "INTERVAL", label, maximum=_MAX_INTERVAL) or 1
    count = _positive_int(parts, "COUNT", label, maximum=None)
    if count is not None and "UNTIL" in parts:
        raise ValidationFailed(
            f"{label}: COUNT and UNTIL cannot both be given (RFC 5545)", hint="keep one"
        )
    for key, bounds in _INT_LISTS.items():
        if key in parts:
            _check_int_list(key, parts[key], *bounds, label=label)
    if "BYDAY" in parts:
        _check_byday(parts["BYDAY"], freq, label)
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        raise ValidationFailed(
            f"{label}: WKST={parts['WKST']} is not a weekday", hint=f"use one of {_WEEKDAYS}"
        )
    if freq == "WEEKLY" and "BYMONTHDAY" in parts:
        raise ValidationFailed(
            f"{label}: BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545)",
            hint="use FREQ=MONTHLY;BYMONTHDAY=... or FREQ=DAILY;BYMONTHDAY=...",
        )
    return freq, interval, count


def _make_explicit(
    parts: dict[str, str],
    *,
    freq: str,
    interval: int,
    count: int | None,
    start_date: date | None,
    label: str,
) -> None:
    """Pin the start time and spell out what dateutil would take from the anchor.

    Explicit parts keep the rule's meaning when expansion starts from a later anchor
    (``_fast_forward``). Parts that would come from the default start date are refused.
    """
    # The anchor is local midnight: without BYHOUR (BYMINUTE) that is the start time.
    if freq == "HOURLY":
        if "BYMINUTE" not in parts:
            raise ValidationFailed(
                f"{label}: an HOURLY rule needs BYMINUTE",
                hint="say at which minute of the hour the window opens, e.g. BYMINUTE=0",
            )
    else:
        if "BYHOUR" not in parts:
            raise ValidationFailed(
                f"{label}: the RRULE has no BYHOUR, so it has no start time",
                hint="add BYHOUR (and BYMINUTE, default 0), e.g. BYHOUR=2;BYMINUTE=30; "
                "use BYHOUR=0 for midnight",
            )
        parts.setdefault("BYMINUTE", "0")

    derived: dict[str, str] = {}
    if "BYMONTHDAY" not in parts and "BYDAY" not in parts:
        day = start_date or DEFAULT_START_DATE
        if freq == "WEEKLY":
            derived["BYDAY"] = _WEEKDAYS[day.weekday()]
        elif freq == "MONTHLY":
            derived["BYMONTHDAY"] = str(day.day)
        elif freq == "YEARLY":
            if "BYMONTH" not in parts:
                derived["BYMONTH"] = str(day.month)
            derived["BYMONTHDAY"] = str(day.day)
    if start_date is None:
        needs = [f"the {k} ({v}) of the start date" for k, v in derived.items()]
        if interval > 1:
            needs.append(f"the phase of INTERVAL={interval}")
        if count is not None:
            needs.append("the first instance COUNT counts from")
        if needs:
            raise ValidationFailed(
                f"{label}: the rule takes {', '.join(needs)}, but no start_date is set",
                hint="set start_date, or name the days explicitly (BYDAY=SA, BYMONTHDAY=1)",
            )
    parts.update(derived)


def _parse_until(raw: str, zone: ZoneInfo, label: str) -> tuple[datetime, datetime | None]:
    """A naive local bound for dateutil and, for a UTC UNTIL, the exact UTC bound."""
    try:
        if _UNTIL_DATE.fullmatch(raw):
            day = datetime.strptime(raw, "%Y%m%d")
            if day.year <= _MAX_YEAR:
                return day.replace(hour=23, minute=59, second=59), None
        elif match := _UNTIL_UTC.fullmatch(raw):
            moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            if moment.year <= _MAX_YEAR:
                # Loose local bound; starts are then checked against the UTC instant.
                local = moment.astimezone(zone).replace(tzinfo=None)
                return local + timedelta(days=1), moment
    except ValueError as exc:
        raise ValidationFailed(f"{label}: UNTIL={raw} is not a valid date") from exc
    if _UNTIL_DATE.fullmatch(raw) or _UNTIL_UTC.fullmatch(raw):
        raise ValidationFailed(f"{label}: UNTIL={raw} is after the year {_MAX_YEAR}")
    if _UNTIL_FLOATING.fullmatch(raw):
        raise ValidationFailed(
            f"{label}: UNTIL={raw} has no time zone",
            hint="write it in UTC with a trailing Z (UNTIL=20261231T230000Z) or as a "
            "local date (UNTIL=20261231, inclusive), as RFC 5545 requires here",
        )
    raise ValidationFailed(
        f"{label}: UNTIL={raw} is neither a date (YYYYMMDD) nor a UTC date-time (YYYYMMDDTHHMMSSZ)"
    )


def _check_fires(rule: _Rule, label: str) -> None:
    """Refuse rules that never produce a start (dateutil would search until year 9999)."""
    if next(iter(_dateutil(rule.text(bounded=False, interval=1), _PROBE_FROM)), None) is None:
        raise ValidationFailed(
            f"{label}: the RRULE never fires",
            hint="check that the days exist, e.g. BYMONTH=2;BYMONTHDAY=30 never happens",
        )
    if rule.interval > 1:
        # Same rule, moved by whole cycles of calendar and INTERVAL towards year 9999.
        cycle = 400 * (rule.interval // math.gcd(rule.interval, _CYCLE_UNITS[rule.freq]))
        year = rule.anchor.year
        if year + cycle <= _MAX_YEAR:
            year += (9998 - cycle - year) // cycle * cycle
        probe = _dateutil(rule.text(bounded=False), rule.anchor.replace(year=year))
        if next(iter(probe), None) is None:
            raise ValidationFailed(
                f"{label}: with INTERVAL={rule.interval} from {rule.anchor:%Y-%m-%d} the "
                "RRULE never reaches a day it allows",
                hint="change INTERVAL or start_date, or widen BYMONTH/BYDAY",
            )
    if next(iter(_dateutil(rule.text(), rule.anchor)), None) is None:
        raise ValidationFailed(
            f"{label}: the RRULE ends (UNTIL) before its first instance",
            hint="move UNTIL later or start_date earlier",
        )


def _check_no_overlap(rule: _Rule, zone: ZoneInfo, duration: timedelta, label: str) -> None:
    samples = [rule.anchor]
    if rule.count is None and rule.anchor < _RECENT_SAMPLE_FROM:
        samples.append(_RECENT_SAMPLE_FROM)
    for first in samples:
        for a, b in pairwise(_utc_starts(rule, zone, first, first + _OVERLAP_SAMPLE)):
            if b - a < duration:
                raise ValidationFailed(
                    f"{label}: the window lasts {duration} but the instances starting "
                    f"{a.astimezone(zone):%Y-%m-%d %H:%M %Z} and "
                    f"{b.astimezone(zone):%Y-%m-%d %H:%M %Z} are only {b - a} apart",
                    hint=f"shorten the duration to at most {b - a} or space the starts "
                    "further apart (daylight-saving changes shorten some gaps)",
                )


def _blackout(item: Blackout | tuple[date, date]) -> Blackout:
    if isinstance(item, Blackout):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return Blackout(*item)
    raise ValidationFailed(
        f"blackout {item!r} is neither a Blackout nor a (start, end) pair of dates"
    )


def _check_duration(duration: timedelta, label: str) -> None:
    if not isinstance(duration, timedelta) or duration <= timedelta(0):
        raise ValidationFailed(
            f"{label}: duration must be positive, not {duration!r}",
            hint="give the window's length in minutes, e.g. 240 for four hours",
        )
    if duration > MAX_DURATION:
        raise ValidationFailed(
            f"{label}: duration {duration} is longer than {MAX_DURATION.days} days",
            hint="a maintenance window is a recurring slot; for longer periods use a "
            "DAILY rule, and blackouts for the days to avoid",
        )


def _check_expected(expected: timedelta) -> None:
    if not isinstance(expected, timedelta) or expected < timedelta(0):
        raise ValidationFailed(f"expected job duration must be a timedelta >= 0, not {expected!r}")


def _positive_int(
    parts: dict[str, str], key: str, label: str, *, maximum: int | None
) -> int | None:
    if key not in parts:
        return None
    raw = parts[key]
    if not raw.isdigit() or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        limit = f" and at most {maximum}" if maximum is not None else ""
        raise ValidationFailed(f"{label}: {key}={raw} must be a whole number >= 1{limit}")
    return int(raw)


def _check_int_list(key: str, raw: str, low: int, high: int, signed: bool, *, label: str) -> None:
    for item in raw.split(","):
        digits = item[1:] if signed and item.startswith(("+", "-")) else item
        if not digits.isdigit() or not low <= int(digits) <= high:
            sign = "±" if signed else ""
            raise ValidationFailed(
                f"{label}: {key}={raw}: {item!r} is not in {sign}{low}..{sign}{high}"
            )


def _check_byday(raw: str, freq: str, label: str) -> None:
    for item in raw.split(","):
        match = _BYDAY.fullmatch(item)
        if match is None:
            raise ValidationFailed(
                f"{label}: BYDAY={raw}: {item!r} is not a weekday",
                hint="use MO, TU, WE, TH, FR, SA, SU, optionally with an ordinal: 2TU, -1SA",
            )
        if match.group(1) is None:
            continue
        ordinal = int(match.group(1))
        if freq not in ("MONTHLY", "YEARLY"):
            raise ValidationFailed(
                f"{label}: BYDAY={raw}: ordinals such as {item} need FREQ=MONTHLY or YEARLY",
                hint="RFC 5545 allows '2TU' only within a month or year",
            )
        limit = 5 if freq == "MONTHLY" else 53
        if ordinal == 0 or abs(ordinal) > limit:
            raise ValidationFailed(
                f"{label}: BYDAY={raw}: ordinal {ordinal} is not in ±1..±{limit}"
            )


def _zone(key: str, label: str) -> ZoneInfo:
    if not key or key == "localtime":
        raise ValidationFailed(
            f"{label}: no IANA time zone given", hint="e.g. Europe/Berlin or UTC"
        )
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(
            f"{label}: unknown time zone {key!r}",
            hint="use an IANA name such as Europe/Berlin, America/New_York or UTC",
        ) from exc


def _label(window: MaintenanceWindow) -> str:
    return f"maintenance window {window.name or window.rrule!r}"


# --- time helpers ------------------------------------------------------------------


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time as a UTC instant; ``fold=0`` gives RFC 5545's gap/overlap rule."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValidationFailed(
            f"{what} must be a timezone-aware datetime, not {moment!r}",
            hint="pass e.g. datetime.now(UTC)",
        )
    return moment.astimezone(UTC)


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1
