//! Writes drafts into a store as fast as it can and reports each write on stdout once its
//! transaction has committed. The crash test kills it at random moments and checks that every
//! reported write survived.
//!
//! Lines: `created ID SEQ`, `edited ID SEQ`, `submitted ID`, `attached ID SHA256`.

use std::io::Write;

use curbside_core::{DraftEdit, Location, LocationSource, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let db = args.next().expect("usage: crash-writer DB SEED [PHOTO]");
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let photo = args.next().map(|p| std::fs::read(p).expect("photo"));
    let store = Store::open(&db).expect("open");
    // Points between 43.66 and 43.76 N on 79.4 W: inside Toronto, so every submit is valid.
    let mut out = std::io::stdout().lock();
    let mut live: Vec<String> = Vec::new();
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift: different interleavings per run, no dependency needed in the child.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seq in 0u64.. {
        let edit = DraftEdit {
            description: Some(format!(
                "seq {seq} {}",
                "pothole ".repeat((next() % 40) as usize)
            )),
            attributes: vec![("SIZE".into(), vec!["medium".into()])],
            location: Some(Some(
                Location::new(
                    43.66 + (next() % 1000) as f64 / 10_000.0,
                    -79.4,
                    Some(5.0),
                    LocationSource::Gps,
                )
                .unwrap(),
            )),
            ..DraftEdit::default()
        };
        match next() % 5 {
            0 | 1 => {
                let id = store.create_draft("CSROWR-12", &edit).expect("create");
                writeln!(out, "created {id} {seq}").unwrap();
                live.push(id);
            }
            4 if !live.is_empty() && photo.is_some() => {
                let id = &live[(next() as usize) % live.len()];
                match store.attach_photo(id, photo.as_deref().unwrap()) {
                    Ok(a) => writeln!(out, "attached {id} {}", a.photo.sha256).unwrap(),
                    // A draft holds at most five photos; the same photo twice is a no-op.
                    Err(curbside_core::Error::Photo(curbside_core::PhotoError::TooMany {
                        ..
                    })) => {}
                    Err(e) => panic!("attach: {e}"),
                }
            }
            2 if !live.is_empty() => {
                let id = &live[(next() as usize) % live.len()];
                store.edit_draft(id, &edit).expect("edit");
                writeln!(out, "edited {id} {seq}").unwrap();
            }
            _ if !live.is_empty() => {
                let id = live.swap_remove((next() as usize) % live.len());
                store.submit_draft(&id).expect("submit");
                writeln!(out, "submitted {id}").unwrap();
            }
            _ => {}
        }
        out.flush().unwrap();
    }
}
