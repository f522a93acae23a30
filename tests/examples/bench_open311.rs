//! Open311 under load (issue #11), server and load generator on this machine:
//!
//!   cargo run --release -p curbside-e2e --example bench_open311 [-- SECONDS]      # 10
//!   BENCH_DATABASE=postgres://postgres@127.0.0.1:PORT/postgres cargo run … (PostgreSQL)
//!
//! `wrk` (Debian's) drives a real server in this process (its own runtime, 2 workers), from
//! one address, so the server's per-address and per-key budgets are raised for the run:
//!
//! 0. the peer: `wrk` on `/healthz` (the HTTP stack with nothing behind it), 64 connections;
//! 1. `POST requests.json`: a streetlight out somewhere in the city, a new request each time
//!    (checked, numbered, dated, checked for duplicates, logged, filed), 64 connections:
//!    requests/s and p99 (targets: ≥ 5,000/s with p99 ≤ 20 ms on SQLite; ≥ 2,000/s on
//!    PostgreSQL);
//! 2. `GET requests.json?page_size=100` over 100,000 stored requests, 64 connections (target
//!    ≥ 3,000/s), and 3. the same in XML (target: within 1.5× of JSON's time).

use std::time::{Duration, Instant};

use curbside_e2e::start_server_with;

/// Reads wrk's answer: requests/s, p50 and p99 in ms, and answers that were not 2xx.
fn wrk(args: &[&str], script: Option<&str>) -> (f64, f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t2", "-c64", "--latency"]).args(args);
    if let Some(lua) = script {
        let path = dir.path().join("script.lua");
        std::fs::write(&path, lua).unwrap();
        cmd.arg("-s").arg(path);
    }
    let out = cmd.output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
    };
    let ms = |v: String| -> f64 {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let rate = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let p50 = field("50%").map(ms).unwrap_or(f64::NAN);
    let p99 = field("99%").map(ms).unwrap_or(f64::NAN);
    let bad = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses:"))
        .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        .unwrap_or(0);
    (rate, p50, p99, bad)
}

fn database() -> String {
    match std::env::var("BENCH_DATABASE") {
        Ok(server) if !server.is_empty() => {
            let name = format!("curbside_open311_{}", std::process::id());
            curbside_server::storage::postgres::create_database(&server, &name).unwrap()
        }
        _ => "sqlite".into(),
    }
}

/// A streetlight out at a random place in the city (Lua, for wrk): every request a new one.
fn post_script(key: &str) -> String {
    format!(
        r#"math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  local lat = 43.60 + math.random() * 0.15
  local lon = -79.50 + math.random() * 0.25
  local body = string.format("api_key={key}&service_code=TS-STREETLIGHT-OUT&lat=%.6f&long=%.6f&attribute[PROBLEM]=out&description=Dark+corner+by+the+bus+stop&email=a%%40example.org", lat, lon)
  return wrk.format(nil, "/requests.json", nil, body)
end
"#
    )
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let database = database();
    let engine = if database == "sqlite" {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    // BENCH_DIR keeps the server's data between runs (the 100,000 requests are made once).
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temp.path().to_path_buf());
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let server = start_server_with(&dir, |c| {
        c.database = database.clone();
        // One wrk, one address, one key: budgets made for many clients are raised.
        c.limits.address_per_second = 10_000_000;
        c.limits.open311_posts_per_minute = 100_000_000;
    });
    let (_, key) = curbside_server::open311::create_api_key(&server.state, "bench").unwrap();
    let url = server.url();
    let d = format!("-d{seconds}s");
    println!("Open311 on {engine}, server and wrk on this machine ({seconds} s a run)");

    let (peer, _, _, _) = wrk(&[&d, &format!("{url}/healthz")], None);
    println!("  peer: wrk on /healthz (the HTTP stack, nothing behind it): {peer:.0} requests/s");

    if only == "get" {
        return get_phase(&url, &key, &d);
    }
    let (rate, p50, p99, bad) = wrk(
        &[&d, &format!("{url}/requests.json")],
        Some(&post_script(&key)),
    );
    let target = if database == "sqlite" {
        5_000.0
    } else {
        2_000.0
    };
    println!(
        "  POST requests.json: {rate:.0} requests/s, p50 {p50:.1} ms, p99 {p99:.1} ms, {bad} not 2xx \
         ({:.2}x the peer; target ≥ {target:.0}/s{})",
        rate / peer,
        if database == "sqlite" { ", p99 ≤ 20 ms" } else { "" }
    );
    assert_eq!(bad, 0, "every post taken");
    let metrics = ureq_get(&url, "/metrics");
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0.0)
    };
    let (commits, writes) = (
        metric("curbside_storage_group_commits_total"),
        metric("curbside_storage_group_commit_writes_total"),
    );
    if commits > 0.0 {
        println!(
            "    {commits:.0} group commits, {:.1} writes each on average",
            writes / commits
        );
    }
    if only == "post" {
        return;
    }
    get_phase(&url, &key, &d);
    drop(server);
}

