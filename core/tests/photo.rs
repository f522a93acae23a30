//! The photo pipeline on real photos (../shared/data/photos) and on hostile input.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use curbside_core::photo::{self, PhotoError, PhotoOptions, Processed};
use curbside_core::{DraftEdit, Error, LocationSource, Store};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/photos")
        .join(rel)
}

fn process(rel: &str) -> Processed {
    photo::process(&fs::read(data(rel)).unwrap(), &PhotoOptions::default())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn decode(jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    let pixels = d.decode().unwrap();
    let info = d.info().unwrap();
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (info.width.into(), info.height.into(), pixels)
}

/// The JPEG markers before the image data, e.g. [0xE0 (APP0), 0xDB (DQT), …].
fn markers(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        out.push(marker);
        if marker == 0xDA {
            break; // start of scan: entropy-coded data follows
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        i += 2 + len;
    }
    out
}

/// Mean colour of each cell of a 16×12 grid, leaving out the middle where each sample draws its
/// own number: robust to re-encoding and one-pixel shifts, not to a wrong turn or mirror.
fn layout(w: u32, h: u32, pixels: &[u8]) -> Vec<f64> {
    let (gw, gh) = (16u32, 12u32);
    let mut cells = Vec::new();
    for gy in 0..gh {
        for gx in 0..gw {
            if (5..11).contains(&gx) && (3..9).contains(&gy) {
                continue;
            }
            for c in 0..3 {
                let mut sum = 0u64;
                let mut n = 0u64;
                for y in gy * h / gh..(gy + 1) * h / gh {
                    for x in gx * w / gw..(gx + 1) * w / gw {
                        sum += pixels[((y * w + x) * 3 + c) as usize] as u64;
                        n += 1;
                    }
                }
                cells.push(sum as f64 / n as f64);
            }
        }
    }
    cells
}

/// Pearson correlation of two layouts: 1 for the same picture, whatever its exposure (the
/// samples were not all exported with the same brightness).
fn likeness(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn every_orientation_comes_out_upright() {
    for kind in ["landscape", "portrait"] {
        let (w1, h1, pixels) = decode(
            &process(&format!("{kind}_1.jpg").replace(kind, &format!("orientation/{kind}"))).jpeg,
        );
        let reference = layout(w1, h1, &pixels);
        // What a mistake would look like: the reference mirrored left to right.
        let mirrored: Vec<u8> = (0..h1)
            .flat_map(|y| (0..w1).rev().map(move |x| (y, x)))
            .flat_map(|(y, x)| pixels[((y * w1 + x) * 3) as usize..][..3].to_vec())
            .collect();
        let wrong = likeness(&reference, &layout(w1, h1, &mirrored));
        assert!(
            wrong < 0.8,
            "{kind}: the check must tell a mirror apart ({wrong:.3})"
        );
        for n in 2..=8 {
            let out = process(&format!("orientation/{kind}_{n}.jpg"));
            assert_eq!(out.orientation, n, "{kind}_{n}: EXIF orientation read");
            let (w, h, pixels) = decode(&out.jpeg);
            assert_eq!((w, h), (w1, h1), "{kind}_{n}: same dimensions as {kind}_1");
            let like = likeness(&reference, &layout(w, h, &pixels));
            assert!(
                like > 0.95,
                "{kind}_{n}: likeness to {kind}_1 {like:.3} (a mirror: {wrong:.3})"
            );
        }
    }
}

#[test]
fn the_gps_fix_is_read_from_exif_whatever_the_rational_type() {
    // Known fixes: the data README and the samples' published coordinates.
    for (file, lat, lon) in [
        ("gps/DSCN0010.jpg", 43.4674, 11.8851),
        ("mobile/HMD_Nokia_8.3_5G.jpg", 60.1467, 24.9068),
    ] {
        let fix = photo::read_exif(&fs::read(data(file)).unwrap())
            .unwrap()
            .location
            .expect(file);
        assert!(
            (fix.lat - lat).abs() < 1e-4 && (fix.lon - lon).abs() < 1e-4,
            "{file}: {fix:?}"
        );
        assert_eq!(fix.source, LocationSource::Photo);
    }
    // Every GPS sample: our reading equals the EXIF values, computed here independently.
    for entry in fs::read_dir(data("gps")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        let exif = exif::Reader::new()
            .read_from_container(&mut std::io::Cursor::new(&bytes))
            .unwrap();
        let dms = |tag, reference| {
            let v = match &exif.get_field(tag, exif::In::PRIMARY).unwrap().value {
                exif::Value::Rational(r) => r
                    .iter()
                    .map(|r| r.num as f64 / r.denom as f64)
                    .collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            };
            let r = exif
                .get_field(reference, exif::In::PRIMARY)
                .unwrap()
                .display_value()
                .to_string();
            let sign = if r.contains('S') || r.contains('W') {
                -1.0
            } else {
                1.0
            };
            sign * (v[0] + v[1] / 60.0 + v[2] / 3600.0)
        };
        let lat = dms(exif::Tag::GPSLatitude, exif::Tag::GPSLatitudeRef);
        let lon = dms(exif::Tag::GPSLongitude, exif::Tag::GPSLongitudeRef);
        let ours = photo::process(&bytes, &PhotoOptions::default())
            .unwrap()
            .location;
        match ours {
            Some(fix) => assert!(
                (fix.lat - lat).abs() < 1e-9 && (fix.lon - lon).abs() < 1e-9,
                "{path:?}"
            ),
            // Some samples carry a (0, 0) "fix" from a camera without a lock: no location.
            None => assert!(
                lat.abs() < 1e-7 && lon.abs() < 1e-7,
                "{path:?}: fix {lat}, {lon} missed"
            ),
        }
    }
}

#[test]
fn no_output_carries_metadata() {
    let mut files: Vec<PathBuf> = ["gps", "mobile", "orientation"]
        .iter()
        .flat_map(|d| fs::read_dir(data(d)).unwrap().map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    for path in files {
        let out = photo::process(&fs::read(&path).unwrap(), &PhotoOptions::default()).unwrap();
        for jpeg in [&out.jpeg, &out.thumbnail] {
            let m = markers(jpeg);
            assert_eq!(m.first(), Some(&0xE0), "{path:?}: starts with JFIF");
            for forbidden in [0xE1, 0xE2, 0xED, 0xFE] {
                assert!(
                    !m.contains(&forbidden),
                    "{path:?}: marker FF{forbidden:02X} in output {m:02X?}"
                );
            }
            assert!(
                !m.iter().any(|&x| (0xE1..=0xEF).contains(&x)),
                "{path:?}: an APPn segment"
            );
            for needle in [
                &b"Exif"[..],
                b"GPS",
                b"http://ns.adobe.com",
                b"Nokia",
                b"Apple",
            ] {
                assert!(
                    !jpeg.windows(needle.len()).any(|w| w == needle),
                    "{path:?}: {needle:?} leaked"
                );
            }
            // Baseline (SOF0), not progressive.
            assert!(
                m.contains(&0xC0) && !m.contains(&0xC2),
                "{path:?}: {m:02X?}"
            );
        }
    }
}

#[test]
fn phone_photos_meet_the_size_budget_and_dimensions() {
    for file in [
        "mobile/HMD_Nokia_8.3_5G.jpg",
        "mobile/iphone_hdr_NO.jpg",
        "mobile/jolla.jpg",
    ] {
        let out = process(file);
        assert!(
            out.width.max(out.height) <= 1600,
            "{file}: {}×{}",
            out.width,
            out.height
        );
        assert!(
            out.width.max(out.height) >= 1500,
            "{file}: shrunk more than needed"
        );
        assert!(
            out.jpeg.len() <= 500_000,
            "{file}: {} bytes",
            out.jpeg.len()
        );
        assert!(out.quality >= 60);
        assert!(out.thumbnail_width.max(out.thumbnail_height) <= 320);
        let (w, h, _) = decode(&out.jpeg);
        assert_eq!((w, h), (out.width, out.height));
        let ratio = out.source_width as f64 / out.source_height as f64;
        assert!(
            (ratio - out.width as f64 / out.height as f64).abs() < 0.01,
            "{file}: aspect kept"
        );
    }
}

#[test]
fn tight_budgets_lower_quality_then_dimensions_never_below_the_floor() {
    let bytes = fs::read(data("mobile/iphone_hdr_NO.jpg")).unwrap();
    let at_80 = photo::process(&bytes, &PhotoOptions::default()).unwrap();
    let mut options = PhotoOptions {
        budget_bytes: at_80.jpeg.len() * 3 / 4,
        ..PhotoOptions::default()
    };
    let searched = photo::process(&bytes, &options).unwrap();
    assert!(searched.jpeg.len() <= options.budget_bytes);
    assert!(
        searched.quality < 80 && searched.quality >= 60,
        "quality {}",
        searched.quality
    );
    assert_eq!(
        (searched.width, searched.height),
        (at_80.width, at_80.height)
    );

    options.budget_bytes = 60_000;
    let shrunk = photo::process(&bytes, &options).unwrap();
    assert!(shrunk.jpeg.len() <= 60_000, "{} bytes", shrunk.jpeg.len());
    assert!(shrunk.quality >= 60);
    assert!(
        shrunk.width < at_80.width,
        "dimensions shrink once quality hits the floor"
    );
}

#[test]
fn hostile_and_unsupported_input_gets_a_typed_error_or_a_valid_result() {
    for entry in fs::read_dir(data("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        let started = Instant::now();
        match photo::process(&bytes, &PhotoOptions::default()) {
            Ok(out) => {
                decode(&out.jpeg);
            }
            Err(PhotoError::Corrupt(reason)) => assert!(!reason.is_empty()),
            Err(e) => panic!("{path:?}: unexpected {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path:?} took too long"
        );
    }

    let heic = fs::read(data("heic/iphone_13_pro_max.HEIC")).unwrap();
    match photo::process(&heic, &PhotoOptions::default()) {
        Err(e @ PhotoError::UnsupportedFormat { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("HEIC") && m.contains("JPEG") && m.contains("PHPicker"),
                "{m}"
            )
        }
        other => panic!("HEIC: {other:?}"),
    }

    // Truncations of a real photo at every kind of boundary.
    let good = fs::read(data("gps/DSCN0010.jpg")).unwrap();
    for cut in [
        0,
        1,
        2,
        3,
        10,
        100,
        500,
        2_000,
        20_000,
        good.len() / 2,
        good.len() - 2,
    ] {
        let _ = photo::process(&good[..cut], &PhotoOptions::default());
    }
    // Flipped bytes in the header and the entropy-coded data.
    for at in (4..good.len()).step_by(997) {
        let mut bad = good.clone();
        bad[at] ^= 0xA5;
        let _ = photo::process(&bad, &PhotoOptions::default());
    }

    let small = PhotoOptions {
        max_pixels: 1_000_000,
        ..PhotoOptions::default()
    };
    let big = fs::read(data("mobile/jolla.jpg")).unwrap();
    assert!(matches!(
        photo::process(&big, &small),
        Err(PhotoError::TooLarge {
            width: 3264,
            height: 2448,
            ..
        })
    ));
    let tiny_file = PhotoOptions {
        max_file_bytes: 1_000,
        ..PhotoOptions::default()
    };
    assert!(matches!(
        photo::process(&big, &tiny_file),
        Err(PhotoError::FileTooLarge { .. })
    ));
    assert!(matches!(
        photo::process(b"GIF89a....", &PhotoOptions::default()),
        Err(PhotoError::Corrupt(_))
    ));
    assert!(matches!(
        photo::process(b"", &PhotoOptions::default()),
        Err(PhotoError::Corrupt(_))
    ));
}

fn format(name: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/formats")
            .join(name),
    )
    .unwrap()
}

/// WebP, GIF, BMP and TIFF go through the `image` crate with the JPEG path's guarantees: the
/// picture upright (the EXIF orientation of WebP and TIFF applied), the GPS fix of a WebP
/// taken, the budget met, no metadata out; broken and oversized files get typed errors.
#[test]
fn webp_gif_bmp_and_tiff_come_out_as_small_upright_metadata_free_jpegs() {
    let upright = process("orientation/portrait_1.jpg");
    let (w1, h1, pixels) = decode(&upright.jpeg);
    let reference = layout(w1, h1, &pixels);
    for name in ["portrait_6.webp", "portrait_6.tiff"] {
        let out = photo::process(&format(name), &PhotoOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.orientation, 6, "{name}: orientation read");
        let (w, h, pixels) = decode(&out.jpeg);
        assert!(h > w, "{name}: upright is portrait ({w}×{h})");
        let like = likeness(&reference, &layout(w, h, &pixels));
        assert!(like > 0.9, "{name}: likeness to portrait_1.jpg {like:.3}");
    }
    let webp = photo::process(&format("DSCN0010.webp"), &PhotoOptions::default()).unwrap();
    let jpeg = process("gps/DSCN0010.jpg");
    let (a, b) = (webp.location.unwrap(), jpeg.location.unwrap());
    assert!((a.lat - b.lat).abs() < 1e-9 && (a.lon - b.lon).abs() < 1e-9);
    for name in ["DSCN0010.tiff", "jolla.gif", "jolla.bmp", "DSCN0010.webp"] {
        let bytes = format(name);
        let out = photo::process(&bytes, &PhotoOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out.jpeg.len() <= 500_000 && !out.thumbnail.is_empty(),
            "{name}"
        );
        assert_eq!(
            markers(&out.jpeg),
            markers(&upright.jpeg),
            "{name}: no metadata"
        );
        decode(&out.jpeg);
        // Every truncation and a flipped byte here and there: a typed error or a picture.
        for cut in [
            0,
            1,
            8,
            16,
            30,
            100,
            1_000,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            match photo::process(&bytes[..cut], &PhotoOptions::default()) {
                Ok(out) => drop(decode(&out.jpeg)),
                Err(PhotoError::Corrupt(_)) => {}
                Err(e) => panic!("{name} cut at {cut}: {e}"),
            }
        }
        for at in (8..bytes.len()).step_by(bytes.len() / 40) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5A;
            let _ = photo::process(&bad, &PhotoOptions::default());
        }
        // The pixel bound holds before decoding.
        let small = PhotoOptions {
            max_pixels: 10_000,
            ..PhotoOptions::default()
        };
        assert!(
            matches!(
                photo::process(&bytes, &small),
                Err(PhotoError::TooLarge { .. })
            ),
            "{name}"
        );
    }
    // A WebP whose first EXIF chunk is 100 KB of zeros: not read (a JPEG's EXIF holds at most
    // 64 KiB, and field counts inside could ask for gigabytes); the picture still comes out.
    let real = format("DSCN0010.webp");
    let mut hostile = b"RIFF\0\0\0\0WEBP".to_vec();
    hostile.extend_from_slice(b"EXIF");
    hostile.extend_from_slice(&100_000u32.to_le_bytes());
    hostile.extend_from_slice(b"MM\0*\0\0\0\x08");
    hostile.resize(hostile.len() + 100_000 - 8, 0);
    hostile.extend_from_slice(&real[12..]);
    let riff_len = (hostile.len() - 8) as u32;
    hostile[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let started = Instant::now();
    match photo::process(&hostile, &PhotoOptions::default()) {
        Ok(out) => assert_eq!(out.location, None, "the oversized EXIF chunk was read"),
        Err(PhotoError::Corrupt(_)) => {}
        Err(e) => panic!("hostile WebP: {e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(photo::read_exif(&hostile).map(|f| f.location), Ok(None));

    // A BMP header claiming 20,000 × 20,000 pixels (400 MP) and carrying none.
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0; 12]);
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&20_000i32.to_le_bytes());
    bmp.extend_from_slice(&20_000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    assert!(matches!(
        photo::process(&bmp, &PhotoOptions::default()),
        Err(PhotoError::TooLarge {
            width: 20_000,
            height: 20_000,
            ..
        })
    ));
}

#[test]
fn png_screenshots_are_accepted_with_transparency_on_white() {
    let (w, h) = (400u32, 300u32);
    let mut rgba = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let a = if x < w / 2 { 0 } else { 255 };
            rgba.extend_from_slice(&[200, (y % 256) as u8, 40, a]);
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&rgba).unwrap();
    }
    let out = photo::process(&png_bytes, &PhotoOptions::default()).unwrap();
    assert_eq!((out.width, out.height), (400, 300));
    let (_, _, pixels) = decode(&out.jpeg);
    let left = &pixels[(150 * 400 + 10) * 3..][..3];
    assert!(
        left.iter().all(|&c| c > 240),
        "transparent became white: {left:?}"
    );
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("photos.db")).unwrap();
    (dir, store)
}

fn photo_count(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM photos", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn attached_photos_are_stored_with_their_draft_and_freed_with_it() {
    let (dir, store) = open();
    let db = dir.path().join("photos.db");
    let id = store
        .create_draft("CSROWR-12", &DraftEdit::default())
        .unwrap();

    let attached = store
        .attach_photo(&id, &fs::read(data("gps/DSCN0010.jpg")).unwrap())
        .unwrap();
    assert!(
        attached.location_taken,
        "a draft without a location takes the photo's fix"
    );
    let d = store.draft(&id).unwrap();
    let l = d.location.unwrap();
    assert_eq!(l.source, LocationSource::Photo);
    assert!((l.lat - 43.4674).abs() < 1e-4);
    assert_eq!(d.photos.len(), 1);
    assert_eq!(d.photos[0].sha256, attached.photo.sha256);

    // The stored bytes are the processed JPEG, named by their hash.
    let jpeg = store.photo_jpeg(&attached.photo.sha256).unwrap();
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&jpeg)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, attached.photo.sha256);
    assert_eq!(decode(&store.photo_thumbnail(&hash).unwrap()).0, 320);

    // A second photo with GPS does not move a location the draft already has.
    let second = store
        .attach_photo(&id, &fs::read(data("gps/DSCN0029.jpg")).unwrap())
        .unwrap();
    assert!(!second.location_taken);
    assert_eq!(store.draft(&id).unwrap().location.unwrap().lat, l.lat);
    assert!(
        store
            .attach_photo(&id, &fs::read(data("gps/DSCN0010.jpg")).unwrap())
            .unwrap()
            .already_attached
    );
    assert_eq!(store.photos(&id).unwrap().len(), 2);

    // A photo that fails to decode changes nothing.
    let broken = fs::read(data("invalid/corrupted.jpg")).unwrap();
    let before = store.draft(&id).unwrap();
    if store.attach_photo(&id, &broken).is_err() {
        assert_eq!(store.draft(&id).unwrap(), before);
    }

    store.detach_photo(&id, &second.photo.sha256).unwrap();
    assert_eq!(
        store.photos(&id).unwrap().len(),
        store.draft(&id).unwrap().photos.len()
    );
    assert_eq!(
        photo_count(&db),
        store.photos(&id).unwrap().len() as i64,
        "detaching freed the bytes"
    );
    store.delete_draft(&id).unwrap();
    assert_eq!(photo_count(&db), 0, "deleting the draft freed its photos");
}

