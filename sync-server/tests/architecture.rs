//! The server's boundaries of ARCHITECTURE.md, checked on the source: SQL lives in `storage/`
//! only (handlers never see it), and the scope rule is applied through `scope.rs` alone.

use std::path::Path;

fn files(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn sql_lives_in_storage_and_the_scope_rule_in_scope() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut broken = Vec::new();
    for (path, text) in &all {
        let in_storage = path.contains("/storage/");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let sql = ["rusqlite", "SELECT ", "INSERT ", "UPDATE ", "DELETE "]
                .iter()
                .any(|w| line.contains(w));
            if sql && !in_storage {
                broken.push(format!("{path}:{}: SQL outside storage/", n + 1));
            }
            // Who may see or change what is decided in scope.rs; others ask it.
            let rule = line.contains("created_by ==") || line.contains("wards.contains(");
            if rule && !path.ends_with("scope.rs") {
                broken.push(format!(
                    "{path}:{}: a scope decision outside scope.rs",
                    n + 1
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "boundaries broken:\n{}",
        broken.join("\n")
    );
}
