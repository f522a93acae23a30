//! What a photo's EXIF tells us before we throw it away: how to turn the pixels upright, where it
//! was taken (and how precisely), and when. Broken EXIF means "nothing known", never a failure:
//! the picture itself is still good.

use exif::{In, Reader, Tag, Value};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::vocab::{Location, LocationSource};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExifFacts {
    /// EXIF orientation 1–8 (1 = upright, also when absent or out of range).
    pub orientation: u8,
    /// The GPS fix, with `GPSHPositioningError` as its accuracy when present.
    pub location: Option<Location>,
    /// When the picture was taken, if the zone is known (an `OffsetTimeOriginal`, or the GPS
    /// clock, which is UTC).
    pub captured_at: Option<OffsetDateTime>,
}

/// The most EXIF read: what one JPEG APP1 segment can hold.
const MAX_EXIF_BYTES: usize = 64 * 1024;

pub fn read(tiff: Option<&[u8]>) -> ExifFacts {
    let mut facts = ExifFacts {
        orientation: 1,
        ..ExifFacts::default()
    };
    let Some(tiff) = tiff else { return facts };
    // A JPEG's APP1 segment holds at most 64 KiB; a block claiming more from another format is
    // not read (field counts inside it could ask the reader for gigabytes).
    if tiff.len() > MAX_EXIF_BYTES {
        return facts;
    }
    let Ok(exif) = Reader::new().read_raw(tiff.to_vec()) else {
        return facts;
    };
    let field = |tag| exif.get_field(tag, In::PRIMARY).map(|f| &f.value);

    if let Some(o) = field(Tag::Orientation).and_then(|v| v.get_uint(0)) {
        if (1..=8).contains(&o) {
            facts.orientation = o as u8;
        }
    }

    let coordinate = |value: Option<&Value>, reference: Option<&Value>, negative: &[u8]| {
        let parts = numbers(value?)?;
        if parts.len() < 3 {
            return None;
        }
        let degrees = parts[0].abs() + parts[1].abs() / 60.0 + parts[2].abs() / 3600.0;
        let sign = match reference {
            Some(Value::Ascii(s))
                if s.first()
                    .and_then(|r| r.first())
                    .is_some_and(|c| negative.contains(c)) =>
            {
                -1.0
            }
            _ => 1.0,
        };
        Some(sign * degrees)
    };
    let lat = coordinate(field(Tag::GPSLatitude), field(Tag::GPSLatitudeRef), b"Ss");
    let lon = coordinate(field(Tag::GPSLongitude), field(Tag::GPSLongitudeRef), b"Ww");
    let accuracy = field(Tag::GPSHPositioningError)
        .and_then(numbers)
        .and_then(|n| n.first().copied());
    if let (Some(lat), Some(lon)) = (lat, lon) {
        // An impossible fix (the (0, 0) of a camera without a GPS lock) is no fix.
        facts.location = Location::new(lat, lon, accuracy, LocationSource::Photo).ok();
    }

    facts.captured_at = original_time(&exif).or_else(|| gps_time(&exif));
    facts
}

/// The numbers of a rational-valued field. Cameras disagree on the type: the spec says unsigned
/// rationals, some phones (Nokia) write signed ones, some tools write floats. A zero denominator
/// makes the whole field unknown.
fn numbers(value: &Value) -> Option<Vec<f64>> {
    let finite = |v: Vec<f64>| v.iter().all(|x| x.is_finite()).then_some(v);
    match value {
        Value::Rational(r) if r.iter().all(|r| r.denom != 0) => {
            finite(r.iter().map(|r| r.to_f64()).collect())
        }
        Value::SRational(r) if r.iter().all(|r| r.denom != 0) => {
            finite(r.iter().map(|r| r.to_f64()).collect())
        }
        Value::Float(f) => finite(f.iter().map(|&x| x as f64).collect()),
        Value::Double(d) => finite(d.clone()),
        _ => None,
    }
}

fn ascii(exif: &exif::Exif, tag: Tag) -> Option<String> {
    match exif.get_field(tag, In::PRIMARY).map(|f| &f.value) {
        Some(Value::Ascii(parts)) => parts.first().map(|p| {
            String::from_utf8_lossy(p)
                .trim_end_matches('\0')
                .trim()
                .to_string()
        }),
        _ => None,
    }
}

/// `DateTimeOriginal` ("2026:11:23 08:15:00") with `OffsetTimeOriginal` ("-05:00").
fn original_time(exif: &exif::Exif) -> Option<OffsetDateTime> {
    let local = parse_exif_datetime(&ascii(exif, Tag::DateTimeOriginal)?)?;
    let offset = ascii(exif, Tag::OffsetTimeOriginal)?;
    let (sign, hm) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    let (h, m) = hm.split_once(':')?;
    let offset = UtcOffset::from_hms(
        sign * h.parse::<i8>().ok()?,
        sign * m.parse::<i8>().ok()?,
        0,
    )
    .ok()?;
    Some(local.assume_offset(offset))
}

/// `GPSDateStamp` ("2026:11:23") and `GPSTimeStamp` (three rationals), in UTC.
fn gps_time(exif: &exif::Exif) -> Option<OffsetDateTime> {
    let date = ascii(exif, Tag::GPSDateStamp)?;
    let hms = numbers(&exif.get_field(Tag::GPSTimeStamp, In::PRIMARY)?.value)?;
    if hms.len() < 3 {
        return None;
    }
    let mut parts = date.split(':');
    let y: i32 = parts.next()?.parse().ok()?;
    let mo: u8 = parts.next()?.parse().ok()?;
    let d: u8 = parts.next()?.parse().ok()?;
    let date = Date::from_calendar_date(y, Month::try_from(mo).ok()?, d).ok()?;
    let time = Time::from_hms(hms[0] as u8, hms[1] as u8, hms[2] as u8).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

fn parse_exif_datetime(s: &str) -> Option<PrimitiveDateTime> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split(':');
    let mut t = time.split(':');
    let date = Date::from_calendar_date(
        d.next()?.parse().ok()?,
        Month::try_from(d.next()?.parse::<u8>().ok()?).ok()?,
        d.next()?.parse().ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.get(..2)?.parse().ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}
