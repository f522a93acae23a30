//! Ships Toronto's ward boundaries gzipped: 740 KB of GeoJSON become 235 KB of the app's
//! library (BENCHMARKS.md, library size), inflated once, when wards are first needed.

use std::io::Write;

fn main() {
    let source = "geo/toronto-wards-25.geojson";
    println!("cargo:rerun-if-changed={source}");
    let json = std::fs::read(source).expect("the ward boundaries are in the crate");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json).expect("writing to a Vec");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("toronto-wards-25.geojson.gz"),
        gz.finish().expect("writing to a Vec"),
    )
    .expect("OUT_DIR is writable");
}
