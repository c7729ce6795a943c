//! `layers images`, `tag`, `rmi`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::images::catalog::Removed;
use layers_store::{Reference, ShortNames, Store};

use crate::format;
use crate::template;

// Arguments of `layers images`.
#[derive(Args)]
pub struct ImagesArgs {
    /// `table` (default), `json` (one object a line), or a Go template (`{{.Repository}}:{{.Tag}}`).
    #[arg(long)]
    format: Option<String>,
    /// Show manifest digests.
    #[arg(long)]
    digests: bool,
    /// Show only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show the unnamed images of build steps too.
    #[arg(short, long)]
    all: bool,
    /// Full image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Only images matching: reference=PATTERN, dangling=true|false, label=KEY[=VALUE], before=IMAGE, since=IMAGE.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Only this repository (all its tags), or this REPOSITORY:TAG.
    repository: Option<String>,
}

// Arguments of `layers tag`.
#[derive(Args)]
pub struct TagArgs {
    /// Existing image.
    source: String,
    /// New name (short names go under localhost/).
    target: String,
}

// Arguments of `layers rmi`.
#[derive(Args)]
pub struct RmiArgs {
    /// Image names or IDs.
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove every name of an image given by ID; only untag images used by containers.
    #[arg(short, long)]
    force: bool,
}

fn split_tag(full: &str) -> (&str, &str) {
    match full.rfind(':') {
        Some(i) if !full[i..].contains('/') => (&full[..i], &full[i + 1..]),
        _ => (full, "<none>"),
    }
}

