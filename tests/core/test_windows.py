"""Maintenance-window maths: RRULE expansion in local time, DST, blackouts, start checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core import windows
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.windows import (
    Blackout,
    Interval,
    MaintenanceWindow,
    can_start,
    current,
    next_start,
    next_window,
    occurrences,
    parse_window,
    remaining,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")
H = timedelta(hours=1)


def local(zone: tzinfo, *fields: int) -> datetime:
    """``local(zone, 2026, 3, 29, 2, 30)``: year, month, day[, hour, minute, second]."""
    year, month, day, hour, minute, second = (*fields, 0, 0, 0)[:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=zone)


def utc(*fields: int) -> datetime:
    return local(UTC, *fields)


def starts(window: MaintenanceWindow, lo: datetime, hi: datetime) -> list[datetime]:
    return [iv.start for iv in occurrences(window, lo, hi)]


# --- rules in local time --------------------------------------------------------------


def test_weekly_window_stays_at_local_time_across_both_dst_changes() -> None:
    window = parse_window("FREQ=WEEKLY;BYDAY=SA;BYHOUR=2;BYMINUTE=0", "Europe/Berlin", 240)
    year = occurrences(window, utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(year) == 52
    for iv in year:
        opened = iv.start.astimezone(BERLIN)
        assert (opened.weekday(), opened.hour, opened.minute) == (5, 2, 0)
        assert iv.duration == 4 * H
        assert iv.start.tzinfo is UTC
    offsets = {iv.start.astimezone(BERLIN).utcoffset() for iv in year}
    assert offsets == {H, 2 * H}  # CET in winter, CEST in summer
    assert year[0].start == utc(2026, 1, 3, 1)  # 02:00 CET
    assert year[26].start == utc(2026, 7, 4, 0)  # 02:00 CEST


def test_monthly_second_tuesday_in_new_york() -> None:
    window = parse_window("RRULE:FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22", "America/New_York", 180)
    got = starts(window, utc(2026, 1, 1), utc(2026, 5, 1))
    assert [s.astimezone(NEW_YORK) for s in got] == [
        local(NEW_YORK, 2026, 1, 13, 22),
        local(NEW_YORK, 2026, 2, 10, 22),
        local(NEW_YORK, 2026, 3, 10, 22),
        local(NEW_YORK, 2026, 4, 14, 22),
    ]
    assert got[0] == utc(2026, 1, 14, 3)  # EST, UTC-5
    assert got[2] == utc(2026, 3, 11, 2)  # EDT since 2026-03-08, UTC-4


def test_daily_window_in_a_zone_without_dst_keeps_its_utc_time() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=0", "Asia/Kolkata", 90)
    got = starts(window, utc(2026, 3, 1), utc(2026, 11, 30))
    assert {(s.hour, s.minute) for s in got} == {(18, 30)}  # 00:00 IST = 18:30 UTC
    assert got[0] == utc(2026, 3, 1, 18, 30)


def test_utc_zone() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=3;BYMINUTE=15", "UTC", 30)
    assert occurrences(window, utc(2026, 3, 29), utc(2026, 3, 30)) == [
        Interval(utc(2026, 3, 29, 3, 15), utc(2026, 3, 29, 3, 45))
    ]


def test_parts_taken_from_an_explicit_start_date() -> None:
    tuesday = parse_window("FREQ=WEEKLY;BYHOUR=2", "Europe/Berlin", 60, start_date=date(2026, 1, 6))
    assert {
        s.astimezone(BERLIN).weekday() for s in starts(tuesday, utc(2026, 1, 1), utc(2026, 4, 1))
    } == {1}
    # The 31st of every month that has one (RFC 5545 skips invalid dates).
    last = parse_window("FREQ=MONTHLY;BYHOUR=3", "UTC", 60, start_date=date(2026, 1, 31))
    months = [s.month for s in starts(last, utc(2026, 1, 1), utc(2027, 1, 1))]
    assert months == [1, 3, 5, 7, 8, 10, 12]
    biweekly = parse_window(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=SA;BYHOUR=2", "UTC", 60, start_date=date(2026, 1, 10)
    )
    assert starts(biweekly, utc(2026, 1, 1), utc(2026, 2, 15)) == [
        utc(2026, 1, 10, 2),
        utc(2026, 1, 24, 2),
        utc(2026, 2, 7, 2),
    ]


def test_start_date_bounds_the_rule() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=2", "UTC", 60, start_date=date(2026, 6, 1))
    assert occurrences(window, utc(2026, 1, 1), utc(2026, 6, 1, 3))[0].start == utc(2026, 6, 1, 2)
    assert occurrences(window, utc(2026, 1, 1), utc(2026, 6, 1)) == []


def test_count_counts_from_the_start_date() -> None:
    window = parse_window("FREQ=DAILY;COUNT=3;BYHOUR=2", "UTC", 60, start_date=date(2026, 6, 1))
    assert starts(window, utc(2026, 1, 1), utc(2027, 1, 1)) == [
        utc(2026, 6, 1, 2),
        utc(2026, 6, 2, 2),
        utc(2026, 6, 3, 2),
    ]


def test_until_as_a_local_date_includes_that_day() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=23;UNTIL=20260110", "Europe/Berlin", 30)
    got = starts(window, utc(2026, 1, 8), utc(2026, 2, 1))
    assert [s.astimezone(BERLIN).day for s in got] == [8, 9, 10]  # 23:00 on the 10th counts


def test_until_in_utc_is_an_exact_instant_even_in_the_repeated_hour() -> None:
    # 02:30 on the fall-back night is 00:30 UTC (first pass): UNTIL at that instant keeps it.
    window = parse_window(
        "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;UNTIL=20261025T003000Z", "Europe/Berlin", 30
    )
    got = starts(window, utc(2026, 10, 23), utc(2026, 11, 1))
    assert got == [utc(2026, 10, 23, 0, 30), utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30)]
    earlier = parse_window(
        "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;UNTIL=20261025T002959Z", "Europe/Berlin", 30
    )
    assert starts(earlier, utc(2026, 10, 23), utc(2026, 11, 1))[-1] == utc(2026, 10, 24, 0, 30)


# --- DST edges ------------------------------------------------------------------------


def test_zoneinfo_fold_zero_is_rfc_5545_behaviour() -> None:
    # The module relies on this: fold=0 reads a gap time with the offset before the gap
    # and an ambiguous time as its first occurrence.
    gap = datetime(2026, 3, 29, 2, 30, tzinfo=BERLIN)
    assert gap.utcoffset() == H  # CET, the offset before the gap
    assert gap.astimezone(UTC) == utc(2026, 3, 29, 1, 30)
    assert gap.astimezone(UTC).astimezone(BERLIN).hour == 3  # shown as 03:30 CEST
    repeated = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)
    assert repeated.utcoffset() == 2 * H  # CEST, the first pass
    assert repeated.replace(fold=1).utcoffset() == H


@pytest.mark.parametrize(
    ("zone", "day", "clock", "expected_utc", "shown_as"),
    [
        # spring forward: the missing local time opens with the offset before the gap
        ("Europe/Berlin", date(2026, 3, 29), "2:30", utc(2026, 3, 29, 1, 30), "03:30"),
        ("America/New_York", date(2026, 3, 8), "2:30", utc(2026, 3, 8, 7, 30), "03:30"),
        ("Australia/Sydney", date(2026, 10, 4), "2:30", utc(2026, 10, 3, 16, 30), "03:30"),
        # fall back: the repeated local time means its first occurrence
        ("Europe/Berlin", date(2026, 10, 25), "2:30", utc(2026, 10, 25, 0, 30), "02:30"),
        ("America/New_York", date(2026, 11, 1), "1:30", utc(2026, 11, 1, 5, 30), "01:30"),
        ("Australia/Sydney", date(2026, 4, 5), "2:30", utc(2026, 4, 4, 15, 30), "02:30"),
    ],
)
def test_dst_gap_and_overlap(
    zone: str, day: date, clock: str, expected_utc: datetime, shown_as: str
) -> None:
    hour, minute = clock.split(":")
    tz = ZoneInfo(zone)
    window = parse_window(f"FREQ=DAILY;BYHOUR={hour};BYMINUTE={minute}", zone, 60)
    lo = datetime(day.year, day.month, day.day, tzinfo=tz)
    found = [
        iv for iv in occurrences(window, lo, lo + 24 * H) if iv.start.astimezone(tz).date() == day
    ]
    assert len(found) == 1
    assert found[0].start == expected_utc
    assert f"{found[0].start.astimezone(tz):%H:%M}" == shown_as
    assert found[0].duration == H


def test_durations_are_elapsed_time_across_fall_back() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=1", "Europe/Berlin", 180)
    night = current(window, local(BERLIN, 2026, 10, 25, 1, 30))
    assert night == Interval(utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))
    closes = night.end.astimezone(BERLIN)
    assert (closes.hour, closes.utcoffset()) == (3, H)  # 03:00 CET: three real hours


def test_durations_are_elapsed_time_across_spring_forward() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=1", "Europe/Berlin", 180)
    night = current(window, local(BERLIN, 2026, 3, 29, 1, 30))
    assert night == Interval(utc(2026, 3, 29, 0), utc(2026, 3, 29, 3))
    assert night.end.astimezone(BERLIN).hour == 5  # 05:00 CEST


def test_hourly_rule_on_dst_days() -> None:
    window = parse_window("FREQ=HOURLY;BYMINUTE=0", "Europe/Berlin", 20)

    def day_count(day: date) -> int:
        lo = datetime(day.year, day.month, day.day, tzinfo=BERLIN)
        hi = lo + timedelta(days=1)
        return sum(1 for s in starts(window, lo, hi) if s.astimezone(BERLIN).date() == day)

    assert day_count(date(2026, 3, 29)) == 23  # 02:00 does not exist; it is 03:00
    assert day_count(date(2026, 10, 25)) == 24  # 02:00 only once, in its first pass
    assert day_count(date(2026, 6, 1)) == 24


# --- blackouts ------------------------------------------------------------------------


def test_window_running_into_a_blackout_is_cut_at_midnight() -> None:
    window = parse_window(
        "FREQ=DAILY;BYHOUR=22",
        "Europe/Berlin",
        240,
        blackouts=[(date(2026, 12, 24), date(2026, 12, 26))],
    )
    got = occurrences(window, local(BERLIN, 2026, 12, 22, 12), local(BERLIN, 2026, 12, 28, 12))
    assert [(iv.start.astimezone(BERLIN), iv.end.astimezone(BERLIN)) for iv in got] == [
        (local(BERLIN, 2026, 12, 22, 22), local(BERLIN, 2026, 12, 23, 2)),
        (local(BERLIN, 2026, 12, 23, 22), local(BERLIN, 2026, 12, 24, 0)),  # cut
        # 24th, 25th, 26th start inside the blackout: dropped (the 26th's would end after it)
        (local(BERLIN, 2026, 12, 27, 22), local(BERLIN, 2026, 12, 28, 2)),
    ]


def test_window_spanning_a_blackout_keeps_only_the_part_before_it() -> None:
    window = parse_window(
        "FREQ=WEEKLY;BYDAY=FR;BYHOUR=20",
        "UTC",
        3 * 24 * 60,
        blackouts=[Blackout(date(2026, 5, 9), date(2026, 5, 9))],
    )
    assert next_window(window, utc(2026, 5, 8)) == Interval(utc(2026, 5, 8, 20), utc(2026, 5, 9))


def test_blackout_dates_are_local_days() -> None:
    # In Sydney the 24th starts at 13:00 UTC on the 23rd.
    window = parse_window(
        "FREQ=DAILY;BYHOUR=22",
        "Australia/Sydney",
        240,
        blackouts=[(date(2026, 12, 24), date(2026, 12, 24))],
    )
    cut = next_window(window, local(SYDNEY, 2026, 12, 23, 23))
    assert cut == Interval(local(SYDNEY, 2026, 12, 23, 22), local(SYDNEY, 2026, 12, 24))
    assert cut.end == utc(2026, 12, 23, 13)


# --- can_start, remaining, next_start -------------------------------------------------


SATURDAY = parse_window("FREQ=WEEKLY;BYDAY=SA;BYHOUR=2", "Europe/Berlin", 240, name="saturday")


def test_can_start_needs_the_expected_time_left() -> None:
    five = local(BERLIN, 2026, 5, 9, 5)  # window 02:00-06:00
    assert can_start([SATURDAY], five, H)
    assert not can_start([SATURDAY], five + timedelta(microseconds=1), H)
    assert remaining(SATURDAY, five) == H
    assert can_start([SATURDAY], local(BERLIN, 2026, 5, 9, 5, 59, 59), timedelta(0))
    assert not can_start([SATURDAY], local(BERLIN, 2026, 5, 9, 6), timedelta(0))  # end is exclusive
    assert can_start([SATURDAY], local(BERLIN, 2026, 5, 9, 2), 4 * H)
    assert not can_start([SATURDAY], local(BERLIN, 2026, 5, 9, 2), 4 * H + timedelta(seconds=1))
    assert not can_start([SATURDAY], local(BERLIN, 2026, 5, 9, 1, 59), timedelta(0))
    assert remaining(SATURDAY, local(BERLIN, 2026, 5, 9, 7)) == timedelta(0)


def test_can_start_with_several_windows_uses_any_one_of_them() -> None:
    late = parse_window("FREQ=WEEKLY;BYDAY=SA;BYHOUR=5", "Europe/Berlin", 180)
    at = local(BERLIN, 2026, 5, 9, 5, 30)
    assert not can_start([SATURDAY], at, 2 * H)
    assert can_start([SATURDAY, late], at, 2 * H)


def test_no_windows_is_never_open() -> None:
    assert can_start([], utc(2026, 5, 9, 3), timedelta(0)) is False
    assert next_start([], utc(2026, 5, 9, 3), timedelta(0)) is None


def test_next_start_is_now_when_possible_else_the_next_instance() -> None:
    inside = local(BERLIN, 2026, 5, 9, 3)
    assert next_start([SATURDAY], inside, H) == inside
    too_late = local(BERLIN, 2026, 5, 9, 5, 30)
    assert next_start([SATURDAY], too_late, H) == local(BERLIN, 2026, 5, 16, 2)
    assert next_start([SATURDAY], too_late, H).tzinfo is UTC  # type: ignore[union-attr]
    assert next_start([SATURDAY], inside, 5 * H) is None  # longer than any instance


def test_next_start_skips_blackouts_and_instances_cut_too_short() -> None:
    window = parse_window(
        "FREQ=DAILY;BYHOUR=22",
        "Europe/Berlin",
        240,
        blackouts=[(date(2026, 12, 24), date(2026, 12, 26))],
    )
    at = local(BERLIN, 2026, 12, 23, 12)
    assert next_start([window], at, H) == local(BERLIN, 2026, 12, 23, 22)  # 2h before midnight
    assert next_start([window], at, 3 * H) == local(BERLIN, 2026, 12, 27, 22)
    weekly = parse_window(
        "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2",
        "Europe/Berlin",
        240,
        blackouts=[Blackout(date(2026, 5, 16), date(2026, 5, 23))],
    )
    assert next_start([weekly], local(BERLIN, 2026, 5, 10), H) == local(BERLIN, 2026, 5, 30, 2)


def test_next_window_is_open_now_or_next_and_bounded() -> None:
    assert next_window(SATURDAY, local(BERLIN, 2026, 5, 9, 3)) == Interval(
        local(BERLIN, 2026, 5, 9, 2), local(BERLIN, 2026, 5, 9, 6)
    )
    assert next_window(SATURDAY, local(BERLIN, 2026, 5, 9, 6)) == Interval(
        local(BERLIN, 2026, 5, 16, 2), local(BERLIN, 2026, 5, 16, 6)
    )
    once = parse_window("FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1;BYHOUR=0", "UTC", 60)
    assert next_window(once, utc(2026, 1, 2), horizon=timedelta(days=300)) is None
    assert next_window(once, utc(2026, 1, 2)) == Interval(utc(2027, 1, 1), utc(2027, 1, 1, 1))


def test_repeated_calls_hit_the_cache() -> None:
    window = parse_window("FREQ=DAILY;BYHOUR=2", "Asia/Kolkata", 240)
    now = utc(2026, 7, 1, 21)
    assert can_start([window], now, H)
    misses = windows._month.cache_info().misses
    for _ in range(200):
        assert can_start([window], now, H)
    assert windows._month.cache_info().misses == misses


# --- invalid input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rrule", "zone", "minutes", "kwargs", "message"),
    [
        ("FREQ=WEEKLY;BYDAY=XX;BYHOUR=2", "UTC", 60, {}, "'XX' is not a weekday"),
        ("FREQ=WEEKLY BYDAY=SA", "UTC", 60, {}, "not NAME=VALUE"),
        ("FREQ=FORTNIGHTLY;BYHOUR=2", "UTC", 60, {}, "not a frequency"),
        ("BYDAY=SA;BYHOUR=2", "UTC", 60, {}, "no FREQ"),
        ("FREQ=WEEKLY;BYDAY=SA;FOO=1;BYHOUR=2", "UTC", 60, {}, "unknown RRULE part 'FOO'"),
        ("FREQ=WEEKLY;BYDAY=SA;BYDAY=SU;BYHOUR=2", "UTC", 60, {}, "given twice"),
        ("FREQ=MINUTELY;BYMINUTE=0", "UTC", 1, {}, "too fine"),
        ("FREQ=DAILY;BYHOUR=25", "UTC", 60, {}, "'25' is not in 0..23"),
        ("FREQ=MONTHLY;BYMONTHDAY=0;BYHOUR=2", "UTC", 60, {}, "'0' is not in ±1..±31"),
        ("FREQ=DAILY;INTERVAL=0;BYHOUR=2", "UTC", 60, {}, "INTERVAL=0"),
        ("FREQ=WEEKLY;BYDAY=2TU;BYHOUR=2", "UTC", 60, {}, "need FREQ=MONTHLY or YEARLY"),
        ("FREQ=MONTHLY;BYDAY=6TU;BYHOUR=2", "UTC", 60, {}, "ordinal 6"),
        ("FREQ=DAILY;BYHOUR=2;BYSECOND=30", "UTC", 60, {}, "BYSECOND is not supported"),
        ("FREQ=WEEKLY;BYDAY=SA", "UTC", 60, {}, "no BYHOUR"),
        ("FREQ=HOURLY", "UTC", 20, {}, "needs BYMINUTE"),
        ("FREQ=WEEKLY;BYHOUR=2", "UTC", 60, {}, "BYDAY (SA) of the start date"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA;BYHOUR=2", "UTC", 60, {}, "phase of INTERVAL=2"),
        ("FREQ=DAILY;COUNT=5;BYHOUR=2", "UTC", 60, {}, "COUNT counts from"),
        (
            "FREQ=DAILY;COUNT=5;UNTIL=20270101;BYHOUR=2",
            "UTC",
            60,
            {"start_date": date(2026, 1, 1)},
            "COUNT and UNTIL",
        ),
        ("DTSTART:20260101T020000\nRRULE:FREQ=DAILY", "UTC", 60, {}, "DTSTART is not accepted"),
        ("FREQ=DAILY;BYHOUR=2;DTSTART=20260101", "UTC", 60, {}, "DTSTART is not accepted"),
        ("FREQ=DAILY;BYHOUR=2;UNTIL=20261231T020000", "UTC", 60, {}, "has no time zone"),
        ("FREQ=DAILY;BYHOUR=2;UNTIL=2026-12-31", "UTC", 60, {}, "neither a date"),
        ("FREQ=DAILY;BYHOUR=2;UNTIL=19991231", "UTC", 60, {}, "before its first instance"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=2", "UTC", 60, {}, "never fires"),
        ("FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31;BYHOUR=2", "UTC", 60, {}, "never fires"),
        (
            "FREQ=MONTHLY;INTERVAL=12;BYMONTH=3;BYMONTHDAY=1;BYHOUR=2",
            "UTC",
            60,
            {"start_date": date(2026, 1, 1)},
            "INTERVAL=12 from 2026-01-01",
        ),
        (
            "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29;BYHOUR=2",
            "UTC",
            60,
            {"start_date": date(2025, 1, 1)},
            "never reaches a day",
        ),
        ("FREQ=DAILY;BYHOUR=2", "Mars/Olympus_Mons", 60, {}, "unknown time zone"),
        ("FREQ=DAILY;BYHOUR=2", "", 60, {}, "no IANA time zone"),
        ("FREQ=DAILY;BYHOUR=2", "UTC", 0, {}, "must be positive"),
        ("FREQ=DAILY;BYHOUR=2", "UTC", -30, {}, "must be positive"),
        ("FREQ=WEEKLY;BYDAY=SA;BYHOUR=2", "UTC", 8 * 24 * 60, {}, "longer than 7 days"),
        ("FREQ=DAILY;BYHOUR=2", "UTC", 24 * 60 + 1, {}, "only 1 day, 0:00:00 apart"),
        ("FREQ=HOURLY;BYMINUTE=0,30", "UTC", 31, {}, "only 0:30:00 apart"),
        # 02:30 and 04:30 are two hours apart, except on the spring-forward day (one hour).
        ("FREQ=DAILY;BYHOUR=2,4;BYMINUTE=30", "Europe/Berlin", 90, {}, "only 1:00:00 apart"),
        (
            "FREQ=DAILY;BYHOUR=2",
            "UTC",
            60,
            {"blackouts": [(date(2026, 12, 31), date(2026, 12, 24))]},
            "ends before it starts",
        ),
        ("FREQ=DAILY;BYHOUR=2", "UTC", 60, {"start_date": date(1066, 10, 14)}, "between 1900"),
    ],
)
def test_invalid_windows_are_refused_with_a_precise_message(
    rrule: str, zone: str, minutes: int, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_window(rrule, zone, minutes, **kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_the_same_rule_fits_exactly_when_spring_forward_merges_two_starts() -> None:
    # 02:30 and 03:30 both become 01:30 UTC on the spring-forward day: one instance.
    window = parse_window("FREQ=DAILY;BYHOUR=2,3;BYMINUTE=30", "Europe/Berlin", 60)
    day = occurrences(window, utc(2026, 3, 28, 22), utc(2026, 3, 29, 22))
    assert day == [Interval(utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30))]


def test_instances_never_overlap_even_when_validation_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The safety net behind validation: should zone rules ever squeeze two starts closer
    # than the duration, the earlier instance ends when the next one starts.
    monkeypatch.setattr(windows, "_check_no_overlap", lambda *args: None)
    window = parse_window(
        "FREQ=DAILY;BYHOUR=2,4;BYMINUTE=30", "Europe/Berlin", 90, name="safety net test"
    )
    day = occurrences(window, utc(2026, 3, 28, 22), utc(2026, 3, 29, 22))
    assert day == [
        Interval(utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)),  # 02:30 -> 03:30 CEST
        Interval(utc(2026, 3, 29, 2, 30), utc(2026, 3, 29, 4)),  # 04:30 CEST
    ]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "rrule",
    [
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=2",
        "FREQ=HOURLY;BYMONTH=4;BYMONTHDAY=31;BYMINUTE=0",
        "FREQ=WEEKLY;BYMONTH=2;BYDAY=MO;BYSETPOS=2;BYHOUR=2",
    ],
)
def test_rules_that_never_fire_are_refused_quickly(rrule: str) -> None:
    # dateutil alone searches until the year 9999 for these (seconds per call).
    with pytest.raises(ValidationFailed, match="never fires"):
        parse_window(rrule, "UTC", 60)


def test_errors_name_the_window() -> None:
    with pytest.raises(ValidationFailed, match=r"maintenance window 'prod-sat'.*no BYHOUR"):
        parse_window("FREQ=WEEKLY;BYDAY=SA", "UTC", 60, name="prod-sat")


def test_directly_built_windows_are_validated_on_use() -> None:
    window = MaintenanceWindow("FREQ=DAILY", "UTC", H)
    with pytest.raises(ValidationFailed, match="no BYHOUR"):
        can_start([window], utc(2026, 1, 1), H)


def test_times_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationFailed, match="timezone-aware"):
        can_start([SATURDAY], datetime(2026, 5, 9, 3), H)  # naive on purpose
    with pytest.raises(ValidationFailed, match="expected job duration"):
        can_start([SATURDAY], utc(2026, 5, 9, 3), -H)
    with pytest.raises(ValidationFailed, match="after end"):
        occurrences(SATURDAY, utc(2026, 5, 10), utc(2026, 5, 9))


# --- properties -----------------------------------------------------------------------

# Valid windows covering each frequency, INTERVAL phases, BYSETPOS, WKST, parts taken
# from the start date, and zones on both hemispheres.
SPECS: list[tuple[str, str, int, date | None]] = [
    ("FREQ=WEEKLY;BYDAY=SA;BYHOUR=2", "Europe/Berlin", 240, None),
    ("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "Europe/Berlin", 60, None),
    ("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", "America/New_York", 120, None),
    ("FREQ=DAILY;BYHOUR=2,3;BYMINUTE=30", "Australia/Sydney", 45, None),
    ("FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22", "America/New_York", 360, None),
    ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=20", "Asia/Kolkata", 300, None),
    ("FREQ=HOURLY;BYMINUTE=0", "Europe/Berlin", 20, None),
    ("FREQ=DAILY;BYHOUR=0", "America/Santiago", 60, None),  # DST changes at midnight
    ("FREQ=HOURLY;INTERVAL=5;BYMINUTE=10", "Europe/Berlin", 90, date(2025, 1, 1)),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA;BYHOUR=2", "Europe/Berlin", 600, date(2024, 1, 3)),
    (
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,TH;BYHOUR=23;WKST=SU",
        "America/New_York",
        120,
        date(2023, 5, 17),
    ),
    (
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=-1FR;BYHOUR=1;BYMINUTE=15",
        "Australia/Sydney",
        180,
        date(2023, 11, 30),
    ),
    (
        "FREQ=YEARLY;INTERVAL=2;BYMONTH=3,10;BYDAY=-1SU;BYHOUR=2;BYMINUTE=30",
        "Europe/Berlin",
        60,
        date(2021, 1, 1),
    ),
    ("FREQ=DAILY;INTERVAL=3;BYHOUR=2,14", "America/New_York", 240, date(2024, 2, 29)),
    ("FREQ=MONTHLY;BYHOUR=3", "UTC", 1440, date(2024, 1, 31)),
    ("FREQ=YEARLY;BYHOUR=4", "Australia/Sydney", 120, date(2024, 2, 29)),
    ("FREQ=WEEKLY;BYHOUR=2", "Europe/Berlin", 3 * 1440, date(2026, 1, 6)),
]
WINDOWS = [parse_window(r, z, m, start_date=s) for r, z, m, s in SPECS]

moments = st.datetimes(
    min_value=datetime(2025, 6, 1), max_value=datetime(2028, 6, 1), timezones=st.just(UTC)
)
spans = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=70))
expected_durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=30))


@st.composite
def windows_with_blackouts(draw: st.DrawFn) -> MaintenanceWindow:
    rule, zone, minutes, start = SPECS[draw(st.integers(0, len(SPECS) - 1))]
    days = draw(
        st.lists(
            st.tuples(st.dates(date(2025, 6, 1), date(2028, 6, 1)), st.integers(0, 20)),
            max_size=4,
        )
    )
    blackouts = [(d, d + timedelta(days=n)) for d, n in days]
    return parse_window(rule, zone, minutes, start_date=start, blackouts=blackouts)


any_window = st.one_of(st.sampled_from(WINDOWS), windows_with_blackouts())


def oracle_starts(
    rule: str, zone: str, start: date | None, lo: datetime, hi: datetime
) -> list[datetime]:
    """Straight dateutil expansion from the start date: no cache, no fast-forward."""
    tz = ZoneInfo(zone)
    anchor = datetime.combine(start or windows.DEFAULT_START_DATE, datetime.min.time())
    expanded = rrulestr(rule, dtstart=anchor)
    pad = timedelta(days=3)
    naive = expanded.between(
        lo.astimezone(tz).replace(tzinfo=None) - pad,
        hi.astimezone(tz).replace(tzinfo=None) + pad,
        inc=True,
    )
    instants = {n.replace(tzinfo=tz).astimezone(UTC) for n in naive}
    return sorted(i for i in instants if lo <= i < hi)


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, len(SPECS) - 1), lo=moments, span=spans)
def test_expansion_matches_a_plain_dateutil_expansion(
    index: int, lo: datetime, span: timedelta
) -> None:
    rule, zone, _minutes, start = SPECS[index]
    hi = lo + span
    got = [s for s in starts(WINDOWS[index], lo, hi) if s >= lo]
    assert got == oracle_starts(rule, zone, start, lo, hi)


@settings(max_examples=120, deadline=None)
@given(window=any_window, lo=moments, span=spans)
def test_occurrences_are_sorted_disjoint_overlapping_and_full_length(
    window: MaintenanceWindow, lo: datetime, span: timedelta
) -> None:
    hi = lo + span
    got = occurrences(window, lo, hi)
    compiled = windows._compile(window)
    blackout_starts = {b_start for b_start, _ in compiled.blackouts}
    for iv in got:
        assert iv.start.tzinfo is UTC
        assert iv.end.tzinfo is UTC
        assert iv.start < hi  # overlaps [lo, hi)
        assert iv.end > lo
        assert iv.start < iv.end <= iv.start + window.duration
        if iv.duration != window.duration:
            assert iv.end in blackout_starts  # only blackouts shorten an instance
        for b_start, b_end in compiled.blackouts:
            assert iv.end <= b_start or iv.start >= b_end  # never open during a blackout
    for a, b in pairwise(got):
        assert a.end <= b.start


@settings(max_examples=120, deadline=None)
@given(window=any_window, now=moments, expected=expected_durations)
def test_current_next_window_can_start_and_next_start_agree(
    window: MaintenanceWindow, now: datetime, expected: timedelta
) -> None:
    ahead = occurrences(window, now, now + windows.SEARCH_HORIZON)
    open_now = current(window, now)
    assert open_now == (ahead[0] if ahead and ahead[0].contains(now) else None)
    assert next_window(window, now) == (ahead[0] if ahead else None)
    assert can_start([window], now, expected) == (
        open_now is not None and open_now.end - now >= expected
    )
    assert remaining(window, now) == (open_now.end - now if open_now else timedelta(0))
    # next_start: the first instance with room, entered as early as possible.
    candidates = [max(iv.start, now) for iv in ahead if iv.end - max(iv.start, now) >= expected]
    first = next_start([window], now, expected)
    assert first == (candidates[0] if candidates else None)
    if first is not None:
        assert can_start([window], first, expected)
        if first > now:
            assert not can_start([window], first - timedelta(microseconds=1), expected)


@settings(max_examples=40, deadline=None)
@given(
    picked=st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=3),
    now=moments,
    expected=expected_durations,
)
def test_several_windows_combine_as_any(
    picked: list[MaintenanceWindow], now: datetime, expected: timedelta
) -> None:
    assert can_start(picked, now, expected) == any(can_start([w], now, expected) for w in picked)
    singles = [t for w in picked if (t := next_start([w], now, expected)) is not None]
    assert next_start(picked, now, expected) == (min(singles) if singles else None)
