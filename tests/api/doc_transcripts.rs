//! The curl transcripts of README.md (the five-minute tour), docs/walkthrough.md and
//! docs/lifecycle.md, run against the real `authlab` binary and compared with what the documents
//! show, so the docs cannot drift.
//!
//! # How a document is run
//! - Only the part from its first `<!-- transcript: serve ... -->` line to `<!-- transcript: end -->`
//!   (or the end of the file) is run.
//! - Every ` ```sh ` block is run, in order, in one bash session per document (variables carry
//!   over from block to block), in a temporary working directory (so `jar.txt` and friends land
//!   there). The fenced block that starts on the line after it, if any, is its output.
//! - Directives, HTML comments on a line of their own (invisible on GitHub):
//!   - `<!-- transcript: serve ARGS -->`: (re)start `authlab serve ARGS`, the binary users run,
//!     with the document's own SQLite file and Redis key prefix. `--bind 127.0.0.1:PORT` names
//!     the instance (default `127.0.0.1:8080`): serving on an address again restarts that instance
//!     (same database and prefix, new flags, in-memory sessions gone), as a user would restart it.
//!     `--redis-url redis://127.0.0.1:PORT` with a port other than 6379 gets a private
//!     `redis-server` of the runner's own, which a block may stop (`redis-cli -p PORT shutdown`).
//!   - `<!-- transcript: skip -->`: the next block is shown, not run.
//!   - `<!-- transcript: unordered -->`: the next block's output is compared as a sorted list of
//!     lines (`redis-cli --scan`, where the order follows the masked ids).
//!   - `<!-- transcript: racy -->`: the next block races; every line of its output must be one of
//!     the lines the document shows (in any order and number), so the document lists each outcome
//!     the race can have, and a blessed block that still holds is kept.
//! - Substitutions, so the documents show what a user of the defaults sees: in a block, the
//!   document's `127.0.0.1:PORT` (and `redis-cli -p PORT`) become the real, free ports, and the
//!   key prefix `authlab:` becomes the document's own; in its output the other way round.
//! - Output: HTTP headers (`curl -i`) are reduced to the status line and [`KEPT_HEADERS`], in that
//!   order; then [`MASKS`] replace what differs on every run (tokens, ids, times) on both sides.
//!
//! # Regenerating
//! `AUTHLAB_BLESS_DOCS=1 cargo test -p authlab-cli --test api doc_transcripts` rewrites every
//! output block that no longer matches with the real answers (unmasked, headers reduced); blocks
//! that still match are kept, so the diff shows only what changed. Review it and the prose around
//! each changed block. A racy block is rewritten with one run's answers, which may not show every
//! outcome: bless again until the block holds (the test then passes whichever outcome occurs).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use uuid::Uuid;

use crate::helpers::PrivateRedis;

/// The headers worth showing, in the order they are shown; every other header (date,
/// content-length, ...) is dropped from `curl -i` output.
const KEPT_HEADERS: [&str; 7] = [
    "content-type",
    "cache-control",
    "set-cookie",
    "www-authenticate",
    "retry-after",
    "allow",
    "location",
];