pub fn images(store: &Store, a: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let filters = ImageFilters::parse(store, &a.filter)?;
    let only = match a.repository.as_deref() {
        Some(r) => {
            let mut parsed = Reference::parse(r, ShortNames::Local)?;
            // Parsing says `latest` when no tag was given: then every tag is meant.
            if !r.rsplit('/').next().is_some_and(|last| last.contains(':')) {
                parsed.tag = None;
            }
            Some(parsed)
        }
        None => None,
    };
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for i in store.images().list()? {
        // As Docker: a build's intermediate images show with -a only.
        if !a.all && i.tags.is_empty() && store.build_cache().is_step_image(&i.manifest)? {
            continue;
        }
        if !filters.matches(store, &i) {
            continue;
        }
        let names: Vec<(String, String)> = if i.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.tags.iter().map(|t| split_tag(t)).map(|(r, t)| (r.to_string(), t.to_string())).collect()
        };
        let id = if a.no_trunc { i.config.to_string() } else { i.config.short() };
        let mut listed = false;
        for (repo, tag) in names {
            if !filters.reference_matches(&repo, &tag) || !repository_matches(only.as_ref(), &repo, &tag) {
                continue;
            }
            listed = true;
            rows.push(serde_json::json!({
                "ID": id,
                // Docker's familiar form: `busybox`, not `docker.io/library/busybox`.
                "Repository": layers_store::familiar(&repo),
                "Tag": tag,
                "Digest": i.manifest.to_string(),
                // Docker's images print Go's time.String here (history, RFC 3339).
                "CreatedAt": layers_store::images::oci::parse_rfc3339(&i.created).map_or_else(|| i.created.clone(), format::go_time),
                "CreatedSince": format::ago(&i.created),
                "Size": format::size(i.size),
                "VirtualSize": format::size(i.size),
                "Containers": "N/A",
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
            }));
        }
        if listed && !ids.contains(&id) {
            ids.push(id);
        }
    }
    if a.quiet {
        for id in ids {
            outln!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let digest = if a.digests { "\t{{.Digest}}" } else { "" };
    let columns =
        format!("{{{{.Repository}}}}\t{{{{.Tag}}}}{digest}\t{{{{.ID}}}}\t{{{{.CreatedSince}}}}\t{{{{.Size}}}}");
    outln!("{}", template::listing(a.format.as_deref(), &columns, IMAGE_HEADERS, &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// Column titles of `images` fields, for `table` templates.
const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Size", "SIZE"),
    ("VirtualSize", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
];

/// `images REPOSITORY[:TAG]`: a repository given by any of its names (`busybox`,
/// `docker.io/library/busybox`), and the tag if one was given.
fn repository_matches(only: Option<&Reference>, repo: &str, tag: &str) -> bool {
    let Some(want) = only else { return true };
    let tag_ok = want.tag.as_deref().is_none_or(|t| t == tag);
    let same = |short: ShortNames| Reference::parse(repo, short).is_ok_and(|r| r.name() == want.name());
    tag_ok
        && (same(ShortNames::Local) || same(ShortNames::DockerHub) || {
            // A short name given for an image pulled from Docker Hub.
            let hub = Reference::parse(&want.repository, ShortNames::DockerHub);
            want.registry == "localhost" && hub.is_ok_and(|h| h.name() == repo)
        })
}

/// `images --filter`s: the same key twice matches either, different keys all.
struct ImageFilters {
    references: Vec<String>,
    dangling: Option<bool>,
    labels: Vec<String>,
    before: Option<i64>,
    since: Option<i64>,
}

impl ImageFilters {
    fn parse(store: &Store, filters: &[String]) -> anyhow::Result<ImageFilters> {
        let mut f =
            ImageFilters { references: Vec::new(), dangling: None, labels: Vec::new(), before: None, since: None };
        let created = |name: &str| -> anyhow::Result<i64> {
            let img = store.images().resolve(name)?;
            layers_store::images::oci::parse_rfc3339(&img.created).with_context(|| format!("{name}: no creation time"))
        };
        for spec in filters {
            let Some((k, v)) = spec.split_once('=') else { bail!("--filter {spec}: want KEY=VALUE") };
            match k {
                "reference" => f.references.push(v.to_string()),
                "dangling" => {
                    f.dangling = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("--filter {spec}: dangling is true or false"),
                    })
                }
                "label" => f.labels.push(v.to_string()),
                "before" => f.before = Some(created(v).with_context(|| format!("--filter {spec}"))?),
                "since" => f.since = Some(created(v).with_context(|| format!("--filter {spec}"))?),
                _ => bail!("--filter {spec}: invalid filter {k:?} (reference, dangling, label, before, since)"),
            }
        }
        Ok(f)
    }

    fn matches(&self, store: &Store, i: &layers_store::meta::ImageRow) -> bool {
        if self.dangling.is_some_and(|d| d != i.tags.is_empty()) {
            return false;
        }
        let t = layers_store::images::oci::parse_rfc3339(&i.created).unwrap_or(0);
        if self.before.is_some_and(|b| t >= b) || self.since.is_some_and(|s| t <= s) {
            return false;
        }
        if self.labels.is_empty() {
            return true;
        }
        let labels = store.images().config(i).ok().and_then(|c| c.config).and_then(|c| c.labels).unwrap_or_default();
        self.labels.iter().any(|l| super::options::label_matches(&labels, l))
    }

    /// `reference=PATTERN` against `REPO:TAG` and `REPO`, by the full name or the
    /// short one Docker shows (`busybox` for `docker.io/library/busybox`).
    fn reference_matches(&self, repo: &str, tag: &str) -> bool {
        if self.references.is_empty() {
            return true;
        }
        let short = layers_store::familiar(repo);
        let short = short.as_str();
        self.references.iter().any(|p| [repo, short].iter().any(|r| glob(p, r) || glob(p, &format!("{r}:{tag}"))))
    }
}

/// Go's `path.Match`: `*` (not across `/`), `?`, `[...]` classes, `\` escapes; linear
/// in the pattern times the name, never exponential.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // reach[j]: the name's first j characters are matched by the pattern so far.
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; n.len() + 1];
        match p[i] {
            '*' => {
                for j in 0..=n.len() {
                    if reach[j] || (j > 0 && next[j - 1] && n[j - 1] != '/') {
                        next[j] = true;
                    }
                }
                i += 1;
            }
            c => {
                // One character: literal, `?`, or a class.
                let (test, width): (Box<dyn Fn(char) -> bool>, usize) = match c {
                    '?' => (Box::new(|x: char| x != '/'), 1),
                    '\\' if i + 1 < p.len() => {
                        let lit = p[i + 1];
                        (Box::new(move |x: char| x == lit), 2)
                    }
                    '[' => match p[i + 1..].iter().position(|&x| x == ']') {
                        Some(end) => {
                            let class: Vec<char> = p[i + 1..i + 1 + end].to_vec();
                            (Box::new(move |x: char| class_matches(&class, x)), end + 2)
                        }
                        None => return false,
                    },
                    lit => (Box::new(move |x: char| x == lit), 1),
                };
                for j in 0..n.len() {
                    if reach[j] && test(n[j]) {
                        next[j + 1] = true;
                    }
                }
                i += width;
            }
        }
        reach = next;
    }
    reach[n.len()]
}

