//! The photo pipeline: a phone's photo in, a small, upright, metadata-free JPEG out.
//!
//! decode (JPEG with DCT-domain shrink-on-load as libvips does, or PNG; WebP, GIF's first frame,
//! BMP and TIFF through the `image` crate's decoders) → resize so the long edge
//! is at most 1,600 px (Lanczos3) → apply the EXIF orientation → encode baseline JPEG 4:2:0 to a
//! byte budget → thumbnail. The EXIF GPS fix and capture time are read on the way and offered to
//! the draft; nothing of the original's metadata is written. Untrusted input is bounded in
//! pixels and memory before any decoding and never panics.

mod exif;
mod pixels;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::vocab::Location;

pub use exif::ExifFacts;

use pixels::{fit, Rgb};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("{format} photos are not supported: {hint}")]
    UnsupportedFormat { format: String, hint: String },
    #[error("the photo is {width}×{height} ({} MP); at most {} MP is accepted", (*width as u64 * *height as u64) / 1_000_000, max_pixels / 1_000_000)]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("the file is {bytes} bytes; at most {max} is accepted")]
    FileTooLarge { bytes: usize, max: usize },
    #[error("the photo cannot be read: {0}")]
    Corrupt(String),
    #[error("a request holds at most {max} photos")]
    TooMany { max: usize },
}

/// How photos are processed; the defaults follow what messaging apps ship (1,600 px, ~q80).
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoOptions {
    /// Long edge of the result, in pixels.
    pub max_edge: u32,
    /// Largest encoded size, in bytes.
    pub budget_bytes: usize,
    /// Quality to start from; lowered (down to `min_quality`) only to meet the budget.
    pub quality: u8,
    /// Below this JPEG looks bad: the dimensions shrink instead.
    pub min_quality: u8,
    pub thumbnail_edge: u32,
    pub thumbnail_quality: u8,
    /// Refused before decoding.
    pub max_pixels: u64,
    pub max_file_bytes: usize,
    /// Working memory the decoder may use (coefficients of progressive JPEGs, pixels).
    pub max_decode_bytes: usize,
    pub max_per_request: usize,
}

impl Default for PhotoOptions {
    fn default() -> Self {
        PhotoOptions {
            max_edge: 1_600,
            budget_bytes: 500_000,
            quality: 80,
            min_quality: 60,
            thumbnail_edge: 320,
            thumbnail_quality: 70,
            max_pixels: 100_000_000,
            max_file_bytes: 64 << 20,
            max_decode_bytes: 512 << 20,
            max_per_request: 5,
        }
    }
}

/// A processed photo, named by the SHA-256 of its JPEG bytes.
#[derive(Clone, PartialEq, Serialize)]
pub struct Processed {
    pub sha256: String,
    #[serde(skip)]
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub quality: u8,
    #[serde(skip)]
    pub thumbnail: Vec<u8>,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    /// Where and when the original says it was taken (never written into the output).
    pub location: Option<Location>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub captured_at: Option<OffsetDateTime>,
    pub source_width: u32,
    pub source_height: u32,
    pub orientation: u8,
}

impl fmt::Debug for Processed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processed")
            .field("sha256", &self.sha256)
            .field("bytes", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("quality", &self.quality)
            .finish_non_exhaustive()
    }
}

