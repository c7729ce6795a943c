//! Logical lines → typed instructions. Values stay as written (quotes, `$VAR`):
//! what they mean depends on build args and ENV at that step, so `words.rs`
//! expands them when the step runs.

use serde::Serialize;

use super::dockerfile::{self, Heredoc, Line, ParseError, Pos};
use super::words::split_raw;

/// Shell form (run by the image's `SHELL`) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `KEY=VALUE` of ENV and LABEL, both as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `ARG NAME[=DEFAULT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// What COPY and ADD share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySpec {
    /// Paths in the context (or the `--from` stage or image), globs allowed; `<<EOF` names a here-document.
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (COPY): the sources' parent directories are kept under the destination.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK [OPTIONS] CMD …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub command: Command,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

/// One Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    From {
        image: String,
        alias: Option<String>,
        platform: Option<String>,
    },
    Run {
        command: Command,
        mounts: Vec<String>,
        network: Option<String>,
        security: Option<String>,
        heredocs: Vec<Heredoc>,
    },
    Cmd {
        command: Command,
    },
    Entrypoint {
        command: Command,
    },
    Shell {
        argv: Vec<String>,
    },
    Env {
        pairs: Vec<KeyValue>,
    },
    Label {
        pairs: Vec<KeyValue>,
    },
    Arg {
        args: Vec<ArgDecl>,
    },
    Workdir {
        path: String,
    },
    User {
        user: String,
    },
    Expose {
        ports: Vec<String>,
    },
    Volume {
        paths: Vec<String>,
    },
    Stopsignal {
        signal: String,
    },
    Healthcheck {
        check: Option<Healthcheck>,
    },
    Onbuild {
        /// The trigger as written, for the image config.
        text: String,
        trigger: Box<Instruction>,
    },
    Copy {
        copy: CopySpec,
    },
    Add {
        copy: CopySpec,
        checksum: Option<String>,
        keep_git_dir: bool,
    },
    Maintainer {
        name: String,
    },
}

/// An instruction and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located {
    #[serde(flatten)]
    pub pos: Pos,
    #[serde(flatten)]
    pub instruction: Instruction,
}

/// A parsed Dockerfile: its directives and instructions, in order.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub syntax: Option<String>,
    pub escape: char,
    pub instructions: Vec<Located>,
}

/// A failure at byte `offset` of a line's arguments.
type Fail = (usize, String);

/// A failure and its place in the Dockerfile.
type Placed = (Pos, String);

/// The `--flag=value` words before an instruction's arguments.
struct Flags {
    /// Name, value, offset in the arguments.
    given: Vec<(String, Option<String>, usize)>,
}

impl Flags {
    /// Takes the leading flags of `args` (every instruction has them: one not in
    /// `allowed` is an error); `--` ends them. Returns them and the offset of the rest.
    /// As BuildKit reads them, a flag word may hold quotes and escapes (`--mount="a b"`).
    fn take(args: &str, allowed: &[&str]) -> Result<(Flags, usize), Fail> {
        let mut given = Vec::new();
        let mut at = 0;
        loop {
            let rest = &args[at..];
            let word_at = at + (rest.len() - rest.trim_start().len());
            if !args[word_at..].starts_with("--") {
                return Ok((Flags { given }, word_at));
            }
            let (word, word_end) = flag_word(args, word_at);
            if word == "--" {
                return Ok((Flags { given }, word_end));
            }
            let flag = &word[2..];
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if !allowed.contains(&name) {
                return Err((word_at, format!("unknown flag: --{name}")));
            }
            given.push((name.to_string(), value, word_at));
            at = word_end;
        }
    }

