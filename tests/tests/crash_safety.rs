//! SIGKILL a process that is writing drafts, at random moments, again and again; after each
//! kill the file must pass `integrity_check` and hold every write the process reported done.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use curbside_core::{State, Store};

const KILLS: usize = 220;

#[test]
fn every_reported_write_survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    // What the writers said they had done: id → (highest description seq, submitted?).
    let mut reported: HashMap<String, (u64, bool)> = HashMap::new();
    let mut attached: HashMap<String, String> = HashMap::new();
    let photo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/photos/gps/DSCN0021.jpg"
    );
    let mut total_lines = 0;
    let mut killed_mid_write = 0;
    let mut waited_for = 0;
    fastrand::seed(0xC0FFEE);
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(&db)
            .arg((round as u64 + 1).to_string())
            .arg(photo)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Wait for a random number of reported writes (none: die while the file is still being
        // created and migrated), then kill at a random moment of the transactions that follow.
        // Counting writes, not milliseconds, keeps the test's work the same on a slow machine.
        let wait_for = fastrand::usize(0..=15);
        waited_for += wait_for;
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut out = String::new();
        for _ in 0..wait_for {
            if stdout.read_line(&mut out).unwrap() == 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..3_000)));
        child.kill().unwrap(); // SIGKILL
        stdout.read_to_string(&mut out).unwrap();
        let status = child.wait().unwrap();
        // The writer never stops by itself: an exit code means it failed, not that it was killed.
        assert_eq!(
            status.code(),
            None,
            "round {round}: the writer failed on its own ({status})"
        );
        killed_mid_write += 1;
        // A line without its newline was cut by the kill: not reported.
        let complete = out.rfind('\n').map_or("", |i| &out[..i]);
        for line in complete.lines() {
            total_lines += 1;
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["created", id, seq] | ["edited", id, seq] => {
                    let e = reported.entry(id.to_string()).or_default();
                    e.0 = e.0.max(seq.parse().unwrap());
                }
                ["submitted", id] => reported.entry(id.to_string()).or_default().1 = true,
                ["attached", id, sha] => {
                    attached.insert(id.to_string(), sha.to_string());
                }
                _ => panic!("unexpected line {line:?}"),
            }
        }

        if !db.exists() {
            continue;
        }
        let conn = rusqlite::Connection::open(&db).unwrap();
        let verdict: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(verdict, "ok", "round {round}");
        drop(conn);
        // The app's own open must accept what the kill left behind.
        let store = Store::open(&db).unwrap_or_else(|e| panic!("round {round}: {e}"));
        drop(store);
        let conn = rusqlite::Connection::open(&db).unwrap();
        let stored: HashMap<String, (u64, String)> = conn
            .prepare("SELECT id, description, state FROM requests")
            .unwrap()
            .query_map([], |r| {
                let d: String = r.get(1)?;
                Ok((
                    r.get(0)?,
                    (d.split(' ').nth(1).unwrap().parse().unwrap(), r.get(2)?),
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let links: std::collections::HashSet<(String, String)> = conn
            .prepare(
                "SELECT rp.request_id, rp.sha256 FROM request_photos rp
                 JOIN photos p ON p.sha256 = rp.sha256 WHERE length(p.jpeg) > 0",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (id, sha) in &attached {
            assert!(
                links.contains(&(id.clone(), sha.clone())),
                "round {round}: the photo attached to {id} is gone"
            );
        }
        for (id, (seq, submitted)) in &reported {
            let (has, state) = stored
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: reported {id} is gone"));
            assert!(
                has >= seq,
                "round {round}: {id} lost edit {seq} (has {has})"
            );
            if *submitted {
                assert_eq!(
                    state,
                    State::Queued.as_str(),
                    "round {round}: {id} lost its submission"
                );
            }
        }
    }
    assert!(
        total_lines >= waited_for && waited_for > 1_000,
        "the writers did real work: {total_lines} writes"
    );
    assert!(
        killed_mid_write >= KILLS / 2,
        "most rounds ended in a kill: {killed_mid_write}"
    );
}
