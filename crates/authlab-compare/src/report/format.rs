//! How numbers are written for people: `140,000` rather than `140000.0`, `1m05s` rather than
//! `65.0s`, and text wrapped to the 80 columns a terminal is assumed to have.

use std::time::Duration;

/// The width every line of `authlab compare`'s terminal output fits in.
pub const COLUMNS: usize = 80;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A non-negative figure rounded to a whole number, with separators (`140,000`).
pub fn thousands_f(x: f64) -> String {
    if x.is_finite() && x > 0.0 {
        thousands(x.round() as u64)
    } else {
        "0".to_owned()
    }
}

/// A time left, to the second under an hour (`42s`, `1m05s`), to the minute above (`2h05m`).
pub fn eta(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..360_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => ">99h".to_owned(),
    }
}

/// A latency given in microseconds, in the unit that keeps it short (`761 us`, `35.2 ms`, `1.20 s`).
pub fn latency(us: u64) -> String {
    match us {
        0..10_000 => format!("{} us", thousands(us)),
        10_000..1_000_000 => format!("{:.1} ms", us as f64 / 1000.0),
        _ => format!("{:.2} s", us as f64 / 1_000_000.0),
    }
}

/// Bytes, with separators, and MiB above a MiB (`451 B`, `430.1 MiB`).
pub fn bytes(n: f64) -> String {
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else {
        format!("{} B", thousands_f(n))
    }
}

/// `text` broken into lines of at most `width` characters at spaces, each line after the first
/// starting with `indent` (a word longer than the line stays whole).
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.trim().is_empty() && needed > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_owned();
        } else if !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(140_000), "140,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands_f(115_381.4), "115,381");
    }

    #[test]
    fn etas_are_short_and_round_to_the_nearest_second() {
        assert_eq!(eta(Duration::from_millis(400)), "0s");
        assert_eq!(eta(Duration::from_millis(41_600)), "42s");
        assert_eq!(eta(Duration::from_secs(65)), "1m05s");
        assert_eq!(eta(Duration::from_secs(2 * 3600 + 5 * 60 + 9)), "2h05m");
        assert_eq!(eta(Duration::from_secs(400 * 3600)), ">99h");
    }

    #[test]
    fn latencies_and_sizes_use_the_unit_that_keeps_them_short() {
        assert_eq!(latency(761), "761 us");
        assert_eq!(latency(9_999), "9,999 us");
        assert_eq!(latency(35_200), "35.2 ms");
        assert_eq!(latency(1_200_000), "1.20 s");
        assert_eq!(bytes(451.2), "451 B");
        assert_eq!(bytes(1190.0), "1,190 B");
        assert_eq!(bytes(430.0 * 1024.0 * 1024.0), "430.0 MiB");
    }

    #[test]
    fn wrapped_text_keeps_every_word_and_fits_the_width() {
        let text = "session: 0.94x of /hello, p99 510 us; a logout ends it at once, but a second instance does not know the session";
        let wrapped = wrap(text, 40, "  ");
        assert!(
            wrapped.lines().all(|l| l.chars().count() <= 40),
            "{wrapped}"
        );
        assert!(wrapped.lines().skip(1).all(|l| l.starts_with("  ")));
        assert_eq!(
            wrapped.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
    }
}