/// Tops the store up to 100,000 requests, then GET requests in JSON and XML.
fn get_phase(url: &str, key: &str, d: &str) {
    let url = url.to_string();

    // Up to 100,000 stored requests, posted through the same path from 16 threads. Public
    // numbers run from 100,001 up, one per request: the last one tells how many are stored.
    let t = Instant::now();
    let stored = |agent: &mut Agent| -> usize {
        let answer = agent.post(&format!(
            "api_key={key}&service_code=TS-STREETLIGHT-OUT&lat=43.65&long=-79.38\
             &attribute[PROBLEM]=out"
        ));
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        v[0]["service_request_id"]
            .as_str()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap()
            - 100_000
    };
    let need = 100_000usize.saturating_sub(stored(&mut Agent::new(&url)));
    std::thread::scope(|scope| {
        for k in 0..16 {
            let url = url.clone();
            let key = key.to_string();
            scope.spawn(move || {
                let mut agent = Agent::new(&url);
                for i in (k..need).step_by(16) {
                    let lat = 43.60 + (i % 1000) as f64 * 0.00015;
                    let lon = -79.50 + (i / 1000) as f64 * 0.0025;
                    agent.post(&format!(
                        "api_key={key}&service_code=TS-STREETLIGHT-OUT&lat={lat:.6}\
                         &long={lon:.6}&attribute[PROBLEM]=out&description=Dark+corner"
                    ));
                }
            });
        }
    });
    println!(
        "  stored: {} requests ({:.0} s to top up)",
        stored(&mut Agent::new(&url)),
        t.elapsed().as_secs_f64()
    );
    let (json, jp50, jp99, bad) = wrk(&[d, &format!("{url}/requests.json?page_size=100")], None);
    assert_eq!(bad, 0);
    println!(
        "  GET requests.json?page_size=100: {json:.0} requests/s, p50 {jp50:.1} ms, p99 {jp99:.1} ms (target ≥ 3,000/s)"
    );
    let (xml, xp50, xp99, bad) = wrk(&[d, &format!("{url}/requests.xml?page_size=100")], None);
    assert_eq!(bad, 0);
    println!(
        "  GET requests.xml?page_size=100: {xml:.0} requests/s, p50 {xp50:.1} ms, p99 {xp99:.1} ms; XML takes {:.2}x JSON's time (target ≤ 1.5x)",
        json / xml
    );
    // Every page a client may ask for (a hundred of 100: deeper, it narrows the dates), in no
    // order: what walking the span costs, against the warm first page above.
    let walk = r#"math.randomseed(os.time())
request = function()
  return wrk.format(nil, "/requests.json?page_size=100&page=" .. math.random(1, 101))
end
"#;
    let (cold, cp50, cp99, bad) = wrk(&[d, &format!("{url}/requests.json")], Some(walk));
    assert_eq!(bad, 0);
    println!(
        "  GET requests.json?page_size=100&page=(1 to 101 at random): {cold:.0} requests/s, p50 {cp50:.1} ms, p99 {cp99:.1} ms"
    );
    std::thread::sleep(Duration::from_millis(100));
}

/// One plain GET (the metrics).
fn ureq_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A blocking keep-alive HTTP/1.1 client for the seeding: enough for form posts and gets.
struct Agent {
    addr: String,
    stream: Option<std::io::BufReader<std::net::TcpStream>>,
}

impl Agent {
    fn new(url: &str) -> Agent {
        Agent {
            addr: url.trim_start_matches("http://").to_string(),
            stream: None,
        }
    }

    fn exchange(&mut self, head: &str, body: &str) -> String {
        use std::io::{BufRead, Read, Write};
        for _ in 0..3 {
            let stream = self.stream.get_or_insert_with(|| {
                let s = std::net::TcpStream::connect(&self.addr).unwrap();
                s.set_nodelay(true).unwrap();
                std::io::BufReader::new(s)
            });
            let request = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
            if stream.get_mut().write_all(request.as_bytes()).is_err() {
                self.stream = None;
                continue;
            }
            let mut line = String::new();
            let (mut length, mut chunked) = (0usize, false);
            let mut ok = stream.read_line(&mut line).is_ok_and(|n| n > 0);
            while ok {
                let mut h = String::new();
                ok = stream.read_line(&mut h).is_ok_and(|n| n > 0);
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                    chunked = true;
                }
                if h == "\r\n" {
                    break;
                }
            }
            if !ok {
                self.stream = None;
                continue;
            }
            let mut out = Vec::new();
            if chunked {
                loop {
                    let mut size = String::new();
                    stream.read_line(&mut size).unwrap();
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0; n + 2];
                    stream.read_exact(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
            } else {
                out.resize(length, 0);
                stream.read_exact(&mut out).unwrap();
            }
            assert!(
                line.contains(" 200 "),
                "{line}: {}",
                String::from_utf8_lossy(&out)
            );
            return String::from_utf8(out).unwrap();
        }
        panic!("the server stopped answering");
    }

    fn post(&mut self, form: &str) -> String {
        self.exchange(
            "POST /requests.json HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            form,
        )
    }
}
