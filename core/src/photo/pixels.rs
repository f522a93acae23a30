//! Operations on 8-bit RGB buffers: colour conversion from what decoders hand back, resizing
//! (`fast_image_resize`, SIMD) and the eight EXIF orientations.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use super::PhotoError;

/// A packed RGB8 picture.
#[derive(Clone)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgb {
    /// A resized copy.
    pub fn resize(&self, width: u32, height: u32) -> Result<Rgb, PhotoError> {
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        // Typed to RGB8: the resizer's code for its twelve other pixel types stays out of the
        // app's library (3 MB of it; BENCHMARKS.md, library size).
        let src = TypedImageRef::<U8x3>::from_buffer(self.width, self.height, &self.data)
            .map_err(|e| PhotoError::Corrupt(format!("pixel buffer: {e}")))?;
        let (width, height) = (width.max(1), height.max(1));
        let mut data = vec![0u8; width as usize * height as usize * 3];
        let mut dst = TypedImage::<U8x3>::from_buffer(width, height, &mut data)
            .map_err(|e| PhotoError::Corrupt(format!("pixel buffer: {e}")))?;
        // Lanczos3 after the decoder's DCT-domain shrink: sharp, and no moiré on brick or grass.
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        Resizer::new()
            .resize_typed(&src, &mut dst, &options)
            .map_err(|e| PhotoError::Corrupt(format!("resize: {e}")))?;
        Ok(Rgb {
            width,
            height,
            data,
        })
    }

    /// Turns the pixels as stored into the picture as seen, for EXIF orientation 1–8.
    pub fn orient(self, orientation: u8) -> Rgb {
        if !(2..=8).contains(&orientation) {
            return self;
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let swaps = orientation >= 5;
        let (ow, oh) = if swaps { (h, w) } else { (w, h) };
        let mut out = vec![0u8; self.data.len()];
        for oy in 0..oh {
            for ox in 0..ow {
                // Where the output pixel (ox, oy) comes from in the stored image.
                let (ix, iy) = match orientation {
                    2 => (w - 1 - ox, oy),
                    3 => (w - 1 - ox, h - 1 - oy),
                    4 => (ox, h - 1 - oy),
                    5 => (oy, ox),
                    6 => (oy, h - 1 - ox),
                    7 => (w - 1 - oy, h - 1 - ox),
                    _ => (w - 1 - oy, ox), // 8
                };
                let i = (iy * w + ix) * 3;
                let o = (oy * ow + ox) * 3;
                out[o..o + 3].copy_from_slice(&self.data[i..i + 3]);
            }
        }
        Rgb {
            width: ow as u32,
            height: oh as u32,
            data: out,
        }
    }
}

/// The largest size with the same aspect whose long edge is at most `max_edge`.
pub fn fit(width: u32, height: u32, max_edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_edge {
        return (width, height);
    }
    let scale = max_edge as f64 / long as f64;
    let w = ((width as f64 * scale).round() as u32).clamp(1, max_edge);
    let h = ((height as f64 * scale).round() as u32).clamp(1, max_edge);
    (w, h)
}

pub fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    gray.iter().flat_map(|&g| [g, g, g]).collect()
}

/// Adobe CMYK JPEGs store inverted values; jpeg-decoder hands them back as stored.
pub fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let k = p[3] as u32;
            [
                (p[0] as u32 * k / 255) as u8,
                (p[1] as u32 * k / 255) as u8,
                (p[2] as u32 * k / 255) as u8,
            ]
        })
        .collect()
}

/// Composites RGBA over white: a transparent screenshot becomes a white background, not black.
pub fn rgba_over_white(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let a = p[3] as u32;
            let blend = |c: u8| ((c as u32 * a + 255 * (255 - a)) / 255) as u8;
            [blend(p[0]), blend(p[1]), blend(p[2])]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 picture whose pixels are numbered, so every orientation can be checked by hand.
    fn numbered() -> Rgb {
        Rgb {
            width: 3,
            height: 2,
            data: (0u8..6).flat_map(|i| [i, i, i]).collect(),
        }
    }

    fn ids(rgb: &Rgb) -> Vec<u8> {
        rgb.data.chunks(3).map(|p| p[0]).collect()
    }

    #[test]
    fn each_orientation_turns_the_stored_pixels_upright() {
        // Stored:  0 1 2
        //          3 4 5
        let cases: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [0, 1, 2, 3, 4, 5]),
            (2, (3, 2), [2, 1, 0, 5, 4, 3]),
            (3, (3, 2), [5, 4, 3, 2, 1, 0]),
            (4, (3, 2), [3, 4, 5, 0, 1, 2]),
            (5, (2, 3), [0, 3, 1, 4, 2, 5]),
            (6, (2, 3), [3, 0, 4, 1, 5, 2]),
            (7, (2, 3), [5, 2, 4, 1, 3, 0]),
            (8, (2, 3), [2, 5, 1, 4, 0, 3]),
        ];
        for (o, dims, expected) in cases {
            let out = numbered().orient(o);
            assert_eq!((out.width, out.height), dims, "orientation {o}");
            assert_eq!(ids(&out), expected, "orientation {o}");
        }
    }

    #[test]
    fn fit_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit(4032, 3024, 1600), (1600, 1200));
        assert_eq!(fit(3024, 4032, 1600), (1200, 1600));
        assert_eq!(fit(640, 480, 1600), (640, 480));
        assert_eq!(fit(100_000, 3, 1600), (1600, 1));
    }
}
