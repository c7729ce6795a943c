//! How numbers and times look on the terminal (Docker's conventions: decimal units).

/// `12.3MB`, as `docker images` shows sizes.
pub fn size(bytes: u64) -> String {
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
    // Three significant digits, trailing zeros dropped, as Docker's go-units prints.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    format!("{s}{}", UNITS[u])
}

/// `3 minutes ago`, from an RFC 3339 time.
pub fn ago(rfc3339: &str) -> String {
    let Some(t) = layers_store::oci::parse_rfc3339(rfc3339) else { return rfc3339.to_string() };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(t);
    let s = (now - t).max(0);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(super::size(999), "999B");
        assert_eq!(super::size(4_261_000), "4.26MB");
        assert_eq!(super::size(128_400_000), "128MB");
        assert_eq!(super::size(1_000_000), "1MB");
    }
}
