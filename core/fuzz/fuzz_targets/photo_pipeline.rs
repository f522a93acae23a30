//! The whole photo pipeline on arbitrary bytes: it must return a photo or a typed error, never
//! panic, hang or run out of memory. Small limits keep each run fast and memory bounded.
#![no_main]

use curbside_core::photo::{process, read_exif, PhotoOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = PhotoOptions {
        max_edge: 256,
        budget_bytes: 40_000,
        max_pixels: 4_000_000,
        max_decode_bytes: 64 << 20,
        ..PhotoOptions::default()
    };
    if let Ok(photo) = process(data, &options) {
        assert!(photo.width.max(photo.height) <= 256);
        assert!(photo.jpeg.starts_with(&[0xFF, 0xD8]));
    }
    let _ = read_exif(data);
});
