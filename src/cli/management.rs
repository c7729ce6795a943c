//! Docker's management-command forms (`image ls`, `container rm`, `system events`):
//! each is the top-level verb it names, made from one table. The parser, the help,
//! the completions and the man pages all get them from [`augment`]; [`rewrite`]
//! turns a command line that uses one into the top-level verb's.

use std::ffi::{OsStr, OsString};

/// One verb under a management command: the top-level verb it is, the arguments that
/// narrow it (`image inspect` is `inspect --type image`), and Docker's other spellings.
struct Alias {
    verb: &'static str,
    is: &'static str,
    with: &'static [&'static str],
    also: &'static [&'static str],
}

const fn alias(verb: &'static str, is: &'static str) -> Alias {
    Alias { verb, is, with: &[], also: &[] }
}

/// Docker 28's verbs under `image`, less `prune` (a subcommand of its own here).
const IMAGE: &[Alias] = &[
    alias("build", "build"),
    alias("history", "history"),
    alias("import", "import"),
    Alias { verb: "inspect", is: "inspect", with: &["--type", "image"], also: &[] },
    alias("load", "load"),
    Alias { verb: "ls", is: "images", with: &[], also: &["list"] },
    alias("pull", "pull"),
    alias("push", "push"),
    Alias { verb: "rm", is: "rmi", with: &[], also: &["remove"] },
    alias("save", "save"),
    alias("tag", "tag"),
];

/// Docker 28's verbs under `container` that exist here, less `prune`.
const CONTAINER: &[Alias] = &[
    alias("attach", "attach"),
    alias("commit", "commit"),
    alias("cp", "cp"),
    alias("create", "create"),
    alias("diff", "diff"),
    alias("exec", "exec"),
    alias("export", "export"),
    Alias { verb: "inspect", is: "inspect", with: &["--type", "container"], also: &[] },
    alias("kill", "kill"),
    alias("logs", "logs"),
    Alias { verb: "ls", is: "ps", with: &[], also: &["list", "ps"] },
    alias("pause", "pause"),
    alias("port", "port"),
    alias("rename", "rename"),
    alias("restart", "restart"),
    Alias { verb: "rm", is: "rm", with: &[], also: &["remove"] },
    alias("run", "run"),
    alias("start", "start"),
    alias("stats", "stats"),
    alias("stop", "stop"),
    alias("top", "top"),
    alias("unpause", "unpause"),
    alias("wait", "wait"),
];

/// `builder build` (`builder prune` is a subcommand of its own).
const BUILDER: &[Alias] = &[alias("build", "build")];

/// `system events` (`system df`, `info` and `prune` are subcommands of their own).
const SYSTEM: &[Alias] = &[alias("events", "events")];

/// Each management command and its aliased verbs.
const MANAGEMENT: &[(&str, &[Alias])] =
    &[("image", IMAGE), ("container", CONTAINER), ("builder", BUILDER), ("system", SYSTEM)];

/// The command line with each management command's aliased verbs added, as copies of
/// the top-level verbs (their flags, help and completions) under the new name.
pub fn augment(mut cli: clap::Command) -> clap::Command {
    for (group, aliases) in MANAGEMENT {
        let verbs: Vec<clap::Command> = aliases
            .iter()
            .filter_map(|a| {
                let top = cli.find_subcommand(a.is)?.clone();
                Some(top.name(a.verb).visible_aliases(a.also.iter().copied()))
            })
            .collect();
        if cli.find_subcommand(group).is_some() {
            cli = cli.mut_subcommand(group, |g| g.subcommands(verbs));
        }
    }
    cli
}

/// Where a command line's verb is, past the global options before it (`--root DIR`).
fn verb_index(cli: &clap::Command, args: &[OsString], from: usize) -> Option<usize> {
    let globals: Vec<&str> = cli.get_arguments().filter(|a| a.is_global_set()).filter_map(|a| a.get_long()).collect();
    let mut i = from;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        let Some(long) = arg.strip_prefix("--") else { return Some(i) };
        let (name, joined) = long.split_once('=').map_or((long, false), |(n, _)| (n, true));
        if !globals.contains(&name) {
            return Some(i);
        }
        i += if joined { 1 } else { 2 };
    }
    None
}

/// Whether the command line's verb is one of the management commands with aliases.
pub fn uses_management(cli: &clap::Command, args: &[OsString]) -> bool {
    verb_index(cli, args, 1)
        .and_then(|i| args[i].to_str())
        .is_some_and(|verb| MANAGEMENT.iter().any(|(group, _)| *group == verb))
}

/// The command line with a management command's aliased verb replaced by the
/// top-level verb it is (`image ls -q` → `images -q`), or `None` when it uses none.
pub fn rewrite(cli: &clap::Command, args: &[OsString]) -> Option<Vec<OsString>> {
    let group_at = verb_index(cli, args, 1)?;
    let (_, aliases) = MANAGEMENT.iter().find(|(group, _)| OsStr::new(group) == args[group_at])?;
    let verb_at = verb_index(cli, args, group_at + 1)?;
    let verb = args[verb_at].to_str()?;
    let alias = aliases.iter().find(|a| a.verb == verb || a.also.contains(&verb))?;
    let mut out = Vec::with_capacity(args.len() + alias.with.len());
    out.extend(args[..group_at].iter().cloned());
    out.extend(args[group_at + 1..verb_at].iter().cloned());
    out.push(alias.is.into());
    out.extend(alias.with.iter().map(OsString::from));
    out.extend(args[verb_at + 1..].iter().cloned());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("layers")
            .arg(clap::Arg::new("root").long("root").global(true))
            .subcommand(clap::Command::new("images"))
            .subcommand(clap::Command::new("inspect"))
            .subcommand(clap::Command::new("image").subcommand(clap::Command::new("prune")))
    }

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn an_alias_becomes_its_top_level_verb_past_global_options() {
        let c = cli();
        assert_eq!(rewrite(&c, &args("layers image ls -q")), Some(args("layers images -q")));
        assert_eq!(rewrite(&c, &args("layers --root /r image list")), Some(args("layers --root /r images")));
        assert_eq!(rewrite(&c, &args("layers image --root=/r ls")), Some(args("layers --root=/r images")));
        assert_eq!(
            rewrite(&c, &args("layers image inspect busybox")),
            Some(args("layers inspect --type image busybox"))
        );
        // Not an alias: the management command's own verb, or no management command.
        assert_eq!(rewrite(&c, &args("layers image prune")), None);
        assert_eq!(rewrite(&c, &args("layers images")), None);
        assert_eq!(rewrite(&c, &args("layers --root image images")), None);
    }

    #[test]
    fn augment_adds_only_verbs_that_exist() {
        let c = augment(cli());
        let image = c.find_subcommand("image").expect("image");
        let names: Vec<&str> = image.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(names, ["prune", "inspect", "ls"]);
        assert!(image.find_subcommand("list").is_some(), "Docker's other spelling");
    }
}
