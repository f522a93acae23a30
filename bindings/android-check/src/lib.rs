//! The Android JNI entry point of curbside-ffi, compiled on its own (see Cargo.toml).
#![cfg(target_os = "android")]

#[path = "../../src/android.rs"]
mod android;
