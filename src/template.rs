//! `--format`, as Docker's CLI takes it: `table` (the default columns), `json` (one
//! object per line), or a Go template (gtmpl, a Go `text/template` for Rust) run
//! once per row, with Docker's template functions (`json`, `join`, `split`, `lower`,
//! `upper`, `title`, `pad`, `truncate`). A template starting with `table` gets a
//! header row (each field's column title) and its `\t`-separated cells aligned as
//! Docker's tabwriter aligns them.

use std::collections::HashMap;

use anyhow::Context;
use gtmpl::{Func, FuncError, Value};

/// What `--format` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The verb's own columns.
    Table,
    /// Each row as one line of JSON.
    Json,
    /// A Go template; `table`: with a header row and aligned columns.
    Template { table: bool, text: String },
}

impl Format {
    /// Reads `--format` (none: the table).
    pub fn parse(s: Option<&str>) -> Format {
        let Some(s) = s else { return Format::Table };
        match s.trim() {
            "" | "table" => Format::Table,
            "json" => Format::Json,
            t => match t.strip_prefix("table") {
                Some(rest) if rest.starts_with([' ', '\t']) || rest.starts_with("\\t") => {
                    Format::Template { table: true, text: unescape(rest.trim_start()) }
                }
                _ => Format::Template { table: false, text: unescape(t) },
            },
        }
    }
}

/// What a listing verb (`images`, `ps`, `history`, `volume ls`, `network ls`) prints:
/// `rows` as `--format` says, by default as the `table` template of `columns`.
pub fn listing(
    format: Option<&str>,
    columns: &str,
    headers: &[(&str, &str)],
    rows: &[serde_json::Value],
) -> anyhow::Result<String> {
    let format = match Format::parse(format) {
        Format::Table => Format::Template { table: true, text: columns.to_string() },
        f => f,
    };
    Ok(render(&format, headers, rows)?.trim_end_matches('\n').to_string())
}

/// What an `inspect` verb prints for `docs`: a JSON array indented as Docker's (four
/// spaces), or with `--format` the template (or `json`) over each document.
pub fn inspected(format: Option<&str>, docs: &[serde_json::Value]) -> anyhow::Result<String> {
    Ok(match Format::parse(format) {
        Format::Table => {
            let mut buf = Vec::new();
            let indent = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            serde::Serialize::serialize(docs, &mut serde_json::Serializer::with_formatter(&mut buf, indent))?;
            String::from_utf8(buf)?
        }
        Format::Template { table: true, .. } => anyhow::bail!("--format: inspect prints no table"),
        f => render(&f, &[], docs)?.trim_end_matches('\n').to_string(),
    })
}

/// Docker replaces the escapes `\t` and `\n` in a format before parsing it.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Renders `rows` (each a JSON object) with `format`, which must be `Json` or a
/// template; `headers` names the column of each field for a `table` template.
pub fn render(format: &Format, headers: &[(&str, &str)], rows: &[serde_json::Value]) -> anyhow::Result<String> {
    let (table, text) = match format {
        Format::Json => {
            let mut out = String::new();
            for r in rows {
                out.push_str(&serde_json::to_string(r)?);
                out.push('\n');
            }
            return Ok(out);
        }
        Format::Template { table, text } => (*table, text.as_str()),
        Format::Table => anyhow::bail!("the default table is the verb's own"),
    };
    let mut t = gtmpl::Template::default();
    t.add_funcs(&FUNCS);
    t.parse(text).map_err(|e| anyhow::anyhow!("--format {text:?}: {e}"))?;
    let mut lines = Vec::with_capacity(rows.len() + 1);
    if table {
        let header: HashMap<String, Value> =
            headers.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        lines.push(t.render(&gtmpl::Context::from(Value::Map(header))).context("--format: the header row")?);
    }
    for r in rows {
        let line =
            t.render(&gtmpl::Context::from(to_value(r))).map_err(|e| anyhow::anyhow!("--format {text:?}: {e}"))?;
        lines.push(line);
    }
    Ok(if table { align(&lines) } else { lines.iter().map(|l| format!("{l}\n")).collect() })
}