#[test]
fn a_request_holds_at_most_five_photos_and_only_drafts_take_photos() {
    let (_dir, store) = open();
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                address: Some(Some("1 Yonge St".into())),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    let mut files: Vec<PathBuf> = fs::read_dir(data("orientation"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files[..5] {
        store.attach_photo(&id, &fs::read(f).unwrap()).unwrap();
    }
    match store.attach_photo(&id, &fs::read(&files[5]).unwrap()) {
        Err(Error::Photo(PhotoError::TooMany { max: 5 })) => {}
        other => panic!("sixth photo: {other:?}"),
    }
    store
        .edit_draft(
            &id,
            &DraftEdit {
                attributes: vec![("SIZE".into(), vec!["small".into()])],
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    assert!(matches!(
        store.attach_photo(&id, &fs::read(&files[6]).unwrap()),
        Err(Error::WrongState { .. })
    ));
    assert_eq!(store.draft(&id).unwrap().photos.len(), 5);
}

#[test]
fn orphaned_photo_bytes_are_removed_on_open() {
    let (dir, store) = open();
    let db = dir.path().join("photos.db");
    let id = store
        .create_draft("CSROWR-12", &DraftEdit::default())
        .unwrap();
    store
        .attach_photo(&id, &fs::read(data("gps/DSCN0012.jpg")).unwrap())
        .unwrap();
    drop(store);
    // What a crash between two separate writes would leave: bytes that nothing links to.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO photos (sha256, jpeg, width, height, quality, thumbnail, thumbnail_width,
                 thumbnail_height, created_at) VALUES ('deadbeef', x'FFD8', 1, 1, 80, x'FFD8', 1, 1, 0)",
            [],
        )
        .unwrap();
    assert_eq!(photo_count(&db), 2);
    let store = Store::open(&db).unwrap();
    assert_eq!(photo_count(&db), 1);
    assert_eq!(store.photos(&id).unwrap().len(), 1, "linked photos stay");
}
