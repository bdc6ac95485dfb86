//! The configuration reference (`docs/configuration.md`), generated from the clap definitions of
//! [`Settings`], so that it cannot drift from what `authlab serve` accepts.
//!
//! A table of flags kept by hand drifts: two hand-kept copies of it once listed different sets of
//! variables. Here each setting is written once, as a field of [`Settings`] with its `#[arg]`
//! (flag, variable, default, parser) and its doc comment (what it means); the table is read off
//! the [`clap::Command`] clap builds from them, the same one `authlab serve --help` prints:
//!
//! - **flag**: the long flag and its value (`<DURATION>`, or `<on|off>` when clap knows every
//!   value), `(repeatable)` when it can be given more than once;
//! - **variable**: the `AUTHLAB_*` variable, `(comma-separated)` when it takes a list;
//! - **default**: clap's default value, or `none` when the setting is optional (its meaning says
//!   what happens without it);
//! - **meaning**: the field's doc comment.
//!
//! The one setting that is no flag, the JWT secret itself ([`JWT_SECRET_VARIABLE`]), is not in
//! clap at all; its row is written below, next to the flag it stands in for.
//!
//! The committed file holds the table between two markers; prose around them is written by
//! hand. The unit test at the end of this file fails when the committed table differs from the
//! generated one, and rewrites it when run with `AUTHLAB_BLESS_DOCS=1` (the same switch that
//! regenerates the documentation transcripts).

use clap::{Arg, ArgAction, Args};

use super::{JWT_SECRET_VARIABLE, Settings};

/// The command that rewrites `docs/configuration.md` (a macro, so the marker can quote it).
macro_rules! regenerate {
    () => {
        "AUTHLAB_BLESS_DOCS=1 cargo test -p authlab --lib config::reference"
    };
}

/// The command that rewrites `docs/configuration.md` from the code.
pub const REGENERATE: &str = regenerate!();

/// The first line of the generated part of `docs/configuration.md`.
pub const BEGIN_MARKER: &str = concat!(
    "<!-- BEGIN generated from src/config.rs: edit the doc comments and #[arg]s there, then run `",
    regenerate!(),
    "` -->"
);

/// The last line of the generated part of `docs/configuration.md`.
pub const END_MARKER: &str = "<!-- END generated -->";

/// A setting read from the environment only, never from a flag.
struct EnvironmentOnly {
    /// The variable.
    variable: &'static str,
    /// The clap id of the setting it stands in for: its row follows that one.
    after: &'static str,
    /// What it means.
    meaning: &'static str,
}

/// The settings clap does not know of, because they have no flag.
const ENVIRONMENT_ONLY: &[EnvironmentOnly] = &[EnvironmentOnly {
    variable: JWT_SECRET_VARIABLE,
    after: "jwt_secret_file",
    meaning: "The HS256 secret itself (at least 32 bytes), instead of `--jwt-secret-file`; giving \
              both is an error. Never a flag: a command line is shown to everyone running `ps`.",
}];

/// The markdown table of every setting of `authlab serve`: flag, variable, default, meaning.
pub fn markdown_table() -> String {
    let mut command = Settings::augment_args(clap::Command::new("serve"));
    // Building fills in what clap derives on its own (a switch's `false` default) and adds
    // `--help`, which is not a setting.
    command.build();
    let settings = command.get_arguments().filter(|arg| {
        let help = matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong
        );
        !help && !arg.is_hide_set()
    });
    let mut table = String::from("| flag | variable | default | meaning |\n|---|---|---|---|\n");
    for arg in settings {
        table.push_str(&row(
            &flag(arg),
            &variable(arg),
            &default(arg),
            &meaning(arg),
        ));
        let id = arg.get_id().as_str();
        for only in ENVIRONMENT_ONLY.iter().filter(|only| only.after == id) {
            table.push_str(&row(
                "(none: never on a command line)",
                &format!("`{}`", only.variable),
                "none",
                only.meaning,
            ));
        }
    }
    table
}

/// `docs/configuration.md` with its generated part replaced by `table`; `None` when the markers
/// are missing or out of order.
pub fn with_table(document: &str, table: &str) -> Option<String> {
    let begin = document.find(BEGIN_MARKER)? + BEGIN_MARKER.len();
    let end = begin + document[begin..].find(END_MARKER)?;
    Some(format!(
        "{}\n{table}{}",
        &document[..begin],
        &document[end..]
    ))
}

fn row(flag: &str, variable: &str, default: &str, meaning: &str) -> String {
    format!("| {flag} | {variable} | {default} | {meaning} |\n")
}

