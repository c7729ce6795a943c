//! How numbers, times and outside text look on the terminal (Docker's conventions:
//! decimal units).

use anyhow::{bail, Context};

/// A Unix time as Go's `time.Time.String` prints it in UTC, as Docker's `ps`
/// `CreatedAt` (`2026-12-06 16:20:46 +0000 UTC`).
pub fn go_time(secs: i64) -> String {
    // RFC 3339 `2026-12-06T16:20:46Z` holds the same fields.
    let rfc = layers_store::images::oci::rfc3339(secs);
    let (date, rest) = rfc.split_once('T').unwrap_or((&rfc, ""));
    format!("{date} {} +0000 UTC", rest.trim_end_matches('Z'))
}

/// Nanoseconds since the epoch as RFC 3339 in UTC with all nine digits of the
/// fraction, as Docker writes log times and prints event times.
pub fn rfc3339_nanos(nanos: i64) -> String {
    let secs = layers_store::images::oci::rfc3339(nanos.div_euclid(1_000_000_000));
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), nanos.rem_euclid(1_000_000_000))
}

/// `12.3MB`, as `docker images` shows sizes (go-units' HumanSizeWithPrecision, 3).
pub fn size(bytes: u64) -> String {
    sized(bytes, 3)
}

/// `16.43MB`, as `docker system df` shows sizes (go-units' HumanSize: 4 significant digits).
pub fn human_size(bytes: u64) -> String {
    sized(bytes, 4)
}

/// `bytes` in decimal units with `significant` digits, trailing zeros dropped.
fn sized(bytes: u64, significant: i32) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        return format!("{bytes}B");
    }
    format!("{}{}", significant_digits(v, significant), UNITS[u])
}

/// `1.805MiB`, as `docker stats` shows memory (go-units' BytesSize: binary units, 4
/// significant digits).
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", significant_digits(v, 4), UNITS[u])
}

/// `v` (below 10,000) with `significant` digits, trailing zeros dropped (Go's `%.Ng`).
fn significant_digits(v: f64, significant: i32) -> String {
    let whole = match v {
        v if v >= 1000.0 => 4,
        v if v >= 100.0 => 3,
        v if v >= 10.0 => 2,
        _ => 1,
    };
    let digits = (significant - whole).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `3 minutes ago`, from an RFC 3339 time.
pub fn ago(rfc3339: &str) -> String {
    let Some(t) = layers_store::images::oci::parse_rfc3339(rfc3339) else { return rfc3339.to_string() };
    ago_secs(t)
}

/// `3 minutes ago`, from seconds since the epoch.
pub fn ago_secs(t: i64) -> String {
    format!("{} ago", duration(layers_store::meta::now() - t))
}

/// A duration in words, as Docker's go-units `HumanDuration` says it.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h) = (s / 60, (s + 1800) / 3600);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 14 => format!("{} days", h / 24),
        _ if h < 24 * 60 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// Go duration syntax (`30s`, `1m30s`, `500ms`) → nanoseconds.
pub fn duration_ns(d: &str) -> anyhow::Result<u64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = d.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphabetic()) {
            unit.push(n);
            chars.next();
        }
        let n: f64 = num.parse().with_context(|| format!("duration {d:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("duration {d:?}: unknown unit {unit}"),
        };
    }
    if !num.is_empty() {
        bail!("duration {d:?}: a unit is missing (s, m, h...)");
    }
    Ok(total as u64)
}

/// Text that came from outside (a registry, an imported cache record, a file) as it
/// may be shown on a terminal: control characters escaped (`\u{1b}`), so none can
/// move the cursor, rewrite what is shown or split one line into several.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_gos_time_string_in_utc() {
        assert_eq!(super::go_time(1_796_574_046), "2026-12-06 16:20:46 +0000 UTC");
    }

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(super::size(999), "999B");
        assert_eq!(super::size(4_261_000), "4.26MB");
        assert_eq!(super::size(128_400_000), "128MB");
        assert_eq!(super::size(1_000_000), "1MB");
        assert_eq!(super::human_size(16_430_000), "16.43MB");
        assert_eq!(super::human_size(212), "212B");
        assert_eq!(super::human_size(128_400_000), "128.4MB");
        assert_eq!(super::binary_size(1_892_762), "1.805MiB");
        assert_eq!(super::binary_size(512), "512B");
        assert_eq!(super::binary_size(2_096_000_000), "1.952GiB");
    }

    #[test]
    fn durations_read_like_go_units() {
        use super::duration;
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(90), "About a minute");
        assert_eq!(duration(600), "10 minutes");
        assert_eq!(duration(3600), "About an hour");
        assert_eq!(duration(5 * 3600), "5 hours");
        assert_eq!(duration(3 * 86_400), "3 days");
        assert_eq!(duration(21 * 86_400), "3 weeks");
        assert_eq!(duration(90 * 86_400), "3 months");
        assert_eq!(duration(800 * 86_400), "2 years");
    }
}
