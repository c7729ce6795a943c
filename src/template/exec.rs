//! Runs a parsed template over a JSON document as Go's `text/template` runs one:
//! dot, variables and their scopes, field chains, pipelines whose result is the last
//! argument of the next command, `if`/`range`/`with`, Go's truth. Bounded: a run
//! takes at most `MAX_STEPS` steps and writes at most its output budget, so neither
//! a nested `range` nor a doubling variable can run away.

use super::funcs;
use super::parse::{Arg, Cmd, Node, Pipe};
use std::borrow::Cow;

use super::value::{shape_of, Shape, Val};
use serde_json::Value as J;

/// Steps (actions, commands, loop turns) one execution may take.
pub const MAX_STEPS: u64 = 10_000_000;

/// What an execution may still write, shared by the rows of one listing.
pub struct Budget {
    pub left: usize,
}

/// Why execution stopped.
pub type Error = String;

enum Flow {
    Normal,
    Break,
    Continue,
}

/// One execution: the output so far, the variables in scope, the steps taken.
pub struct Exec<'b, 'd> {
    out: String,
    vars: Vec<(String, Val<'d>)>,
    steps: u64,
    budget: &'b mut Budget,
    /// A table's header row: Docker's functions return their argument unchanged and
    /// a field no header names is empty.
    pub header: bool,
}

impl<'b, 'd> Exec<'b, 'd> {
    /// Runs `tree` with `dot` (and `$`) set to `data`.
    pub fn run(tree: &[Node], data: &'d J, budget: &'b mut Budget, header: bool) -> Result<String, Error> {
        let root = Val::data(data, Shape::Plain);
        let mut e = Exec { out: String::new(), vars: vec![("$".into(), root.clone())], steps: 0, budget, header };
        e.walk(tree, &root)?;
        Ok(e.out)
    }