/// `--redis-timeout <DURATION>`, `--jwt-denylist <on|off|cached>`, `--access-ttl`,
/// `--cookie-secure`.
fn flag(arg: &Arg) -> String {
    let Some(long) = arg.get_long() else {
        return "(none)".to_owned();
    };
    let action = arg.get_action();
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| value.get_name().to_owned())
        .collect();
    // The value's name, unless it is only the field's name in capitals (`<ACCESS_TTL>`), which
    // says nothing the flag does not.
    let value = match arg.get_value_names() {
        _ if !action.takes_values() => String::new(),
        _ if !possible.is_empty() => format!(" <{}>", possible.join("|")),
        Some([name, ..]) if name.as_str() != arg.get_id().as_str().to_uppercase() => {
            format!(" <{name}>")
        }
        _ => String::new(),
    };
    let repeatable = if matches!(action, ArgAction::Append) {
        " (repeatable)"
    } else {
        ""
    };
    format!("`--{long}{}`{repeatable}", cell(&value))
}

/// `` `AUTHLAB_TRUSTED_PROXIES` (comma-separated) ``.
fn variable(arg: &Arg) -> String {
    let Some(env) = arg.get_env() else {
        return "(none)".to_owned();
    };
    let list = match arg.get_value_delimiter() {
        Some(',') => " (comma-separated)",
        _ => "",
    };
    format!("`{}`{list}", env.to_string_lossy())
}

/// `` `15m` ``, or `none`.
fn default(arg: &Arg) -> String {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|value| format!("`{}`", value.to_string_lossy()))
        .collect();
    if values.is_empty() {
        "none".to_owned()
    } else {
        values.join(", ")
    }
}

/// The doc comment, on one line, ending with its full stop (clap drops the full stop of a
/// one-paragraph comment, which suits `--help` but not a sentence in a table).
fn meaning(arg: &Arg) -> String {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut text = help.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() && !text.ends_with('.') {
        text.push('.');
    }
    cell(&text)
}

/// Text made safe inside a table cell: a `|` would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");

    #[test]
    fn the_committed_configuration_reference_is_the_generated_one() {
        let committed = std::fs::read_to_string(DOCUMENT)
            .unwrap_or_else(|err| panic!("cannot read {DOCUMENT}: {err}"));
        let generated = with_table(&committed, &markdown_table()).unwrap_or_else(|| {
            panic!("{DOCUMENT} lacks the lines {BEGIN_MARKER:?} and {END_MARKER:?}, in that order")
        });
        if std::env::var_os("AUTHLAB_BLESS_DOCS").is_some_and(|v| v != "0") {
            if let Err(err) = std::fs::write(DOCUMENT, &generated) {
                panic!("cannot write {DOCUMENT}: {err}");
            }
            return;
        }
        assert!(
            committed == generated,
            "docs/configuration.md is not the table src/config.rs generates. Regenerate it with\n    \
             {REGENERATE}\nthen read the diff."
        );
    }

    #[test]
    fn the_configuration_reference_lists_every_variable_once() {
        let table = markdown_table();
        // The second cell of each row: `` `AUTHLAB_X` `` and maybe "(comma-separated)".
        let variables: Vec<&str> = table
            .lines()
            .skip(2)
            .filter_map(|row| row.split(" | ").nth(1)?.split('`').nth(1))
            .collect();
        let mut unique = variables.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), variables.len(), "{variables:?}");
        assert!(
            variables.iter().all(|v| v.starts_with("AUTHLAB_")),
            "{variables:?}"
        );
        for expected in [
            "AUTHLAB_BIND",
            "AUTHLAB_JWT_SECRET",
            "AUTHLAB_REDIS_CONFIRM_REPLICAS",
            "AUTHLAB_REDIS_CONFIRM_TIMEOUT",
            "AUTHLAB_METRICS",
        ] {
            assert!(variables.contains(&expected), "{expected} is missing");
        }
        let rows = table.lines().count() - 2;
        assert_eq!(rows, variables.len(), "one variable per row");
    }

    #[test]
    fn only_the_generated_part_is_replaced() {
        let document =
            format!("# Title\n\nprose\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\nmore prose\n");
        assert_eq!(
            with_table(&document, "| new |\n").as_deref(),
            Some(
                format!(
                    "# Title\n\nprose\n\n{BEGIN_MARKER}\n| new |\n{END_MARKER}\n\nmore prose\n"
                )
                .as_str()
            )
        );
        assert_eq!(with_table("no markers", "| new |\n"), None);
        assert_eq!(
            with_table(&format!("{END_MARKER}\n{BEGIN_MARKER}\n"), "| new |\n"),
            None
        );
    }
}
