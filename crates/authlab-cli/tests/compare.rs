//! `authlab compare` as a user runs it: refused flags, and Ctrl-C in the middle of a run.
//!
//! These drive the real binary against the machine's Redis (127.0.0.1:6379), with a private
//! temporary directory (`TMPDIR`) so that what the run leaves behind can be looked at.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn compare(tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authlab"));
    command
        .env_remove("RUST_LOG")
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .arg("compare");
    command
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("authlab-compare-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// The entries of `dir` that a compare run creates (`authlab-compare-<pid>-<run>`).
fn run_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("authlab-compare-"))
        .collect()
}

fn redis_keys(pattern: &str) -> Vec<String> {
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: redis::Iter<'_, String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(&mut conn)
        .unwrap();
    keys.filter_map(Result::ok).collect()
}

#[test]
fn a_zero_duration_is_refused_before_anything_runs_with_exit_code_2() {
    let tmp = scratch();
    let out = compare(&tmp)
        .args(["--duration", "0s", "--out"])
        .arg(tmp.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "invalid value '0s' for '--duration <DURATION>': must be between 10ms and 1h"
        ),
        "{stderr}"
    );
    assert!(!tmp.join("report").exists(), "no report for a refused run");
    assert_eq!(run_dirs(&tmp), Vec::<String>::new());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn with_redis_down_the_run_names_it_and_how_to_start_it_before_anything_runs() {
    let tmp = scratch();
    // A port nobody listens on: bound, read, and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let out = compare(&tmp)
        .args([
            "--redis-url",
            &format!("redis://:hunter2-pw@127.0.0.1:{port}/0"),
        ])
        .arg("--out")
        .arg(tmp.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        lines,
        [
            format!(
                "error: Redis at redis://:***@127.0.0.1:{port}/0 does not answer (the redis and \
                 jwt modes need it): Redis is unreachable: Connection refused (os error 111)"
            ),
            format!(
                "help: start it (on this machine: `redis-server --port {port} --daemonize yes`), \
                 or point --redis-url (AUTHLAB_REDIS_URL) at a running one"
            ),
        ],
        "the error first and alone, then the remedy"
    );
    assert!(!stderr.contains("hunter2-pw"), "{stderr}");
    assert!(!tmp.join("report").exists(), "no report for a refused run");
    assert_eq!(run_dirs(&tmp), Vec::<String>::new());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn ctrl_c_stops_the_run_removes_its_files_and_redis_keys_and_exits_130() {
    let tmp = scratch();
    let mut child = compare(&tmp)
        .args([
            "--skip-memory",
            "--rounds",
            "1",
            "--warmup",
            "0s",
            // Far longer than the test: the run is still going when Ctrl-C comes.
            "--duration",
            "30s",
            "--out",
        ])
        .arg(tmp.join("report"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Wait until the run is under way: the scale-out checks are done and the first route runs.
    let mut log = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the run did not get going; log so far: {log:#?}"));
        let started = line.contains("scale-out and revocation checks");
        log.push(line);
        if started {
            break;
        }
    }
    let dirs = run_dirs(&tmp);
    assert_eq!(dirs.len(), 1, "one run directory while running: {dirs:?}");
    let run = dirs[0]
        .rsplit_once('-')
        .map(|(_, run)| run.to_owned())
        .unwrap();
    let pattern = format!("authlab-compare:{run}:*");
    assert!(
        !redis_keys(&pattern).is_empty(),
        "the run keeps its logins in Redis under {pattern}"
    );

    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    log.extend(lines.try_iter());
    let log = log.join("\n");

    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        log.contains(
            "interrupted: the servers are stopped, the run's Redis keys and temporary files removed; no report was written"
        ),
        "{log}"
    );
    assert!(
        !log.contains("error:"),
        "an interruption is not a failure: {log}"
    );
    assert!(
        !log.contains("starting service") && !log.contains("workers"),
        "actix's start-up lines are not shown: {log}"
    );
    assert_eq!(run_dirs(&tmp), Vec::<String>::new(), "{log}");
    assert_eq!(redis_keys(&pattern), Vec::<String>::new());
    assert!(
        !tmp.join("report").exists(),
        "no report for an interrupted run"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `report.json` of a run, parsed.
fn report_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_short_run_reports_one_row_per_chosen_mode_and_revocation_latency_across_two_instances() {
    let tmp = scratch();
    let out = compare(&tmp)
        .args([
            "--skip-memory",
            "--rounds",
            "1",
            "--warmup",
            "0s",
            "--duration",
            "100ms",
            "--login-duration",
            "50ms",
            "--modes",
            "jwt-denylist-cached,jwt-denylist,session,redis-cached,redis",
            "--revocation-samples",
            "1000",
            "--out",
        ])
        .arg(tmp.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let report = report_json(&tmp.join("report"));

    // One row per chosen mode, in the table's order, between the two baselines; each names its
    // mode and the flags its instance was started with.
    let rows: Vec<(&str, Option<&str>, Option<&str>)> = report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["mode"].as_str(),
                r["flags"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("/hello", None, None),
            ("/session/me", Some("session"), Some("(defaults)")),
            ("/redis/me", Some("redis"), Some("(defaults)")),
            (
                "/redis/me (cached)",
                Some("redis-cached"),
                Some("--redis-cache on")
            ),
            (
                "/jwt/me (denylist on)",
                Some("jwt-denylist"),
                Some("--jwt-denylist on")
            ),
            (
                "/jwt/me (denylist cached)",
                Some("jwt-denylist-cached"),
                Some("--jwt-denylist cached")
            ),
            ("/hello (again)", None, None),
        ]
    );

    // The cached rows report their cache's work (it served hits), the others have no cache.
    for route in report["routes"].as_array().unwrap() {
        let cache = &route["cache"];
        match route["mode"].as_str() {
            Some("redis-cached" | "jwt-denylist-cached") => {
                assert!(cache["hits"].as_u64().unwrap() > 0, "{route}");
                let ratio = cache["hit_ratio"].as_f64().unwrap();
                assert!(0.0 < ratio && ratio <= 1.0, "{route}");
            }
            _ => assert!(cache.is_null(), "{route}"),
        }
    }

    // Revocation latency for the revocable modes chosen, every sample refused.
    let revocation = report["revocation"].as_array().unwrap();
    let measured: Vec<&str> = revocation
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(
        measured,
        vec![
            "redis",
            "redis-cached",
            "jwt-denylist",
            "jwt-denylist-cached"
        ]
    );
    for r in revocation {
        let mode = r["mode"].as_str().unwrap();
        assert_eq!(r["samples"], 1000, "{mode}: {r}");
        assert_eq!(r["refused"], 1000, "{mode}: every sample refused: {r}");
        assert_eq!(r["never_refused"], 0, "{mode}: {r}");
        assert_eq!(
            r["refusal_statuses"],
            serde_json::json!({"401": 1000}),
            "{mode}: refused as revoked, never as unavailable: {r}"
        );
        let us = |key: &str| r[key].as_u64().unwrap();
        assert!(
            us("p50_us") <= us("p99_us") && us("p99_us") <= us("max_us"),
            "{mode}: {r}"
        );
        assert!(
            us("max_us") < 1_000_000,
            "{mode}: under the give-up time: {r}"
        );
        assert!(
            0 < us("answered_p50_us") && us("answered_p50_us") <= us("answered_p99_us"),
            "{mode}: a refusal takes a round trip: {r}"
        );
        // An uncached mode asks Redis on every request, and the revocation's answer comes after
        // Redis changed: the very first probe of the other instance is refused, every time. A
        // cached one may accept a few more probes, until Redis's invalidation arrives.
        if !mode.ends_with("cached") {
            assert_eq!(r["mean_probes"], 1.0, "{mode}: {r}");
            assert_eq!(us("max_us"), 0, "{mode}: {r}");
        }
    }
    let md = std::fs::read_to_string(tmp.join("report/report.md")).unwrap();
    assert!(
        md.contains("## Revocation latency across two instances"),
        "{md}"
    );
    assert!(
        md.contains("| `/jwt/me (denylist on)` | `jwt-denylist` | `--jwt-denylist on` |"),
        "{md}"
    );
    assert!(
        stdout.contains("Revocation latency across two instances"),
        "{stdout}"
    );
    assert_eq!(run_dirs(&tmp), Vec::<String>::new());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_verifier_mode_is_measured_on_a_verifier_with_a_token_from_its_issuer() {
    let tmp = scratch();
    let out = compare(&tmp)
        .args([
            "--skip-memory",
            "--rounds",
            "1",
            "--warmup",
            "0s",
            "--duration",
            "100ms",
            "--login-duration",
            "50ms",
            "--modes",
            "jwt-verifier",
            "--revocation-samples",
            "0",
            "--out",
        ])
        .arg(tmp.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let report = report_json(&tmp.join("report"));
    let routes = report["routes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "/hello",
            "/jwt/me (EdDSA verifier, denylist off)",
            "/hello (again)"
        ]
    );
    let row = &routes[1];
    assert_eq!(row["mode"], "jwt-verifier");
    assert_eq!(
        row["flags"],
        "--role verifier --jwt-denylist off \
         (tokens from --role issuer --jwt-denylist off --jwt-alg EdDSA)"
    );
    // The verifier accepted the issuer's token on every request: all 200, none refused (401),
    // none unavailable for want of keys (503).
    assert!(row["requests_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    assert_eq!(row["errors"], 0, "{row}");
    let statuses = row["status_counts"].as_object().unwrap();
    assert_eq!(statuses.keys().collect::<Vec<_>>(), vec!["200"], "{row}");
    // The login cost ran on the issuer (a verifier answers a login with 501): only 200s.
    let logins = report["login"]["status_counts"].as_object().unwrap();
    assert_eq!(logins.keys().collect::<Vec<_>>(), vec!["200"], "{report}");
    assert_eq!(report["scale_out"], serde_json::json!([]));
    assert_eq!(run_dirs(&tmp), Vec::<String>::new());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn an_unknown_mode_is_refused_with_the_list_of_modes() {
    let tmp = scratch();
    let out = compare(&tmp)
        .args(["--modes", "redis,redis-turbo", "--out"])
        .arg(tmp.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no mode \"redis-turbo\""), "{stderr}");
    assert!(stderr.contains("the modes are session,"), "{stderr}");
    assert!(!tmp.join("report").exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}