    fn value(&self, name: &str) -> Option<String> {
        self.given.iter().rev().find(|(n, _, _)| n == name).and_then(|(_, v, _)| v.clone())
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.given.iter().filter(|(n, _, _)| n == name).filter_map(|(_, v, _)| v.clone()).collect()
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.given.iter().rev().find(|(n, _, _)| n == name) {
            None => Ok(false),
            Some((_, None, _)) => Ok(true),
            Some((_, Some(v), _)) => match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("expecting boolean value for flag --{name}, not {other:?}")),
            },
        }
    }

    /// Flags that must carry a value.
    fn check_values(&self, names: &[&str]) -> Result<(), Fail> {
        match self.given.iter().find(|(n, v, _)| v.is_none() && names.contains(&n.as_str())) {
            Some((n, _, at)) => Err((*at, format!("missing a value on flag --{n}"))),
            None => Ok(()),
        }
    }
}

/// One flag word from `at`: up to unquoted whitespace, quotes removed, `\x` as `x`
/// (BuildKit's extractBuilderFlags). Returns it and where it ends.
fn flag_word(args: &str, at: usize) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = args[at..].char_indices();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return (word, at + i),
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => word.extend(chars.next().map(|(_, n)| n)),
            _ => word.push(c),
        }
    }
    (word, args.len())
}

/// `rest` as a JSON array of strings (exec form); `Ok(None)`: not JSON, so shell form.
/// A JSON array with anything but strings in it is an error, as in BuildKit.
fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    if !rest.trim_start().starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else { return Ok(None) };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err("when using JSON array syntax, arrays must be comprised of strings only".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn command(rest: &str) -> Result<Command, Failure> {
    Ok(match json_array(rest).map_err(Failure::Here)? {
        Some(argv) => Command::Exec(argv),
        None => Command::Shell(rest.to_string()),
    })
}

/// ENV and LABEL: `K=V K2="V 2"`, or the legacy `K the rest is the value`.
fn pairs(name: &str, rest: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = split_raw(rest, escape);
    let Some(first) = words.first() else { return Err(format!("{name} requires at least one argument")) };
    if !first.contains('=') {
        let value = rest.trim_start()[first.len()..].trim();
        if value.is_empty() {
            return Err(format!("{name} must have two arguments (or KEY=VALUE)"));
        }
        return Ok(vec![KeyValue { key: first.clone(), value: value.to_string() }]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{name} names can not be blank")),
            Some((k, v)) => Ok(KeyValue { key: k.to_string(), value: v.to_string() }),
            None => Err(format!("syntax error - can't find = in {w:?}: must be of the form name=value")),
        })
        .collect()
}

/// Stage names: BuildKit's rule.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn copy_spec(line: &Line, rest: &str, flags: &Flags, name: &str) -> Result<CopySpec, String> {
    let words = json_array(rest)?.unwrap_or_else(|| rest.split_whitespace().map(String::from).collect());
    if words.len() < 2 {
        return Err(format!(
            "{name} requires at least two arguments, but only {} provided: the destination could not be determined",
            if words.is_empty() { "none was" } else { "one was" }
        ));
    }
    let (dest, sources) = words.split_last().map(|(d, s)| (d.clone(), s.to_vec())).unwrap_or_default();
    Ok(CopySpec {
        sources,
        dest,
        from: flags.value("from"),
        chown: flags.value("chown"),
        chmod: flags.value("chmod"),
        link: flags.bool("link")?,
        parents: flags.bool("parents")?,
        exclude: flags.values("exclude"),
        heredocs: line.heredocs.clone(),
    })
}

/// Gives one logical line its meaning.
fn instruction(line: &Line, escape: char) -> Result<Instruction, Placed> {
    parts(line, escape).map_err(|e| match e {
        Failure::Here(m) => (line.pos, m),
        Failure::At(offset, m) => (line.place(offset), m),
        Failure::Placed(p, m) => (p, m),
    })
}

/// A failure of the whole instruction, at an offset of its arguments, or already
/// placed (inside an ONBUILD trigger).
enum Failure {
    Here(String),
    At(usize, String),
    Placed(Pos, String),
}

impl From<Fail> for Failure {
    fn from((offset, m): Fail) -> Failure {
        Failure::At(offset, m)
    }
}