/// Runs the whole pipeline on untrusted bytes.
pub fn process(bytes: &[u8], options: &PhotoOptions) -> Result<Processed, PhotoError> {
    if bytes.len() > options.max_file_bytes {
        return Err(PhotoError::FileTooLarge {
            bytes: bytes.len(),
            max: options.max_file_bytes,
        });
    }
    let (picture, facts, source) = match sniff(bytes)? {
        Format::Jpeg => decode_jpeg(bytes, options)?,
        Format::Png => decode_png(bytes, options)?,
        Format::Other(format) => decode_other(bytes, format, options)?,
    };
    // Resize in stored orientation (the long edge is the same), then turn the small result.
    let (w, h) = fit(picture.width, picture.height, options.max_edge);
    let mut upright = picture.resize(w, h)?.orient(facts.orientation);
    drop(picture);

    let (jpeg, quality) = encode_to_budget(&mut upright, options)?;
    let (tw, th) = fit(upright.width, upright.height, options.thumbnail_edge);
    let thumb = upright.resize(tw, th)?;
    let thumbnail = encode(&thumb, options.thumbnail_quality)?;
    let sha256 = hex(&Sha256::digest(&jpeg));
    Ok(Processed {
        sha256,
        width: upright.width,
        height: upright.height,
        jpeg,
        quality,
        thumbnail,
        thumbnail_width: thumb.width,
        thumbnail_height: thumb.height,
        location: facts.location,
        captured_at: facts.captured_at,
        source_width: source.0,
        source_height: source.1,
        orientation: facts.orientation,
    })
}

/// Reads only the EXIF facts (location, time, orientation) of a JPEG, without decoding pixels.
pub fn read_exif(bytes: &[u8]) -> Result<ExifFacts, PhotoError> {
    match sniff(bytes)? {
        Format::Png => Ok(exif::read(None)),
        Format::Other(format) => Ok(facts_of(bytes, format, &PhotoOptions::default())),
        Format::Jpeg => {
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            decoder.read_info().map_err(corrupt)?;
            Ok(exif::read(decoder.exif_data()))
        }
    }
}

enum Format {
    Jpeg,
    Png,
    /// WebP, GIF, BMP or TIFF: decoded by the `image` crate.
    Other(image::ImageFormat),
}

/// Tells formats apart by their first bytes, never by a file name.
fn sniff(bytes: &[u8]) -> Result<Format, PhotoError> {
    let unsupported = |format: &str| PhotoError::UnsupportedFormat {
        format: format.into(),
        hint:
            "hand over JPEG: on iOS set PHPickerConfiguration.preferredAssetRepresentationMode = \
               .compatible (the picker then transcodes HEIF to JPEG); on Android decode with \
               ImageDecoder or BitmapFactory and compress to JPEG"
                .into(),
    };
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = String::from_utf8_lossy(&bytes[8..12]).to_string();
        return Err(match brand.as_str() {
            "avif" | "avis" => unsupported("AVIF"),
            _ => unsupported(&format!("HEIC/HEIF ({})", brand.trim())),
        });
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Format::Other(image::ImageFormat::WebP));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(Format::Other(image::ImageFormat::Gif));
    }
    if bytes.starts_with(b"BM") && bytes.len() >= 26 {
        return Ok(Format::Other(image::ImageFormat::Bmp));
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return Ok(Format::Other(image::ImageFormat::Tiff));
    }
    if bytes.is_empty() {
        return Err(PhotoError::Corrupt("the file is empty".into()));
    }
    Err(PhotoError::Corrupt(
        "not a JPEG, PNG, WebP, GIF, BMP or TIFF image (unknown format)".into(),
    ))
}

fn corrupt(e: impl fmt::Display) -> PhotoError {
    PhotoError::Corrupt(e.to_string())
}

fn check_pixels(width: u32, height: u32, options: &PhotoOptions) -> Result<(), PhotoError> {
    if width == 0 || height == 0 {
        return Err(PhotoError::Corrupt(format!(
            "the image is {width}×{height}"
        )));
    }
    if width as u64 * height as u64 > options.max_pixels {
        return Err(PhotoError::TooLarge {
            width,
            height,
            max_pixels: options.max_pixels,
        });
    }
    Ok(())
}

type Decoded = (Rgb, ExifFacts, (u32, u32));