    fn step(&mut self) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!("more than {MAX_STEPS} steps"));
        }
        Ok(())
    }

    fn emit(&mut self, s: &str) -> Result<(), Error> {
        if s.len() > self.budget.left {
            return Err("output over the limit".into());
        }
        self.budget.left -= s.len();
        self.out.push_str(s);
        Ok(())
    }

    /// How long a value a function may still make.
    pub fn room(&self) -> usize {
        self.budget.left.min(funcs::MAX_VALUE)
    }

    fn walk(&mut self, nodes: &[Node], dot: &Val<'d>) -> Result<Flow, Error> {
        let scope = self.vars.len();
        let flow = self.walk_scoped(nodes, dot);
        self.vars.truncate(scope);
        flow
    }

    fn walk_scoped(&mut self, nodes: &[Node], dot: &Val<'d>) -> Result<Flow, Error> {
        for node in nodes {
            self.step()?;
            let flow = match node {
                Node::Text(t) => {
                    self.emit(t)?;
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let v = self.pipe(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        let s = v.printed();
                        self.emit(&s)?;
                    }
                    Flow::Normal
                }
                Node::If { arms, otherwise } | Node::With { arms, otherwise } => {
                    let with = matches!(node, Node::With { .. });
                    let mut chosen = None;
                    let scope = self.vars.len();
                    for (pipe, body) in arms {
                        let v = self.pipe(pipe, dot)?;
                        if v.truth() {
                            chosen = Some((body, if with { v } else { dot.clone() }));
                            break;
                        }
                    }
                    let flow = match chosen {
                        Some((body, d)) => self.walk(body, &d)?,
                        None => self.walk(otherwise, dot)?,
                    };
                    self.vars.truncate(scope);
                    flow
                }
                Node::Range { pipe, body, otherwise } => self.range(pipe, body, otherwise, dot)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, pipe: &Pipe, body: &[Node], otherwise: &[Node], dot: &Val<'d>) -> Result<Flow, Error> {
        let decl = Pipe { vars: Vec::new(), assign: false, cmds: pipe.cmds.clone() };
        let v = self.pipe(&decl, dot)?;
        let items: Vec<(Val<'d>, Val<'d>)> = match &*v.j {
            J::Array(a) => (0..a.len()).filter_map(|i| Some((Val::int(i as i64), v.elem(i)?))).collect(),
            J::Object(o) => {
                let keys: Vec<String> = o.keys().filter(|k| !k.ends_with("()")).cloned().collect();
                keys.into_iter().filter_map(|k| Some((Val::str(k.clone()), v.clone().child(&k)?))).collect()
            }
            J::Number(n) if n.as_i64().is_some() && !n.is_f64() => {
                let n = n.as_i64().unwrap_or(0);
                if n.unsigned_abs() > MAX_STEPS {
                    return Err(format!("range over {n}: more than {MAX_STEPS} steps"));
                }
                (0..n.max(0)).map(|i| (Val::int(i), Val::int(i))).collect()
            }
            J::Null => Vec::new(),
            _ => return Err(format!("range can't iterate over {}", v.printed())),
        };
        if items.is_empty() {
            return self.walk(otherwise, dot);
        }
        for (k, e) in items {
            self.step()?;
            let scope = self.vars.len();
            match pipe.vars.as_slice() {
                [] => {}
                [one] => self.set(one, e.clone(), pipe.assign)?,
                [i, one] => {
                    self.set(i, k, pipe.assign)?;
                    self.set(one, e.clone(), pipe.assign)?;
                }
                _ => return Err("too many variables in range".into()),
            }
            let flow = self.walk(body, &e)?;
            self.vars.truncate(scope);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    fn set(&mut self, name: &str, v: Val<'d>, assign: bool) -> Result<(), Error> {
        if assign {
            let slot =
                self.vars.iter_mut().rev().find(|(n, _)| n == name).ok_or(format!("undefined variable: {name}"))?;
            slot.1 = v;
        } else {
            self.vars.push((name.to_string(), v));
        }
        Ok(())
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Val<'d>) -> Result<Val<'d>, Error> {
        let mut last: Option<Val<'d>> = None;
        for cmd in &pipe.cmds {
            self.step()?;
            last = Some(self.command(cmd, dot, last)?);
        }
        let v = last.unwrap_or_else(Val::missing);
        match pipe.vars.as_slice() {
            [] => {}
            [one] => self.set(one, v.clone(), pipe.assign)?,
            _ => return Err("too many declarations in command".into()),
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &Cmd, dot: &Val<'d>, fin: Option<Val<'d>>) -> Result<Val<'d>, Error> {
        let (first, rest) = cmd.args.split_first().ok_or("empty command")?;
        let takes_args = !rest.is_empty() || fin.is_some();
        match first {
            Arg::Func(name) => {
                if matches!(name.as_str(), "and" | "or") {
                    return self.and_or(name == "and", rest, dot, fin);
                }
                let mut args = Vec::with_capacity(rest.len() + 1);
                for a in rest {
                    args.push(self.arg(a, dot)?);
                }
                args.extend(fin);
                funcs::call(self, name, args).map_err(|e| format!("error calling {name}: {e}"))
            }
            Arg::Field(chain) | Arg::Var(_, chain) | Arg::Sub(_, chain) if !chain.is_empty() => {
                let recv = match first {
                    Arg::Field(_) => dot.clone(),
                    Arg::Var(v, _) => self.var(v)?,
                    Arg::Sub(p, _) => self.pipe(p, dot)?,
                    _ => unreachable!("matched above"),
                };
                let mut args = Vec::with_capacity(rest.len() + 1);
                for a in rest {
                    args.push(self.arg(a, dot)?);
                }
                args.extend(fin);
                self.chain(recv, chain, args, takes_args)
            }
            _ if takes_args => Err(format!("can't give argument to non-function {}", describe(first))),
            _ => self.arg(first, dot),
        }
    }

    /// `and`/`or`: arguments evaluated only until one decides, as Go 1.18+.
    fn and_or(&mut self, and: bool, rest: &[Arg], dot: &Val<'d>, fin: Option<Val<'d>>) -> Result<Val<'d>, Error> {
        if rest.len() + usize::from(fin.is_some()) == 0 {
            return Err(format!("wrong number of args for {}: want at least 1 got 0", if and { "and" } else { "or" }));
        }
        let mut v = Val::missing();
        for a in rest {
            v = self.arg(a, dot)?;
            if v.truth() != and {
                return Ok(v);
            }
        }
        if let Some(f) = fin {
            v = f;
        }
        Ok(v)
    }

    fn var(&self, name: &str) -> Result<Val<'d>, Error> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or(format!("undefined variable: {name}"))
    }

    /// An argument's value: operands are evaluated, a function name is called with none.
    fn arg(&mut self, a: &Arg, dot: &Val<'d>) -> Result<Val<'d>, Error> {
        Ok(match a {
            Arg::Field(chain) => self.chain(dot.clone(), chain, Vec::new(), false)?,
            Arg::Var(v, chain) => {
                let v = self.var(v)?;
                self.chain(v, chain, Vec::new(), false)?
            }
            Arg::Sub(p, chain) => {
                let v = self.pipe(p, dot)?;
                self.chain(v, chain, Vec::new(), false)?
            }
            Arg::Func(name) => funcs::call(self, name, Vec::new()).map_err(|e| format!("error calling {name}: {e}"))?,
            Arg::Str(s) => Val::str(s.clone()),
            Arg::Int(i) => Val::int(*i),
            Arg::Float(f) => Val::owned(serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)),
            Arg::Bool(b) => Val::owned(J::Bool(*b)),
            Arg::Nil => Val::owned(J::Null),
        })
    }

    /// `.A.B.C args…`: the arguments go to the last field, which must be a method.
    fn chain(
        &mut self,
        mut v: Val<'d>,
        chain: &[String],
        args: Vec<Val<'d>>,
        takes_args: bool,
    ) -> Result<Val<'d>, Error> {
        for (i, name) in chain.iter().enumerate() {
            let last = i + 1 == chain.len();
            v = self.field(v, name, if last && takes_args { Some(&args) } else { None }, &chain[..=i])?;
        }
        Ok(v)
    }

    fn field(&mut self, recv: Val<'d>, name: &str, args: Option<&[Val<'d>]>, at: &[String]) -> Result<Val<'d>, Error> {
        let at = format!("<.{}>", at.join("."));
        let is_map = matches!(recv.shape, Shape::StrMap | Shape::Map);
        match &*recv.j {
            J::Object(o) => {
                let method = format!("{name}()");
                if !is_map && o.contains_key(&method) {
                    // A method taking one key (Docker's `.Label "tier"`).
                    let args = args.unwrap_or_default();
                    if args.len() != 1 {
                        return Err(format!("at {at}: wrong number of args for {name}: want 1 got {}", args.len()));
                    }
                    let key = args[0].j.as_str().ok_or(format!("at {at}: {name} takes a string"))?.to_string();
                    let table = recv.child(&method).ok_or(format!("at {at}: no {name}"))?;
                    return Ok(table.child(&key).unwrap_or_else(|| Val::str("")));
                }
                if args.is_some() {
                    return Err(format!("at {at}: {name} is not a method but has arguments"));
                }
                match recv.child(name) {
                    Some(v) => Ok(v),
                    None if self.header => Ok(Val::str("")),
                    // Docker's structs omit nil pointers and empty strings from their
                    // JSON (`omitempty`); its template still sees the field.
                    None if !is_map && matches!(shape_of(name), Shape::Ptr | Shape::Str) => {
                        Ok(Val { j: Cow::Owned(J::Null), shape: shape_of(name) })
                    }
                    // A map lacks the key; Docker's (JSON) fallback says so in these words.
                    None if !is_map => Err(format!("at {at}: map has no entry for key {name:?}")),
                    None => Ok(Val::missing()),
                }
            }
            J::Null if recv.shape == Shape::Missing => Err(format!("at {at}: nil data; no entry for key {name:?}")),
            J::Null => Err(format!("at {at}: nil pointer evaluating {name}")),
            _ => Err(format!("at {at}: can't evaluate field {name} in type {}", recv.type_name())),
        }
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Str(s) => super::value::quote(s),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Field(c) => format!(".{}", c.join(".")),
        Arg::Var(v, _) => v.clone(),
        Arg::Func(f) => f.clone(),
        Arg::Sub(..) => "(…)".into(),
    }
}