/// Lines of `\t`-separated cells as Go's tabwriter lays them out for Docker
/// (minimum width 10, padding 3): every cell but a line's last padded to its column.
pub fn align(lines: &[String]) -> String {
    let split: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &split {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = (c.chars().count() + 3).max(10);
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for cells in &split {
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                out.push_str(&format!("{c:<width$}", width = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            let s = n.to_string();
            serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s))
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        // Keys sorted: a map has no order of its own to keep.
        Value::Object(m) | Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

const FUNCS: [(&str, Func); 8] = [
    ("json", json),
    ("join", join),
    ("split", split),
    ("lower", lower),
    ("upper", upper),
    ("title", title),
    ("pad", pad),
    ("truncate", truncate),
];

fn arg_str(args: &[Value], i: usize, f: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs(f.to_string(), i + 1)),
    }
}

fn arg_num(args: &[Value], i: usize, f: &str) -> Result<usize, FuncError> {
    let s = arg_str(args, i, f)?;
    s.parse().map_err(|_| FuncError::UnableToConvertFromValue)
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args.first().ok_or(FuncError::AtLeastXArgs("json".into(), 1))?;
    Ok(Value::String(serde_json::to_string(&to_json(v)).unwrap_or_default()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(args, 1, "join")?;
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::String(a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(&sep))),
        Some(v) => Ok(Value::String(v.to_string())),
        None => Err(FuncError::AtLeastXArgs("join".into(), 2)),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let (s, sep) = (arg_str(args, 0, "split")?, arg_str(args, 1, "split")?);
    Ok(Value::Array(s.split(sep.as_str()).map(|p| Value::String(p.to_string())).collect()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "lower")?.to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "upper")?.to_uppercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        out.extend(if start { c.to_uppercase().collect::<Vec<_>>() } else { vec![c] });
        start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

/// `pad S LEFT RIGHT`: S with spaces either side.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "pad")?;
    let (l, r) = (arg_num(args, 1, "pad")?.min(1 << 10), arg_num(args, 2, "pad")?.min(1 << 10));
    Ok(Value::String(format!("{}{s}{}", " ".repeat(l), " ".repeat(r))))
}

/// `truncate S N`: S cut to N characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "truncate")?;
    let n = arg_num(args, 1, "truncate")?;
    Ok(Value::String(s.chars().take(n).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> serde_json::Value {
        serde_json::json!({"ID": "abc123", "Names": "web", "Labels": {"a": "1"}, "Ports": [], "Size": 42,
                           "Mounts": ["/data", "/cache"], "Image": "Nginx:Latest"})
    }

    #[test]
    fn templates_run_per_row_with_dockers_functions() {
        let f = Format::parse(Some("{{.ID}}: {{.Names}}"));
        assert_eq!(render(&f, &[], &[row(), row()]).unwrap(), "abc123: web\nabc123: web\n");
        let f = Format::parse(Some(r#"{{json .Labels}} {{join .Mounts ","}} {{lower .Image}} {{index .Labels "a"}}"#));
        assert_eq!(render(&f, &[], &[row()]).unwrap(), "{\"a\":\"1\"} /data,/cache nginx:latest 1\n");
        let f = Format::parse(Some("{{range .Mounts}}[{{.}}]{{end}} {{truncate .ID 3}} {{upper .Names}}"));
        assert_eq!(render(&f, &[], &[row()]).unwrap(), "[/data][/cache] abc WEB\n");
        assert!(render(&Format::parse(Some("{{.ID")), &[], &[row()]).is_err());
    }

    #[test]
    fn table_templates_get_a_header_and_aligned_columns() {
        let f = Format::parse(Some("table {{.ID}}\\t{{.Names}}"));
        assert_eq!(f, Format::Template { table: true, text: "{{.ID}}\t{{.Names}}".into() });
        let mut long = row();
        long["ID"] = "a-much-longer-id".into();
        let out = render(&f, &[("ID", "CONTAINER ID"), ("Names", "NAMES")], &[row(), long]).unwrap();
        assert_eq!(out, "CONTAINER ID       NAMES\nabc123             web\na-much-longer-id   web\n");
    }

    #[test]
    fn json_is_one_object_a_line() {
        assert_eq!(Format::parse(Some("json")), Format::Json);
        let out = render(&Format::Json, &[], &[serde_json::json!({"ID": "x"})]).unwrap();
        assert_eq!(out, "{\"ID\":\"x\"}\n");
        assert_eq!(Format::parse(None), Format::Table);
        assert_eq!(Format::parse(Some("table")), Format::Table);
    }
}