fn parts(line: &Line, escape: char) -> Result<Instruction, Failure> {
    let upper = line.name.to_ascii_uppercase();
    let args = line.args.as_str();
    let flags_for: &[&str] = match upper.as_str() {
        "FROM" => &["platform"],
        "RUN" => &["mount", "network", "security"],
        "COPY" => &["from", "chown", "chmod", "link", "exclude", "parents"],
        "ADD" => &["chown", "chmod", "link", "exclude", "checksum", "keep-git-dir"],
        "HEALTHCHECK" => &["interval", "timeout", "start-period", "start-interval", "retries"],
        _ => &[],
    };
    let (flags, rest_at) = Flags::take(args, flags_for)?;
    flags.check_values(&[
        "platform",
        "mount",
        "network",
        "security",
        "from",
        "chown",
        "chmod",
        "exclude",
        "checksum",
        "interval",
        "timeout",
        "start-period",
        "start-interval",
        "retries",
    ])?;
    let rest = args[rest_at..].trim();
    let need = |what: &str| {
        if rest.is_empty() {
            Err(Failure::Here(format!("{upper} requires {what}")))
        } else {
            Ok(())
        }
    };
    Ok(match upper.as_str() {
        "FROM" => {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (image, alias) = match words.as_slice() {
                [image] => (image.to_string(), None),
                [image, kw, alias] if kw.eq_ignore_ascii_case("AS") => {
                    if !valid_stage_name(alias) {
                        let alias_at = rest_at + rest.rfind(alias).unwrap_or(0);
                        return Err(Failure::At(alias_at, format!("invalid name for build stage: {alias:?}: it must start with a letter and hold only letters, digits, '-', '_' and '.'")));
                    }
                    (image.to_string(), Some(alias.to_ascii_lowercase()))
                }
                _ => {
                    return Err(Failure::At(
                        rest_at,
                        "FROM requires either one or three arguments (IMAGE [AS NAME])".into(),
                    ))
                }
            };
            Instruction::From { image, alias, platform: flags.value("platform") }
        }
        "RUN" => {
            need("at least one argument")?;
            Instruction::Run {
                command: command(rest)?,
                mounts: flags.values("mount"),
                network: flags.value("network"),
                security: flags.value("security"),
                heredocs: line.heredocs.clone(),
            }
        }
        "CMD" => Instruction::Cmd { command: if rest.is_empty() { Command::Exec(Vec::new()) } else { command(rest)? } },
        "ENTRYPOINT" => Instruction::Entrypoint {
            command: if rest.is_empty() { Command::Exec(Vec::new()) } else { command(rest)? },
        },
        "SHELL" => match json_array(rest).map_err(Failure::Here)? {
            Some(argv) if !argv.is_empty() => Instruction::Shell { argv },
            _ => {
                return Err(Failure::At(
                    0,
                    "SHELL requires the arguments to be in JSON form, e.g. [\"/bin/sh\", \"-c\"]".into(),
                ))
            }
        },
        "ENV" => Instruction::Env { pairs: pairs("ENV", rest, escape).map_err(Failure::Here)? },
        "LABEL" => Instruction::Label { pairs: pairs("LABEL", rest, escape).map_err(Failure::Here)? },
        "ARG" => {
            need("at least one argument")?;
            let args = split_raw(rest, escape)
                .into_iter()
                .map(|w| match w.split_once('=') {
                    Some((n, d)) => ArgDecl { name: n.to_string(), default: Some(d.to_string()) },
                    None => ArgDecl { name: w, default: None },
                })
                .collect();
            Instruction::Arg { args }
        }
        "WORKDIR" => {
            need("exactly one argument")?;
            Instruction::Workdir { path: rest.to_string() }
        }
        "USER" => {
            need("exactly one argument")?;
            Instruction::User { user: rest.to_string() }
        }
        "STOPSIGNAL" => {
            need("exactly one argument")?;
            Instruction::Stopsignal { signal: rest.to_string() }
        }
        "MAINTAINER" => {
            need("exactly one argument")?;
            Instruction::Maintainer { name: rest.to_string() }
        }
        "EXPOSE" => {
            need("at least one argument")?;
            Instruction::Expose { ports: split_raw(rest, escape) }
        }
        "VOLUME" => {
            need("at least one argument")?;
            let paths = json_array(rest).map_err(Failure::Here)?.unwrap_or_else(|| split_raw(rest, escape));
            if paths.iter().any(|p| p.trim().is_empty()) {
                return Err(Failure::Here("VOLUME specified can not be an empty string".into()));
            }
            Instruction::Volume { paths }
        }
        "HEALTHCHECK" => {
            let (kind, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if kind.eq_ignore_ascii_case("NONE") {
                if !flags.given.is_empty() || !cmd.trim().is_empty() {
                    return Err(Failure::Here("HEALTHCHECK NONE takes no arguments or options".into()));
                }
                Instruction::Healthcheck { check: None }
            } else if kind.eq_ignore_ascii_case("CMD") && !cmd.trim().is_empty() {
                Instruction::Healthcheck {
                    check: Some(Healthcheck {
                        command: command(cmd.trim())?,
                        interval: flags.value("interval"),
                        timeout: flags.value("timeout"),
                        start_period: flags.value("start-period"),
                        start_interval: flags.value("start-interval"),
                        retries: flags.value("retries"),
                    }),
                }
            } else {
                return Err(Failure::At(
                    rest_at,
                    format!("unknown type {kind:?} in HEALTHCHECK (try CMD, with a command, or NONE)"),
                ));
            }
        }
        "ONBUILD" => {
            need("at least one argument")?;
            let trigger_at = rest_at + (args[rest_at..].len() - args[rest_at..].trim_start().len());
            let trigger_line = line.tail(trigger_at);
            let trigger_name = trigger_line.name.to_ascii_uppercase();
            if matches!(trigger_name.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(Failure::At(trigger_at, format!("{trigger_name} isn't allowed as an ONBUILD trigger")));
            }
            let trigger = instruction(&trigger_line, escape).map_err(|(p, m)| Failure::Placed(p, m))?;
            Instruction::Onbuild { text: rest.to_string(), trigger: Box::new(trigger) }
        }
        "COPY" => Instruction::Copy { copy: copy_spec(line, rest, &flags, "COPY").map_err(Failure::Here)? },
        "ADD" => Instruction::Add {
            copy: copy_spec(line, rest, &flags, "ADD").map_err(Failure::Here)?,
            checksum: flags.value("checksum"),
            keep_git_dir: flags.bool("keep-git-dir").map_err(Failure::Here)?,
        },
        _ => return Err(Failure::Here(format!("unknown instruction: {}", line.name))),
    })
}

/// One instruction from its text (an ONBUILD trigger an image carries).
pub fn parse_one(source: &str, text: &str, escape: char) -> Result<Located, ParseError> {
    let lines = dockerfile::lines(source, text)?;
    let Some(line) = lines.lines.first() else {
        return Err(ParseError {
            file: source.to_string(),
            pos: Pos { line: 1, column: 1 },
            message: "empty instruction".into(),
        });
    };
    let instruction =
        instruction(line, escape).map_err(|(pos, message)| ParseError { file: source.to_string(), pos, message })?;
    Ok(Located { pos: line.pos, instruction })
}

/// Parses the Dockerfile `text`; errors name `file`, the line and the column.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let lines = dockerfile::lines(file, text)?;
    let mut instructions = Vec::new();
    for line in &lines.lines {
        let parsed = instruction(line, lines.escape).map_err(|(pos, message)| ParseError {
            file: file.to_string(),
            pos,
            message,
        })?;
        instructions.push(Located { pos: line.pos, instruction: parsed });
    }
    let first = instructions.iter().find(|l| !matches!(l.instruction, Instruction::Arg { .. }));
    match first {
        None => Err(ParseError {
            file: file.to_string(),
            pos: Pos { line: 1, column: 1 },
            message: "the Dockerfile has no FROM instruction".into(),
        }),
        Some(l) if !matches!(l.instruction, Instruction::From { .. }) => Err(ParseError {
            file: file.to_string(),
            pos: l.pos,
            message: "the first instruction (after ARGs) must be FROM".into(),
        }),
        Some(_) => Ok(Dockerfile { syntax: lines.syntax, escape: lines.escape, instructions }),
    }
}
