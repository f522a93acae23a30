//! Toronto's calendar: its local time (Eastern, with daylight saving) and its business days —
//! weekdays that are not one of Ontario's nine statutory holidays, computed for any year
//! (Easter by the Gregorian computus). The city's service standards count in these days.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The `n`-th `weekday` of `month` (1-based).
fn nth(year: i32, month: Month, weekday: Weekday, n: u8) -> Date {
    let first = Date::from_calendar_date(year, month, 1).expect("a month's first day");
    let to =
        (7 + weekday.number_days_from_monday() - first.weekday().number_days_from_monday()) % 7;
    first + Duration::days(i64::from(to) + 7 * i64::from(n.saturating_sub(1)))
}

/// Easter Sunday (Gregorian; the anonymous algorithm of Meeus, Jones and Butcher).
pub fn easter(year: i32) -> Date {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::from_calendar_date(
        year,
        Month::try_from(month as u8).expect("March or April"),
        day as u8,
    )
    .expect("a date")
}

/// Ontario's statutory holidays in `year` as observed (a fixed-date holiday on a weekend moves
/// to the next weekday not already a holiday): New Year's Day, Family Day, Good Friday,
/// Victoria Day, Canada Day, Labour Day, Thanksgiving, Christmas, Boxing Day.
pub fn holidays(year: i32) -> Vec<Date> {
    let date = |m: Month, d: u8| Date::from_calendar_date(year, m, d).expect("a date");
    let mut out = vec![
        nth(year, Month::February, Weekday::Monday, 3),
        easter(year) - Duration::days(2),
        // The Monday before 25 May.
        {
            let may25 = date(Month::May, 25);
            let back = match may25.weekday().number_days_from_monday() {
                0 => 7,
                d => d,
            };
            may25 - Duration::days(i64::from(back))
        },
        nth(year, Month::September, Weekday::Monday, 1),
        nth(year, Month::October, Weekday::Monday, 2),
    ];
    for fixed in [
        date(Month::January, 1),
        date(Month::July, 1),
        date(Month::December, 25),
        date(Month::December, 26),
    ] {
        let mut day = fixed;
        while matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) || out.contains(&day) {
            day = day.next_day().expect("a date");
        }
        out.push(day);
    }
    out.sort();
    out
}

/// Whether the city works on `day`: a weekday that is not a statutory holiday.
pub fn is_business_day(day: Date) -> bool {
    !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
        && !holidays(day.year()).contains(&day)
}

/// The second Sunday of March and the first of November, at 2:00 local: daylight saving's
/// start and end (the rule since 2007), as UTC instants.
fn daylight_saving(year: i32) -> (OffsetDateTime, OffsetDateTime) {
    let start = nth(year, Month::March, Weekday::Sunday, 2)
        .midnight()
        .assume_utc()
        + Duration::hours(7);
    let end = nth(year, Month::November, Weekday::Sunday, 1)
        .midnight()
        .assume_utc()
        + Duration::hours(6);
    (start, end)
}

/// Toronto's offset from UTC at `at`: -4 h during daylight saving, -5 h otherwise.
pub fn toronto_offset(at: OffsetDateTime) -> UtcOffset {
    let (start, end) = daylight_saving(at.year());
    let hours = if at >= start && at < end { -4 } else { -5 };
    UtcOffset::from_hms(hours, 0, 0).expect("an offset")
}

/// `ms` (since 1970, UTC) as Toronto's local date and time, with its offset.
pub fn local(ms: i64) -> Option<OffsetDateTime> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.checked_to_offset(toronto_offset(at))
}

