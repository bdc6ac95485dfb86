//! The `authlab` command: `serve` runs the service (the `authlab` server library), `compare`
//! measures it (the `authlab-compare` library), `drill` breaks a deployment of it on purpose (the
//! `authlab-drill` library), `keys` manages the JWT key directory (the `authlab-jwt` library).
//! This file only parses the command line and hands over; no library knows another's flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use authlab::config::Settings;
use authlab::error::CauseChain;
use authlab::startup::{Application, StartupError};
use clap::{Parser, Subcommand};
use secrecy::SecretString;

// The notes below are printed as written when they fit the terminal, and wrapped by clap when
// they do not: every line stays within 78 columns, and each example's comment has a line of its
// own above the command, so that at 80 columns no comment wraps onto a line that looks like a
// command (a test checks the help at 80 columns against the help at 200).
const EXAMPLES: &str = "\
Examples:
  # users in the SQLite file ./authlab.db, local Redis, a random JWT secret
  authlab serve
  # a stable JWT secret, read from a file (at least 32 bytes)
  authlab serve --jwt-secret-file jwt.secret
  # users in PostgreSQL; JWTs without the denylist
  authlab serve --jwt-denylist off \\
      --database-url postgres://postgres@127.0.0.1/test

The JWT secret can also come from the AUTHLAB_JWT_SECRET environment variable
(never a flag, which would show it to everyone running `ps`).";

const COMPARE_NOTES: &str = "\
Examples:
  # about 5 minutes; needs the local Redis
  authlab compare --out report
  # without the memory probes
  authlab compare --rounds 5 --skip-memory
  # two modes only, about 1.5 minutes
  authlab compare --modes redis,redis-cached

The default run: 3 rounds x (10 modes + /hello twice) x (2 s warm-up + 5 s),
the memory probes (1,000,000 sessions), 1,000 revocation samples per
revocable mode, the login cost.

Every line it prints fits 80 columns. The in-process servers log warnings
only; RUST_LOG=info shows their start-up lines. Ctrl-C stops the run, the
servers, and removes the run's Redis keys and temporary files (exit code 130).";

const DRILL_NOTES: &str = "\
Examples:
  # 3 instances, one Redis; about 45 s
  authlab drill --scenario kill-instance
  # a 6-node Redis Cluster; a master SIGKILLed
  authlab drill --scenario kill-master
  # Redis restarted 8 s into a 20 s run
  authlab drill --scenario redis-restart --duration 20s --fault-at 8s
  # 4 caching instances: Redis commands and CPU, idle 10 s then loaded
  authlab drill --scenario cache-scale

Needs redis-server, redis-cli and haproxy (apt-get install -y redis-server
haproxy). Every process it starts is stopped again, also on Ctrl-C (exit code
130). Exit code 1 when an acknowledged logout was accepted again afterwards.";

/// Sessions vs opaque Redis tokens vs JWT: one service, three authentication backends.
#[derive(Parser)]
#[command(name = "authlab", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service with all three backends mounted (/session, /redis, /jwt).
    #[command(after_help = EXAMPLES)]
    Serve(Box<Settings>),
    /// Measure every mode of the backends side by side: throughput, latency, Redis round trips,
    /// cache hits, memory, login cost, scale-out and revocation latency across two instances,
    /// in one run; writes report.json, report.md and SVG charts.
    #[command(after_help = COMPARE_NOTES)]
    Compare(Box<authlab_compare::CompareArgs>),
    /// Run real Redis (one, Sentinel or Cluster), N instances of this server and HAProxy on
    /// loopback, drive open-loop load through HAProxy, inject one fault, and report what each
    /// backend did: drill.json, drill.md and an SVG timeline.
    #[command(after_help = DRILL_NOTES)]
    Drill(Box<authlab_drill::DrillArgs>),
    /// Manage the key directory of `serve --jwt-alg EdDSA|ES256 --jwt-keys-dir DIR`: generate
    /// the next key, rotate, prune retired keys, list them. Running servers pick the changes up
    /// within `--jwt-keys-reload`.
    #[command(after_help = KEYS_NOTES)]
    Keys(KeysArgs),
}

const KEYS_NOTES: &str = "\
Examples:
  authlab keys generate --dir keys --alg EdDSA    # the first key, as next
  authlab keys rotate --dir keys                  # next -> active; a new next
  authlab keys prune --dir keys                   # delete retired keys whose tokens have expired
  authlab keys list --dir keys

Rotate with the --access-ttl the servers run with: a retired key stays published until the last
token it signed has expired, plus 60 s of clock skew.";

