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
