//! The layers of ARCHITECTURE.md, checked on the source: each module of the crate uses only the
//! modules below it, the sync engine knows nothing of HTTP, and only `request` writes a
//! device's requests and logs their changes. A change that breaks a rule fails here, with the
//! file and line that broke it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each module and the modules it may use (ARCHITECTURE.md, "Layers").
const ALLOWED: [(&str, &[&str]); 9] = [
    ("vocab", &[]),
    ("sql", &[]),
    ("geo", &["vocab"]),
    ("photo", &["vocab"]),
    ("error", &["vocab", "geo", "photo"]),
    ("catalog", &["vocab", "sql", "error"]),
    ("sync", &["vocab", "sql", "error"]),
    (
        "request",
        &["vocab", "sql", "error", "geo", "photo", "catalog", "sync"],
    ),
    (
        "store",
        &[
            "vocab", "sql", "error", "geo", "photo", "catalog", "sync", "request",
        ],
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source files by top-level module, with their lines (tests inside a file excluded).
fn modules() -> BTreeMap<String, Vec<(PathBuf, Vec<String>)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut out: BTreeMap<String, Vec<(PathBuf, Vec<String>)>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        // Comments may name anything; only code counts.
        let lines = code
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    String::new()
                } else {
                    l.to_string()
                }
            })
            .collect();
        out.entry(module)
            .or_default()
            .push((rel.to_path_buf(), lines));
    }
    out
}

fn uses(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .map(|(i, m)| {
            line[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.into_iter().collect();
    let mut broken = Vec::new();
    for (module, files) in modules() {
        if module == "lib" {
            continue;
        }
        let may = allowed
            .get(module.as_str())
            .unwrap_or_else(|| panic!("module {module} is not in ARCHITECTURE.md's layers"));
        for (path, lines) in files {
            for (n, line) in lines.iter().enumerate() {
                for used in uses(line) {
                    if used != module && !may.contains(&used.as_str()) {
                        broken.push(format!(
                            "{}:{}: {module} uses {used}",
                            path.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "layers broken:\n{}", broken.join("\n"));
}

#[test]
fn the_sync_engine_knows_nothing_of_http_and_only_request_writes_requests() {
    let mut broken = Vec::new();
    for (module, files) in modules() {
        for (path, lines) in files {
            let name = path.to_string_lossy().to_string();
            for (n, line) in lines.iter().enumerate() {
                let at = format!("{name}:{}", n + 1);
                if (line.contains("reqwest") || line.contains("rustls")) && name != "sync/http.rs" {
                    broken.push(format!("{at}: HTTP outside sync/http.rs"));
                }
                let writes_requests = [
                    "INSERT INTO requests",
                    "UPDATE requests",
                    "DELETE FROM requests",
                    "request_photos",
                    "INSERT INTO photos",
                    "known_requests",
                ]
                .iter()
                .any(|w| line.contains(w));
                // The migration ladder moves tables; everything else goes through `request`.
                if writes_requests && module != "request" && name != "store/schema.rs" {
                    broken.push(format!("{at}: writes requests outside request/"));
                }
                let logs = ["log::record(", "log::apply(", "apply_noting_new("]
                    .iter()
                    .any(|w| line.contains(w));
                if logs && module != "request" && module != "sync" {
                    broken.push(format!("{at}: logs changes outside request/"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "rules broken:\n{}", broken.join("\n"));
}

#[test]
fn the_rules_catch_what_they_are_for() {
    assert_eq!(uses("use crate::sync::log::{self, Outbox};"), ["sync"]);
    assert_eq!(
        uses("crate::geo::Ward and crate::vocab::State"),
        ["geo", "vocab"]
    );
}