fn decode_jpeg(bytes: &[u8], options: &PhotoOptions) -> Result<Decoded, PhotoError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(options.max_decode_bytes);
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| corrupt("no image header"))?;
    let (sw, sh) = (u32::from(info.width), u32::from(info.height));
    check_pixels(sw, sh, options)?;
    let facts = exif::read(decoder.exif_data());
    // Shrink-on-load: decode at 1/2, 1/4 or 1/8 in the DCT domain, never below the target.
    let (tw, th) = fit(sw, sh, options.max_edge);
    decoder.scale(tw as u16, th as u16).map_err(corrupt)?;
    let data = decoder.decode().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| corrupt("no image header"))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let pixels = w as usize * h as usize;
    let data = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data,
        jpeg_decoder::PixelFormat::L8 => pixels::gray_to_rgb(&data),
        jpeg_decoder::PixelFormat::L16 => {
            pixels::gray_to_rgb(&data.chunks_exact(2).map(|c| c[0]).collect::<Vec<_>>())
        }
        jpeg_decoder::PixelFormat::CMYK32 => pixels::cmyk_to_rgb(&data),
    };
    if data.len() < pixels * 3 {
        return Err(corrupt("the decoder returned too few pixels"));
    }
    Ok((
        Rgb {
            width: w,
            height: h,
            data,
        },
        facts,
        (sw, sh),
    ))
}

fn decode_png(bytes: &[u8], options: &PhotoOptions) -> Result<Decoded, PhotoError> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits {
            bytes: options.max_decode_bytes,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let header = decoder.read_header_info().map_err(corrupt)?;
    let (sw, sh) = (header.width, header.height);
    check_pixels(sw, sh, options)?;
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| corrupt("the image is too large to decode"))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
    buf.truncate(frame.buffer_size());
    let data = match frame.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => pixels::rgba_over_white(&buf),
        png::ColorType::Grayscale => pixels::gray_to_rgb(&buf),
        png::ColorType::GrayscaleAlpha => {
            let rgba: Vec<u8> = buf
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect();
            pixels::rgba_over_white(&rgba)
        }
        png::ColorType::Indexed => return Err(corrupt("palette was not expanded")),
    };
    let facts = ExifFacts {
        orientation: 1,
        ..ExifFacts::default()
    };
    Ok((
        Rgb {
            width: frame.width,
            height: frame.height,
            data,
        },
        facts,
        (sw, sh),
    ))
}

/// The facts of a format decoded by `image`. A WebP file carries EXIF in its `EXIF` chunk (read
/// like a JPEG's, within the same 64 KiB); a TIFF file is itself TIFF-structured, too large to
/// hand to the EXIF reader whole, so only its orientation tag is read, by its decoder; GIF and
/// BMP have none.
fn facts_of(bytes: &[u8], format: image::ImageFormat, options: &PhotoOptions) -> ExifFacts {
    match format {
        image::ImageFormat::Tiff => {
            use image::ImageDecoder;
            let orientation = reader(bytes, format, options)
                .into_decoder()
                .and_then(|mut d| d.orientation())
                .map(|o| o.to_exif())
                .unwrap_or(1);
            ExifFacts {
                orientation,
                ..exif::read(None)
            }
        }
        _ => exif::read(exif_of(bytes, format)),
    }
}

/// The `EXIF` chunk of a WebP file, as TIFF-structured bytes.
fn exif_of(bytes: &[u8], format: image::ImageFormat) -> Option<&[u8]> {
    match format {
        image::ImageFormat::WebP => {
            let mut at = 12;
            while at + 8 <= bytes.len() {
                let id = &bytes[at..at + 4];
                let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
                let body = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
                if id == b"EXIF" {
                    // Some writers keep the JPEG APP1 prefix.
                    return Some(body.strip_prefix(b"Exif\0\0").unwrap_or(body));
                }
                // Chunks are padded to an even length.
                at = at.checked_add(8 + len + (len & 1))?;
            }
            None
        }
        _ => None,
    }
}

/// An `image` reader of `bytes` within the decoding budget.
fn reader<'a>(
    bytes: &'a [u8],
    format: image::ImageFormat,
    options: &PhotoOptions,
) -> image::ImageReader<std::io::Cursor<&'a [u8]>> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(options.max_decode_bytes as u64);
    reader.limits(limits);
    reader
}

