//! Open311's dates: ISO 8601 with a zone, both ways. Answers are in Toronto's local time (its
//! offset, daylight saving included), as the city's own records are; input must name its zone.

use curbside_core::vocab::calendar;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::macros::format_description;
use time::OffsetDateTime;

/// An instant, as Open311 answers give it: `2026-12-04T09:30:00-05:00`.
pub fn format(ms: i64) -> String {
    let Some(local) = calendar::local(ms) else {
        return String::new();
    };
    local
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
        ))
        .unwrap_or_default()
}

/// An instant given by a client, in milliseconds: RFC 3339 or ISO 8601, with its zone (`Z` or
/// an offset). A date without one is refused: it would mean a different instant in each zone.
pub fn parse(name: &str, value: &str) -> Result<i64, String> {
    let value = value.trim();
    let at = OffsetDateTime::parse(value, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(value, &Iso8601::DEFAULT))
        .map_err(|_| {
            format!(
                "{name}: not a date and time with a zone (ISO 8601, e.g. 2026-12-01T00:00:00-05:00)"
            )
        })?;
    // Requests are from this era: a year outside it is a mistake, and far ones have no local
    // time to show.
    if !(1970..=9999).contains(&at.year()) {
        return Err(format!("{name}: a date from 1970 to 9999"));
    }
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toronto_local_time_follows_daylight_saving() {
        // 2026: DST from 8 March 07:00 UTC to 1 November 06:00 UTC.
        let ms = |s: &str| parse("t", s).unwrap();
        assert_eq!(
            format(ms("2026-01-15T17:00:00Z")),
            "2026-01-15T12:00:00-05:00"
        );
        assert_eq!(
            format(ms("2026-07-01T16:00:00Z")),
            "2026-07-01T12:00:00-04:00"
        );
        assert_eq!(
            format(ms("2026-03-08T06:59:59Z")),
            "2026-03-08T01:59:59-05:00"
        );
        assert_eq!(
            format(ms("2026-03-08T07:00:00Z")),
            "2026-03-08T03:00:00-04:00"
        );
        assert_eq!(
            format(ms("2026-11-01T05:59:59Z")),
            "2026-11-01T01:59:59-04:00"
        );
        assert_eq!(
            format(ms("2026-11-01T06:00:00Z")),
            "2026-11-01T01:00:00-05:00"
        );
    }

    #[test]
    fn input_must_name_its_zone() {
        assert_eq!(
            parse("start_date", "2026-12-01T00:00:00-05:00").unwrap(),
            parse("start_date", "2026-12-01T05:00:00Z").unwrap()
        );
        for bad in [
            "2026-12-01T00:00:00",
            "2026-12-01",
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
            "-009999-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let e = parse("start_date", bad).unwrap_err();
            assert!(e.starts_with("start_date:"), "{bad}: {e}");
        }
    }
}