/// What differs on every run, in the order it is replaced: (pattern, placeholder).
const MASKS: [(&str, &str); 11] = [
    // A JWT: three base64url parts, the first an encoded `{"`.
    (
        r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*",
        "<jwt>",
    ),
    // A refresh token: family id, dot, 256-bit secret.
    (r"\b[0-9a-f]{32}\.[A-Za-z0-9_-]{43}", "<refresh-token>"),
    // Redis access tokens, JWT ids.
    (
        r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
        "<uuid>",
    ),
    // SHA-256 hashes (refresh tokens at rest, hashed key names).
    (r"\b[0-9a-f]{64}\b", "<sha256>"),
    // Family ids (`session_id`, `fam`, `{F}` in key names).
    (r"\b[0-9a-f]{32}\b", "<family-id>"),
    // Other 256-bit values in base64url (an HMAC, a hashed key name).
    (
        r"(^|[^A-Za-z0-9_-])[A-Za-z0-9_-]{43}($|[^A-Za-z0-9_-])",
        "$1<b64>$2",
    ),
    // A session cookie's id (a 32-bit slot and 128 random bits, 27 base64url characters).
    (r"sid=[A-Za-z0-9_-]{27}", "sid=<sid>"),
    // A session's public id in the session list.
    (r#"("id": ?)"[A-Za-z0-9_-]{11}""#, "$1\"<session-id>\""),
    // A removal cookie's date.
    (r"Expires=[^;\n]*GMT", "Expires=<date>"),
    // Unix times (iat, exp, created_at, sorted-set scores...).
    (r"\b1[0-9]{9}\b", "<unix-time>"),
    // `redis-cli TTL`: seconds left, which depend on the clock.
    (r"\(integer\) [0-9]{3,}", "(integer) <seconds>"),
];

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(45);

/// The command that rewrites the documents with the real answers.
const BLESS: &str = "AUTHLAB_BLESS_DOCS=1 cargo test -p authlab-cli --test api doc_transcripts";

#[test]
fn the_readme_tour_shows_what_the_service_answers() {
    check_document("README.md");
}

#[test]
fn every_walk_through_transcript_shows_what_the_service_answers() {
    check_document("docs/walkthrough.md");
}

#[test]
fn every_lifecycle_transcript_runs_as_pasted_and_shows_what_the_service_answers() {
    check_document("docs/lifecycle.md");
}

/// Runs one document's transcripts; fails with every block that no longer matches, or rewrites
/// the output blocks in bless mode.
fn check_document(relative: &str) {
    require_tools();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let items = parse(&lines).unwrap_or_else(|e| panic!("{relative}: {e}"));
    assert!(
        items.iter().any(|i| matches!(i, Item::Block(_))),
        "{relative}: no `<!-- transcript: serve -->` directive, so nothing to run"
    );
    let bless = std::env::var_os("AUTHLAB_BLESS_DOCS").is_some_and(|v| v != "0");

    let mut run = Run::new();
    let masks = Masks::new();
    let mut failures = Vec::new();
    let mut rewrites: Vec<(usize, usize, Vec<String>)> = Vec::new();
    for item in &items {
        let block = match item {
            Item::Serve { line, args } => {
                if let Err(e) = run.serve(args) {
                    panic!("{relative}:{line}: `authlab serve {args}` did not start: {e}");
                }
                continue;
            }
            Item::Prefix(shown) => {
                run.shown_prefix = shown.clone();
                continue;
            }
            Item::Block(block) => block,
        };
        if block.skip {
            continue;
        }
        let actual = match run.execute(&block.command) {
            Ok(output) => output,
            Err(e) => panic!("{relative}:{}: {e}\n{}", block.line, run.server_log()),
        };
        let Some(output) = &block.output else {
            continue;
        };
        let actual = run.unsubstitute(&reduce_headers(&actual));
        let actual_lines = trimmed_lines(&actual);
        let shown = trimmed_lines(&output.body.join("\n"));
        let matches = compare(block.mode, &masks, &shown, &actual_lines);
        if bless {
            // A block that still matches is kept: the diff then shows only what changed.
            if !matches {
                rewrites.push((output.open, output.close, actual_lines));
            }
        } else if !matches {
            failures.push(format!(
                "{relative}:{}: the output of\n{}\nno longer matches ({:?}).\n--- the document shows (masked):\n{}\n--- the service answered (masked):\n{}\n",
                block.line,
                indent(&block.command.join("\n")),
                block.mode,
                indent(&masks.apply_lines(&shown).join("\n")),
                indent(&masks.apply_lines(&actual_lines).join("\n")),
            ));
        }
    }
    drop(run);

    if bless {
        let mut lines = lines;
        for (open, close, body) in rewrites.into_iter().rev() {
            lines.splice(open + 1..close, body);
        }
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    assert!(
        failures.is_empty(),
        "{} transcript block(s) of {relative} no longer match what the service answers:\n\n{}\n\
         If the new answers are right, regenerate the output blocks with\n    {BLESS}\n\
         then review the diff and fix the prose around each changed block.",
        failures.len(),
        failures.join("\n")
    );
}

/// bash, curl, jq and the Redis tools must be installed (scripts/test installs them).
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = ["bash", "curl", "jq", "redis-cli", "redis-server"]
        .into_iter()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "the doc transcripts need {} on PATH (Debian: apt-get install bash curl jq redis-tools \
         redis-server; scripts/test installs them)",
        missing.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// The document

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exact,
    Unordered,
    Racy,
}

/// A fenced block: the lines of its opening and closing fences, and what is between them.
struct Fence {
    open: usize,
    close: usize,
    lang: String,
    body: Vec<String>,
}

struct Block {
    /// 1-based line of the command block, for messages.
    line: usize,
    command: Vec<String>,
    output: Option<Fence>,
    mode: Mode,
    skip: bool,
}

enum Item {
    Serve {
        line: usize,
        args: String,
    },
    /// The key prefix the document shows (default `authlab:`).
    Prefix(String),
    Block(Block),
}

fn directive(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("<!-- transcript:")?
        .strip_suffix("-->")
        .map(str::trim)
}

fn fence_at(lines: &[String], open: usize) -> Result<Fence, String> {
    let opening = lines[open].trim_start();
    let lang = opening.trim_start_matches('`').trim().to_owned();
    let close = (open + 1..lines.len())
        .find(|&i| lines[i].trim() == "```")
        .ok_or_else(|| format!("line {}: the fence is never closed", open + 1))?;
    Ok(Fence {
        open,
        close,
        lang,
        body: lines[open + 1..close].to_vec(),
    })
}

fn parse(lines: &[String]) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut active = false;
    let (mut mode, mut skip) = (Mode::Exact, false);
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if let Some(d) = directive(line) {
            let (word, args) = d.split_once(' ').unwrap_or((d, ""));
            match word {
                "serve" => {
                    active = true;
                    items.push(Item::Serve {
                        line: i + 1,
                        args: args.trim().to_owned(),
                    });
                }
                "prefix" => items.push(Item::Prefix(args.trim().to_owned())),
                "end" => active = false,
                "skip" => skip = true,
                "unordered" => mode = Mode::Unordered,
                "racy" => mode = Mode::Racy,
                other => return Err(format!("line {}: unknown directive `{other}`", i + 1)),
            }
            i += 1;
            continue;
        }
        if !line.trim_start().starts_with("```") {
            i += 1;
            continue;
        }
        let fence = fence_at(lines, i)?;
        i = fence.close + 1;
        if !active || fence.lang != "sh" || line.starts_with(' ') {
            continue;
        }
        let output = match lines.get(i) {
            Some(next) if next.starts_with("```") && next.trim() != "```sh" => {
                let output = fence_at(lines, i)?;
                i = output.close + 1;
                Some(output)
            }
            _ => None,
        };
        items.push(Item::Block(Block {
            line: fence.open + 1,
            command: fence.body,
            output,
            mode,
            skip,
        }));
        (mode, skip) = (Mode::Exact, false);
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// Comparing

struct Masks(Vec<(Regex, &'static str)>);

impl Masks {
    fn new() -> Self {
        Self(
            MASKS
                .iter()
                .map(|(pattern, placeholder)| {
                    (
                        Regex::new(pattern).unwrap_or_else(|e| panic!("mask {pattern}: {e}")),
                        *placeholder,
                    )
                })
                .collect(),
        )
    }

    fn apply(&self, line: &str) -> String {
        let mut line = line.to_owned();
        for (pattern, placeholder) in &self.0 {
            line = pattern.replace_all(&line, *placeholder).into_owned();
        }
        line
    }

    fn apply_lines(&self, lines: &[String]) -> Vec<String> {
        lines.iter().map(|l| self.apply(l)).collect()
    }
}

fn compare(mode: Mode, masks: &Masks, shown: &[String], actual: &[String]) -> bool {
    let shown = masks.apply_lines(shown);
    let actual = masks.apply_lines(actual);
    match mode {
        Mode::Exact => shown == actual,
        Mode::Unordered => {
            let (mut shown, mut actual) = (shown, actual);
            shown.sort();
            actual.sort();
            shown == actual
        }
        Mode::Racy => {
            let allowed: BTreeSet<&String> = shown.iter().collect();
            actual.iter().all(|line| allowed.contains(line))
        }
    }
}

/// Lines without `\r` and without trailing blank lines.
fn trimmed_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// Reduces every header section of `curl -i` output to the status line and [`KEPT_HEADERS`].
fn reduce_headers(text: &str) -> String {
    let status = Regex::new(r"^HTTP/[0-9.]+ [0-9]{3}").unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    while let Some(line) = lines.next() {
        out.push(line.to_owned());
        if !status.is_match(line) {
            continue;
        }
        let mut headers = Vec::new();
        for header in lines.by_ref() {
            if header.is_empty() {
                break;
            }
            headers.push(header);
        }
        for kept in KEPT_HEADERS {
            for header in &headers {
                let name = header.split(':').next().unwrap_or_default();
                if name.trim().eq_ignore_ascii_case(kept) {
                    out.push((*header).to_owned());
                }
            }
        }
        out.push(String::new());
    }
    out.join("\n")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Running

/// One document's run: its bash session, its instances, its database and Redis prefix.
struct Run {
    dir: PathBuf,
    prefix: String,
    /// The prefix as the document writes it.
    shown_prefix: String,
    bash: Bash,
    /// The document's address (`127.0.0.1:8080`) -> the instance serving it.
    instances: HashMap<String, Instance>,
    /// The document's Redis port -> a private redis-server.
    redises: HashMap<u16, PrivateRedis>,
}

struct Instance {
    child: Child,
    real: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("authlab-doc-{id}"));
        let work = dir.join("work");
        std::fs::create_dir_all(&work)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", work.display()));
        let bash = Bash::start(&work, &dir);
        Self {
            dir,
            prefix: format!("authlab-doc-{id}:"),
            shown_prefix: "authlab:".to_owned(),
            bash,
            instances: HashMap::new(),
            redises: HashMap::new(),
        }
    }

    /// Starts (or restarts) the instance that `authlab serve ARGS` names.
    fn serve(&mut self, args: &str) -> Result<(), String> {
        let mut words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        let mut address = "127.0.0.1:8080".to_owned();
        let mut redis_url = None;
        let mut i = 0;
        while i < words.len() {
            let flag = words[i].clone();
            if flag == "--bind" || flag == "--redis-url" {
                let value = words
                    .get(i + 1)
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))?;
                words.drain(i..i + 2);
                if flag == "--bind" {
                    address = value;
                } else {
                    redis_url = Some(value);
                }
            } else {
                i += 1;
            }
        }
        if let Some(url) = redis_url {
            let port = url
                .strip_prefix("redis://127.0.0.1:")
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| format!("--redis-url {url}: only redis://127.0.0.1:PORT is run"))?;
            let real = if port == 6379 {
                url
            } else {
                self.redises
                    .entry(port)
                    .or_insert_with(PrivateRedis::start)
                    .url()
            };
            words.extend(["--redis-url".to_owned(), real]);
        }
        let real = match self.instances.remove(&address) {
            Some(old) => {
                let real = old.real.clone();
                drop(old);
                real
            }
            None => format!("127.0.0.1:{}", free_port()),
        };
        let mut attempt = 0;
        let instance = loop {
            attempt += 1;
            match self.start(&words, &real) {
                Ok(instance) => break instance,
                // The port of a restarted instance may take a moment to be free again.
                Err(_) if attempt < 5 => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(e),
            }
        };
        self.instances.insert(address, instance);
        Ok(())
    }

    fn start(&self, args: &[String], real: &str) -> Result<Instance, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authlab"));
        for (key, _) in std::env::vars() {
            if key.starts_with("AUTHLAB_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        let db = self.dir.join("authlab.db");
        let mut child = command
            .current_dir(self.dir.join("work"))
            .env("AUTHLAB_DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("AUTHLAB_REDIS_PREFIX", &self.prefix)
            .env("AUTHLAB_BIND", real)
            .env("NO_COLOR", "1")
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run the authlab binary: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on ") {
                    let _ = ready_tx.send(());
                }
                if let Ok(mut log) = sink.lock() {
                    log.push(line);
                }
            }
        });
        let mut instance = Instance {
            child,
            real: real.to_owned(),
            log,
        };
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => Ok(instance),
            Err(_) => {
                let _ = instance.child.kill();
                let _ = instance.child.wait();
                Err(format!(
                    "no 'listening on' line; it logged:\n{}",
                    instance
                        .log
                        .lock()
                        .map(|l| l.join("\n"))
                        .unwrap_or_default()
                ))
            }
        }
    }

    /// The pairs (as the document writes it, as it really is).
    fn replacements(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (shown, instance) in &self.instances {
            pairs.push((shown.clone(), instance.real.clone()));
        }
        for (shown, redis) in &self.redises {
            pairs.push((
                format!("127.0.0.1:{shown}"),
                format!("127.0.0.1:{}", redis.port),
            ));
            pairs.push((format!("-p {shown}"), format!("-p {}", redis.port)));
        }
        pairs.push((self.shown_prefix.clone(), self.prefix.clone()));
        pairs
    }

    fn substitute(&self, text: &str) -> String {
        self.replacements()
            .iter()
            .fold(text.to_owned(), |text, (shown, real)| {
                text.replace(shown, real)
            })
    }

    fn unsubstitute(&self, text: &str) -> String {
        self.replacements()
            .iter()
            .fold(text.to_owned(), |text, (shown, real)| {
                text.replace(real, shown)
            })
    }

    fn execute(&mut self, command: &[String]) -> Result<String, String> {
        let script = self.substitute(&command.join("\n"));
        self.bash.run(&script)
    }

    fn server_log(&self) -> String {
        self.instances
            .iter()
            .map(|(shown, instance)| {
                let log = instance
                    .log
                    .lock()
                    .map(|l| l.join("\n"))
                    .unwrap_or_default();
                format!("--- log of the instance at {shown}:\n{log}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.instances.clear();
        // The document's keys in the shared Redis.
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "redis-cli --scan --pattern '{}*' | xargs -r redis-cli DEL >/dev/null",
                self.prefix
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bash session that runs one block at a time and returns what it printed.
struct Bash {
    child: Child,
    stdin: ChildStdin,
    done: Receiver<()>,
    blocks: PathBuf,
    count: usize,
}

const DONE: &str = "__transcript_block_done__";

/// redis-cli quotes strings and types integers (`"1:..."`, `(integer) 900`) when it writes to a
/// terminal, and prints them raw into a pipe. A block's output is captured in a file, so this
/// makes it answer as on a terminal unless it writes into a pipe (`redis-cli --scan | sort`).
const TERMINAL_REDIS_CLI: &str = r#"redis-cli() {
    if [ -p /dev/stdout ]; then command redis-cli "$@"; else command redis-cli --no-raw "$@"; fi
}"#;

impl Bash {
    fn start(work: &Path, dir: &Path) -> Self {
        let blocks = dir.join("blocks");
        std::fs::create_dir_all(&blocks)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", blocks.display()));
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(work)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bash: {e}"));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("bash without pipes");
        };
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == DONE && tx.send(()).is_err() {
                    break;
                }
            }
        });
        let mut bash = Self {
            child,
            stdin,
            done,
            blocks,
            count: 0,
        };
        bash.run(TERMINAL_REDIS_CLI)
            .unwrap_or_else(|e| panic!("bash does not run commands: {e}"));
        bash
    }

    fn run(&mut self, script: &str) -> Result<String, String> {
        self.count += 1;
        let file = self.blocks.join(format!("{}.sh", self.count));
        let out = self.blocks.join(format!("{}.out", self.count));
        std::fs::write(&file, format!("{script}\n")).map_err(|e| e.to_string())?;
        writeln!(
            self.stdin,
            "source '{}' </dev/null >'{}' 2>&1; echo {DONE}",
            file.display(),
            out.display()
        )
        .map_err(|e| format!("bash went away: {e}"))?;
        let started = Instant::now();
        self.done
            .recv_timeout(BLOCK_TIMEOUT)
            .map_err(|_| format!("the block did not finish within {:?}", started.elapsed()))?;
        std::fs::read_to_string(&out).map_err(|e| e.to_string())
    }
}

impl Drop for Bash {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