fn class_matches(class: &[char], x: char) -> bool {
    let (negate, class) = match class.first() {
        Some('^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut hit = false;
    let mut k = 0;
    while k < class.len() {
        if k + 2 < class.len() && class[k + 1] == '-' {
            hit |= class[k] <= x && x <= class[k + 2];
            k += 3;
        } else {
            hit |= class[k] == x;
            k += 1;
        }
    }
    hit != negate
}

/// An image as listings name it: its first name in Docker's familiar form, else its short ID.
pub fn shown_name(tags: &[String], config: &layers_store::Digest) -> String {
    tags.first().map(|t| layers_store::familiar(t)).unwrap_or_else(|| config.short())
}

/// The stored image `manifest` as listings name it ([`shown_name`]), or its short
/// manifest digest when it is no longer stored.
pub fn shown_name_of(store: &Store, manifest: &layers_store::Digest) -> String {
    match store.images().get(manifest) {
        Ok(Some(img)) => shown_name(&img.tags, &img.config),
        _ => manifest.short(),
    }
}

/// Prints left-aligned columns separated by three spaces, as Docker does.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let s: String = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.to_string() } else { format!("{c:<w$}   ", w = widths[i]) })
            .collect();
        outln!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn tag(store: &Store, a: &TagArgs) -> anyhow::Result<ExitCode> {
    let img = store.images().resolve(&a.source)?;
    let target = Reference::parse(&a.target, ShortNames::Local)?;
    let name = target.tagged_name().with_context(|| format!("tag {}: a tag cannot be a digest", a.target))?;
    store.images().tag(&img.manifest, &name)?;
    crate::events::tagged(store, &img, &name);
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(store: &Store, a: &RmiArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.images, |name| {
        let img = store.images().resolve(name)?;
        let removed = store.images().remove(name, a.force)?;
        crate::events::image_removed(store, &img, &removed);
        for r in removed {
            match r {
                Removed::Untagged(t) => outln!("Untagged: {t}"),
                Removed::Deleted(d) => outln!("Deleted: {d}"),
            }
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_matches_as_gos_path_match() {
        use super::glob;
        assert!(glob("busy*", "busybox"));
        assert!(glob("*box:1.*", "busybox:1.36"));
        assert!(!glob("*", "a/b"), "* stops at /");
        assert!(glob("*/*", "a/b"));
        assert!(glob("b?sy[a-z]ox", "busybox") && !glob("b?sy[^a-z]ox", "busybox"));
        assert!(glob("a\\*", "a*") && !glob("a\\*", "ab"));
        assert!(!glob("[a", "a"));
        // Many stars: still quick.
        assert!(!glob(&"*a".repeat(200), &"a".repeat(150)));
    }
}
