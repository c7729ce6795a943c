//! Go `text/template` syntax, read as Go's `text/template/parse` reads it: text and
//! `{{actions}}` (with `{{-`/`-}}` trimming and `{{/* comments */}}`), pipelines of
//! commands joined by `|`, variables, `if`/`else if`/`range`/`with`/`break`/
//! `continue`. `define`, `template` and `block` are refused by name: a `--format`
//! string is one template. Nesting is bounded so no input can deepen the recursion
//! the executor does.

use std::fmt;

use super::lex::{lex, Item, Tok};

/// How deep control structures and parentheses may nest.
pub const MAX_DEPTH: usize = 64;

/// A parsed template: what it prints, in order.
pub type Tree = Vec<Node>;

/// One piece of a template.
#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    /// `{{pipeline}}`: printed unless it declares or assigns a variable.
    Action(Pipe),
    /// `{{if}}` with its `else if` arms, then what `else` runs.
    If {
        arms: Vec<(Pipe, Tree)>,
        otherwise: Tree,
    },
    Range {
        pipe: Pipe,
        body: Tree,
        otherwise: Tree,
    },
    /// `{{with}}` with its `else with` arms, then what `else` runs.
    With {
        arms: Vec<(Pipe, Tree)>,
        otherwise: Tree,
    },
    Break,
    Continue,
}

/// `$a, $b := cmd | cmd`: commands whose results feed the next as its last argument.
#[derive(Debug, Clone, Default)]
pub struct Pipe {
    pub vars: Vec<String>,
    /// `=` (assign to declared variables) rather than `:=` (declare).
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

/// One command: a function and its arguments, or one operand.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub args: Vec<Arg>,
}

/// An operand, or the name of a function.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B` (empty: `.` itself).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

/// Why a template does not parse.
#[derive(Debug)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// Parses `src` into a tree.
pub fn parse(src: &str) -> Result<Tree, ParseError> {
    let items = lex(src)?;
    let mut p = Parser { items, pos: 0, depth: 0, loops: 0 };
    let (tree, end) = p.list()?;
    match end {
        End::Eof => Ok(tree),
        End::Else(_) => p.err("unexpected {{else}}"),
        End::Close => p.err("unexpected {{end}}"),
    }
}

enum End {
    Eof,
    /// `{{end}}`.
    Close,
    /// `{{else}}` (None) or `{{else if …}}`/`{{else with …}}` (the keyword).
    Else(Option<String>),
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
    depth: usize,
    loops: usize,
}