/// The instant of a local date and time in Toronto, in ms since 1970.
fn instant(local: PrimitiveDateTime) -> i64 {
    // The offset of the instant itself: try standard time, then daylight time.
    let guess = local.assume_offset(UtcOffset::from_hms(-5, 0, 0).expect("an offset"));
    let at = local.assume_offset(toronto_offset(guess));
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `n` business days after `from_ms`, at the same local time of day. A request received on a
/// day the city does not work starts counting at the beginning of its next business day: one
/// received on Saturday with two days to go is due at the end of Tuesday.
pub fn add_business_days(from_ms: i64, n: u32) -> i64 {
    let Some(start) = local(from_ms) else {
        return from_ms;
    };
    let (mut day, mut time) = (start.date(), start.time());
    if !is_business_day(day) {
        while !is_business_day(day) {
            day = day.next_day().expect("a date");
        }
        time = Time::MIDNIGHT;
    }
    for _ in 0..n {
        day = day.next_day().expect("a date");
        while !is_business_day(day) {
            day = day.next_day().expect("a date");
        }
    }
    instant(PrimitiveDateTime::new(day, time))
}

/// `hours` after `from_ms`: for services that run around the clock.
pub fn add_hours(from_ms: i64, hours: u32) -> i64 {
    from_ms.saturating_add(i64::from(hours) * HOUR_MS)
}

/// Whole days, for reports.
pub fn days(ms: i64) -> f64 {
    ms as f64 / DAY_MS as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn ms(at: OffsetDateTime) -> i64 {
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn easter_for_known_years() {
        for (year, day) in [
            (2024, date!(2024 - 03 - 31)),
            (2025, date!(2025 - 04 - 20)),
            (2026, date!(2026 - 04 - 05)),
            (2027, date!(2027 - 03 - 28)),
            (2038, date!(2038 - 04 - 25)),
            (2285, date!(2285 - 03 - 22)),
        ] {
            assert_eq!(easter(year), day);
        }
    }

    #[test]
    fn ontarios_holidays_as_observed() {
        assert_eq!(
            holidays(2026),
            vec![
                date!(2026 - 01 - 01),
                date!(2026 - 02 - 16),
                date!(2026 - 04 - 03),
                date!(2026 - 05 - 18),
                date!(2026 - 07 - 01),
                date!(2026 - 09 - 07),
                date!(2026 - 10 - 12),
                date!(2026 - 12 - 25),
                // Boxing Day is a Saturday: observed on Monday the 28th.
                date!(2026 - 12 - 28),
            ]
        );
        // 2022: Christmas on a Sunday, Boxing Day on Monday: observed Monday and Tuesday.
        let h = holidays(2022);
        assert!(h.contains(&date!(2022 - 12 - 26)) && h.contains(&date!(2022 - 12 - 27)));
        // Victoria Day when 25 May is itself a Monday: the Monday before.
        assert!(holidays(2020).contains(&date!(2020 - 05 - 18)));
        assert!(holidays(2026).contains(&date!(2026 - 05 - 18)));
        assert!(!is_business_day(date!(2026 - 04 - 03)), "Good Friday");
        assert!(
            is_business_day(date!(2026 - 04 - 06)),
            "Easter Monday is not statutory"
        );
    }

    #[test]
    fn business_days_skip_weekends_and_holidays_in_local_time() {
        // Friday 3 p.m. in Toronto + 2 business days: Tuesday 3 p.m.
        let friday = ms(datetime!(2026-11-27 15:00 -5));
        assert_eq!(
            add_business_days(friday, 2),
            ms(datetime!(2026-12-01 15:00 -5))
        );
        // Received on a Saturday: counted from Monday's start, due at the end of Tuesday.
        let saturday = ms(datetime!(2026-11-28 10:00 -5));
        assert_eq!(
            add_business_days(saturday, 2),
            ms(datetime!(2026-12-02 00:00 -5))
        );
        // Over Christmas 2026 (Friday 25th, Boxing Day observed Monday 28th).
        let eve = ms(datetime!(2026-12-24 09:00 -5));
        assert_eq!(
            add_business_days(eve, 1),
            ms(datetime!(2026-12-29 09:00 -5))
        );
        // Across the end of daylight saving (1 November 2026): the local time holds.
        let before = ms(datetime!(2026-10-30 12:00 -4));
        assert_eq!(
            add_business_days(before, 1),
            ms(datetime!(2026-11-02 12:00 -5))
        );
        // 11:30 p.m. local on a business day is still that day, though UTC has moved on.
        let late = ms(datetime!(2026-12-03 23:30 -5));
        assert_eq!(
            add_business_days(late, 1),
            ms(datetime!(2026-12-04 23:30 -5))
        );
        assert_eq!(add_hours(friday, 48), ms(datetime!(2026-11-29 15:00 -5)));
    }
}