fn decode_other(
    bytes: &[u8],
    format: image::ImageFormat,
    options: &PhotoOptions,
) -> Result<Decoded, PhotoError> {
    // The header first: the pixel bound holds before a single pixel is decoded.
    let (sw, sh) = reader(bytes, format, options)
        .into_dimensions()
        .map_err(corrupt)?;
    check_pixels(sw, sh, options)?;
    let decoded = reader(bytes, format, options)
        .decode()
        .map_err(|e| match e {
            image::ImageError::Limits(_) => PhotoError::TooLarge {
                width: sw,
                height: sh,
                max_pixels: options.max_pixels,
            },
            e => corrupt(e),
        })?;
    // `image`'s buffers hold exactly width × height pixels.
    let (w, h) = (decoded.width(), decoded.height());
    let data = if decoded.color().has_alpha() {
        pixels::rgba_over_white(decoded.into_rgba8().as_raw())
    } else {
        decoded.into_rgb8().into_raw()
    };
    Ok((
        Rgb {
            width: w,
            height: h,
            data,
        },
        facts_of(bytes, format, options),
        (sw, sh),
    ))
}

fn encode(picture: &Rgb, quality: u8) -> Result<Vec<u8>, PhotoError> {
    let mut out = Vec::with_capacity(picture.data.len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder.set_progressive(false);
    encoder
        .encode(
            &picture.data,
            picture.width as u16,
            picture.height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| PhotoError::Corrupt(format!("encode: {e}")))?;
    Ok(out)
}

/// Encodes at `options.quality`; over budget, finds the highest quality down to the floor that
/// fits; if even the floor does not fit, shrinks the picture and tries again.
fn encode_to_budget(
    picture: &mut Rgb,
    options: &PhotoOptions,
) -> Result<(Vec<u8>, u8), PhotoError> {
    let start = options.quality.clamp(1, 100);
    let floor = options.min_quality.clamp(1, start);
    loop {
        let first = encode(picture, start)?;
        if first.len() <= options.budget_bytes {
            return Ok((first, start));
        }
        let at_floor = encode(picture, floor)?;
        if at_floor.len() <= options.budget_bytes {
            // Binary search in (floor, start): the best quality that fits.
            let (mut lo, mut hi, mut best) = (floor, start, (at_floor, floor));
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                let attempt = encode(picture, mid)?;
                if attempt.len() <= options.budget_bytes {
                    lo = mid;
                    best = (attempt, mid);
                } else {
                    hi = mid;
                }
            }
            return Ok(best);
        }
        if picture.width.max(picture.height) <= 64 {
            // Nothing sensible is left to shrink: a tiny picture over budget means a tiny budget.
            return Ok((at_floor, floor));
        }
        // Bytes scale roughly with area: aim a little under the budget.
        let scale = (options.budget_bytes as f64 / at_floor.len() as f64).sqrt() * 0.95;
        let w = ((picture.width as f64 * scale) as u32).max(1);
        let h = ((picture.height as f64 * scale) as u32).max(1);
        *picture = picture.resize(w, h)?;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long `f` took, for the CLI's report.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// What a server does with an uploaded photo before serving it: checks it is a JPEG that
/// decodes within `options`' bounds and encodes its pixels again, upright and no larger than
/// `options.max_edge`, at `options.quality`. Nothing the uploader sent survives but the
/// picture: no metadata segment, nothing after the image's end.
pub fn clean_upload(bytes: &[u8], options: &PhotoOptions) -> Result<Vec<u8>, PhotoError> {
    if bytes.len() > options.max_file_bytes {
        return Err(PhotoError::FileTooLarge {
            bytes: bytes.len(),
            max: options.max_file_bytes,
        });
    }
    if !matches!(sniff(bytes)?, Format::Jpeg) {
        return Err(corrupt("an uploaded photo must be a JPEG"));
    }
    let (picture, facts, _) = decode_jpeg(bytes, options)?;
    let (w, h) = fit(picture.width, picture.height, options.max_edge);
    let picture = if (w, h) == (picture.width, picture.height) {
        picture
    } else {
        picture.resize(w, h)?
    };
    encode(&picture.orient(facts.orientation), options.quality)
}