#[derive(clap::Args)]
struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
    /// The key directory (created by `generate` if missing).
    #[arg(long, global = true, value_name = "DIR", default_value = "jwt-keys")]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a `next` key (published at once, signing after the next `rotate`).
    Generate {
        /// Its algorithm.
        #[arg(long, default_value = "EdDSA", value_parser = str::parse::<authlab_jwt::KeyAlg>)]
        alg: authlab_jwt::KeyAlg,
    },
    /// `next` becomes `active`, `active` becomes `retired`, and a new `next` is generated.
    Rotate {
        /// The new next key's algorithm (default: the newly active key's).
        #[arg(long, value_parser = str::parse::<authlab_jwt::KeyAlg>)]
        alg: Option<authlab_jwt::KeyAlg>,
        /// The servers' access-token lifetime (default: `serve`'s default): how long the
        /// retired key must still verify.
        #[arg(long, value_parser = authlab::config::parse_duration)]
        access_ttl: Option<Duration>,
    },
    /// Delete the retired keys whose last token has expired.
    Prune,
    /// Print every key with its state and times (Unix seconds).
    List,
}

fn keys(args: &KeysArgs) -> Result<String, authlab_jwt::JwtError> {
    let dir = authlab_jwt::KeyDir::new(&args.dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match &args.action {
        KeysAction::Generate { alg } => {
            let key = dir.generate(*alg, now)?;
            Ok(format!("generated {} key {} (next)\n", key.alg, key.kid))
        }
        KeysAction::Rotate { alg, access_ttl } => {
            let ttl = access_ttl.unwrap_or_else(|| Settings::defaults().access_ttl);
            dir.rotate(*alg, ttl, now)?;
            dir.table()
        }
        KeysAction::Prune => {
            let gone = dir.prune(now)?;
            Ok(gone
                .iter()
                .map(|k| format!("deleted {} key {}\n", k.alg, k.kid))
                .collect())
        }
        KeysAction::List => dir.table(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let note = environment_note(&err);
            let _ = err.print();
            if let Some(note) = note {
                eprintln!("{note}");
            }
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    match &cli.command {
        // The comparison's own output is the point: the in-process servers log warnings only.
        Command::Compare(_) | Command::Drill(_) => authlab_compare::init_logging(),
        Command::Serve(_) => authlab::telemetry::init(),
        Command::Keys(_) => {}
    }
    match cli.command {
        Command::Serve(settings) => {
            let mut settings = *settings;
            settings.jwt_secret = std::env::var(authlab::config::JWT_SECRET_VARIABLE)
                .ok()
                .filter(|s| !s.is_empty())
                .map(SecretString::from);
            match actix_web::rt::System::new().block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    // The error first, with its causes, then what to do about it; no settings
                    // dump before it (that follows a successful start only).
                    eprintln!("error: {}", CauseChain(err.as_ref()));
                    if let Some(remedy) = err
                        .downcast_ref::<StartupError>()
                        .and_then(StartupError::remedy)
                    {
                        eprintln!("help: {remedy}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Compare(args) => authlab_compare::main(&args),
        Command::Drill(args) => authlab_drill::main(&args),
        Command::Keys(args) => match keys(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {}", CauseChain(&err));
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let summary = settings.summary();
    let allow_query_token = settings.allow_query_token;
    let bind = settings.bind.clone();
    let redis_url = authlab::config::redact_url(&settings.redis.url);
    let app = Application::build(settings).await?;
    for (name, value) in summary {
        tracing::info!("{name:>18} = {value}");
    }
    if allow_query_token {
        tracing::warn!(
            "--allow-query-token is on: tokens in URLs leak through logs, Referer headers and browser history"
        );
    }
    let host = bind
        .rsplit_once(':')
        .map_or(bind.as_str(), |(host, _)| host);
    let base = format!("http://{host}:{}", app.port());
    tracing::info!("authlab listening on {base}");
    if !app.redis_answers().await {
        tracing::warn!(
            "Redis at {redis_url} does not answer: /redis, JWT logins (refresh tokens) and the JWT \
             denylist answer 503 until it does; /session works without it"
        );
    }
    tracing::info!(
        "next: open {base}/ in a browser (the demo page), or try the API with curl (README, \
         \"Walk-through with curl\"): curl -s {base}/hello"
    );
    app.run_until_stopped().await?;
    Ok(())
}

/// When a refused value came from an `AUTHLAB_*` variable rather than the command line, clap
/// names the flag; this names the variable the user actually set.
fn environment_note(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    // "--jwt-denylist <JWT_DENYLIST>" -> "jwt-denylist"
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let on_command_line =
        std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    if on_command_line {
        return None;
    }
    let command = <Cli as clap::CommandFactory>::command();
    let variable = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .filter(|a| a.get_long() == Some(long))
        .find_map(|a| a.get_env())?
        .to_string_lossy()
        .into_owned();
    std::env::var_os(&variable)?;
    Some(format!(
        "note: the value came from the environment variable {variable} (--{long} was not given)"
    ))
}
