//! The `curbside` binary as a script or a person uses it.

use std::process::{Command, Output};

use serde_json::Value;

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_curbside"))
            .arg("--db")
            .arg(self.dir.path().join("c.db"))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap(), v)
    }
}

#[test]
fn a_resident_drafts_fixes_and_queues_a_report_offline() {
    let cli = Cli::new();
    let (code, v) = cli.json(&[
        "draft",
        "new",
        "CSROWR-12",
        "--description",
        "Pothole by the bus stop",
        "--attr",
        "HAZARDS=cyclists",
        "--attr",
        "HAZARDS=water",
    ]);
    assert_eq!(code, 0);
    let id = v["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["request"]["attributes"]["HAZARDS"],
        serde_json::json!(["cyclists", "water"])
    );
    let fields: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["attribute[SIZE]", "location"]);

    let (code, v) = cli.json(&["draft", "submit", &id]);
    assert_eq!(code, 2, "an incomplete draft is not queued");
    assert_eq!(v["error"]["problems"].as_array().unwrap().len(), 2);

    let (code, _) = cli.json(&[
        "draft",
        "set",
        &id,
        "--attr",
        "SIZE=medium",
        "--lat",
        "43.6532",
        "--lon",
        "-79.3832",
        "--accuracy",
        "4.5",
        "--source",
        "gps",
        "--email",
        "resident@example.org",
        "--anonymous",
    ]);
    assert_eq!(code, 0);
    let (code, v) = cli.json(&["draft", "submit", &id]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["request"]["state"], "queued");
    assert_eq!(v["request"]["anonymous"], true);

    let (_, list) = cli.json(&["draft", "list", "--state", "queued"]);
    assert_eq!(list[0]["id"], id.as_str());
    let (_, list) = cli.json(&["draft", "list", "--state", "draft"]);
    assert_eq!(list.as_array().unwrap().len(), 0);

    let (code, v) = cli.json(&["draft", "delete", &id]);
    assert_eq!((code, v["ok"].as_bool()), (0, Some(true)));
}

#[test]
fn services_and_definitions_list_the_toronto_catalogue() {
    let cli = Cli::new();
    let (_, services) = cli.json(&["services"]);
    let codes: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"30102") && codes.contains(&"TS-STREETLIGHT-OUT"),
        "{codes:?}"
    );
    let out = cli.run(&["service", "ANS-WILDLIFE-INJURED"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("SEEN_AT (datetime, required)"), "{text}");
}

#[test]
fn errors_are_one_clear_line_and_never_a_backtrace() {
    let cli = Cli::new();
    for (args, expected) in [
        (
            vec!["draft", "new", "NOPE"],
            "unknown service code \"NOPE\"",
        ),
        (
            vec!["draft", "new", "CSROWR-12", "--attr", "COLOUR=red"],
            "has no attribute \"COLOUR\"",
        ),
        (
            vec!["draft", "new", "CSROWR-12", "--lat", "0", "--lon", "0"],
            "(0, 0) is not a real fix",
        ),
        (
            vec!["draft", "new", "CSROWR-12", "--lat", "NaN", "--lon", "1"],
            "finite",
        ),
        (vec!["draft", "show", "nope"], "is not a request id"),
        (vec!["draft", "list", "--state", "lost"], "is not one of"),
        (
            vec!["catalog", "import", "/nonexistent/catalog.json"],
            "/nonexistent/catalog.json",
        ),
    ] {
        let out = cli.run(&args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let garbage = cli.dir.path().join("garbage.json");
    std::fs::write(&garbage, b"{\"services\": [ {\"service_code\": \xff").unwrap();
    let out = cli.run(&["catalog", "import", garbage.to_str().unwrap()]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("not valid JSON"));
}

#[test]
fn a_catalogue_round_trips_through_export_and_import() {
    let cli = Cli::new();
    let exported = cli.run(&["catalog", "export"]).stdout;
    let file = cli.dir.path().join("cat.json");
    std::fs::write(&file, &exported).unwrap();
    let other = Cli::new();
    let (code, _) = other.json(&["catalog", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(other.run(&["catalog", "export"]).stdout, exported);

    let real = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/toronto/open311-services.json"
    );
    let (code, v) = other.json(&["catalog", "import", real]);
    assert_eq!(code, 0, "{v}");
    let (_, services) = other.json(&["services"]);
    assert_eq!(services.as_array().unwrap().len(), 6);
}