impl Parser {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        let line = self.items.get(self.pos.min(self.items.len().saturating_sub(1))).map_or(1, |i| i.line);
        Err(ParseError { line, msg: msg.into() })
    }

    fn peek(&self) -> Option<&Tok> {
        self.items.get(self.pos).map(|i| &i.tok)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.items.get(self.pos).map(|i| i.tok.clone());
        self.pos += 1;
        t
    }

    fn expect_close(&mut self, what: &str) -> Result<(), ParseError> {
        match self.next() {
            Some(Tok::Close) => Ok(()),
            _ => self.err(format!("unexpected token in {what}")),
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("nested more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    /// Nodes up to the `{{end}}`/`{{else}}` that closes them, or the end.
    fn list(&mut self) -> Result<(Tree, End), ParseError> {
        let mut tree = Vec::new();
        loop {
            match self.next() {
                None => return Ok((tree, End::Eof)),
                Some(Tok::Text(t)) => tree.push(Node::Text(t)),
                Some(Tok::Open) => {
                    let kw = match self.peek() {
                        Some(Tok::Ident(k)) => Some(k.clone()),
                        _ => None,
                    };
                    match kw.as_deref() {
                        Some("end") => {
                            self.pos += 1;
                            self.expect_close("end")?;
                            return Ok((tree, End::Close));
                        }
                        Some("else") => {
                            self.pos += 1;
                            if let Some(Tok::Ident(k)) = self.peek() {
                                if k == "if" || k == "with" {
                                    let k = k.clone();
                                    self.pos += 1;
                                    return Ok((tree, End::Else(Some(k))));
                                }
                            }
                            self.expect_close("else")?;
                            return Ok((tree, End::Else(None)));
                        }
                        Some(k @ ("if" | "with")) => {
                            let k = k.to_string();
                            self.pos += 1;
                            tree.push(self.branch(&k)?);
                        }
                        Some("range") => {
                            self.pos += 1;
                            tree.push(self.range()?);
                        }
                        Some(k @ ("break" | "continue")) => {
                            let node = if k == "break" { Node::Break } else { Node::Continue };
                            if self.loops == 0 {
                                return self.err(format!("{{{{{k}}}}} outside {{{{range}}}}"));
                            }
                            self.pos += 1;
                            self.expect_close(k)?;
                            tree.push(node);
                        }
                        Some(k @ ("define" | "template" | "block")) => {
                            return self.err(format!("{{{{{k}}}}} is not supported: a format is one template"));
                        }
                        _ => {
                            let pipe = self.pipe(true)?;
                            self.expect_close("command")?;
                            tree.push(Node::Action(pipe));
                        }
                    }
                }
                Some(t) => return self.err(format!("unexpected {t:?}")),
            }
        }
    }

    /// `if`/`with` after its keyword: arms until `{{end}}`.
    fn branch(&mut self, kw: &str) -> Result<Node, ParseError> {
        self.deeper()?;
        let mut arms = Vec::new();
        let otherwise = loop {
            let pipe = self.pipe(true)?;
            self.expect_close(kw)?;
            let (body, end) = self.list()?;
            arms.push((pipe, body));
            match end {
                End::Eof => return self.err(format!("unexpected EOF in {{{{{kw}}}}}")),
                End::Close => break Vec::new(),
                End::Else(None) => {
                    let (tail, end) = self.list()?;
                    if !matches!(end, End::Close) {
                        return self.err(format!("expected {{{{end}}}} after {{{{else}}}} in {{{{{kw}}}}}"));
                    }
                    break tail;
                }
                End::Else(Some(k)) if k == kw => continue,
                // `{{if}}…{{else with}}`: the rest is a `with` of its own (and the reverse).
                End::Else(Some(k)) => break vec![self.branch(&k)?],
            }
        };
        self.depth -= 1;
        Ok(if kw == "if" { Node::If { arms, otherwise } } else { Node::With { arms, otherwise } })
    }

    fn range(&mut self) -> Result<Node, ParseError> {
        self.deeper()?;
        let pipe = self.pipe(true)?;
        self.expect_close("range")?;
        self.loops += 1;
        let (body, end) = self.list()?;
        self.loops -= 1;
        let otherwise = match end {
            End::Close => Vec::new(),
            End::Else(None) => {
                let (tail, end) = self.list()?;
                if !matches!(end, End::Close) {
                    return self.err("expected {{end}} after {{else}} in {{range}}");
                }
                tail
            }
            _ => return self.err("unexpected end of {{range}}"),
        };
        self.depth -= 1;
        Ok(Node::Range { pipe, body, otherwise })
    }

    /// A pipeline; `decl`: it may begin with `$x :=` / `$x =`.
    fn pipe(&mut self, decl: bool) -> Result<Pipe, ParseError> {
        let mut pipe = Pipe::default();
        if decl {
            let save = self.pos;
            let mut vars = Vec::new();
            while let Some(Tok::Var(v)) = self.peek() {
                vars.push(v.clone());
                self.pos += 1;
                match self.peek() {
                    Some(Tok::Comma) if vars.len() < 2 => self.pos += 1,
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        pipe.assign = self.next() == Some(Tok::Assign);
                        pipe.vars = std::mem::take(&mut vars);
                        break;
                    }
                    _ => break,
                }
            }
            if pipe.vars.is_empty() {
                self.pos = save;
            }
        }
        loop {
            let mut cmd = Cmd { args: Vec::new() };
            while let Some(t) = self.peek() {
                if matches!(t, Tok::Close | Tok::Pipe | Tok::RParen) {
                    break;
                }
                cmd.args.push(self.operand()?);
            }
            if cmd.args.is_empty() {
                return self.err("missing value for command");
            }
            pipe.cmds.push(cmd);
            if self.peek() == Some(&Tok::Pipe) {
                self.pos += 1;
            } else {
                return Ok(pipe);
            }
        }
    }

    fn operand(&mut self) -> Result<Arg, ParseError> {
        let arg = match self.next() {
            Some(Tok::Dot) => Arg::Field(Vec::new()),
            Some(Tok::Field(f)) => Arg::Field(vec![f]),
            Some(Tok::Chain(f)) => return self.err(format!("unexpected .{f} after term")),
            Some(Tok::Var(v)) => Arg::Var(v, Vec::new()),
            Some(Tok::Str(s)) => Arg::Str(s),
            Some(Tok::Char(c)) => Arg::Int(c),
            Some(Tok::Num(n)) => number(&n).ok_or(()).or_else(|()| self.err(format!("bad number syntax: {n:?}")))?,
            Some(Tok::Ident(k)) => match k.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                "if" | "else" | "end" | "range" | "with" | "break" | "continue" | "define" | "template" | "block" => {
                    return self.err(format!("unexpected keyword {k} in operand"))
                }
                _ => Arg::Func(k),
            },
            Some(Tok::LParen) => {
                self.deeper()?;
                let p = self.pipe(true)?;
                if self.next() != Some(Tok::RParen) {
                    return self.err("unclosed left paren");
                }
                self.depth -= 1;
                Arg::Sub(Box::new(p), Vec::new())
            }
            t => return self.err(format!("unexpected {t:?} in operand")),
        };
        // A field chain continues any term but a function name or a constant.
        let mut arg = arg;
        while let Some(Tok::Chain(f)) = self.peek() {
            let f = f.clone();
            match &mut arg {
                Arg::Field(c) | Arg::Var(_, c) | Arg::Sub(_, c) => c.push(f),
                _ => return self.err(format!("unexpected .{f} after term")),
            }
            self.pos += 1;
        }
        Ok(arg)
    }
}

/// A Go number constant: integer (decimal, `0x`, `0o`, `0b`, `_` separators) or
/// float; an integral value spelled with `.` or an exponent stays a float, as Go.
fn number(s: &str) -> Option<Arg> {
    let clean = s.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Some(Arg::Int(if neg { -i } else { i }));
    }
    if lower.starts_with("0x") || !lower.bytes().next().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    Some(Arg::Float(if neg { -f } else { f }))
}
