//! Planning a COPY or ADD: where its sources come from, where they go, and its key
//! (which covers the content of what it copies). `ADD` URLs are fetched here,
//! streamed to a staged file, capped and hashed on the way.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use layers_store::content::digest::{Digest, Hasher};
use layers_store::meta::ImageRow;

use super::key::Key;
use super::{Inputs, Scope};
use crate::builder::context;
use crate::builder::frontend::instruction::CopySpec;
use crate::builder::frontend::path::{clean, clean_in_root};
use crate::builder::frontend::pattern::Patterns;
use crate::builder::scratch::ScratchDir;
use layers_store::fsroot::{self, Attrs, Tree};

/// Where a COPY's sources are.
pub enum Source {
    Context,
    /// Here-documents: (name, content after expansion).
    Heredocs(Vec<(String, String)>),
    /// `ADD` URLs, fetched into `Plan::downloads[i]`.
    Downloads(usize),
    /// An earlier stage of the plan.
    Stage(usize),
    /// An image (`COPY --from=IMAGE`).
    Image(ImageRow),
}

/// A planned COPY or ADD.
pub struct CopyStep {
    pub verb: &'static str,
    pub source: Source,
    /// Source paths or globs, expanded.
    pub sources: Vec<String>,
    /// Absolute; a trailing `/` means "into this directory".
    pub dest: String,
    /// `--chown`, expanded; resolved against the image when the step runs.
    pub chown: Option<String>,
    /// `--chmod`.
    pub mode: Option<u32>,
    /// `--exclude` patterns, expanded.
    pub excludes: Vec<String>,
    /// `--parents`: each source keeps its path (below a `/./` pivot) under `dest`.
    pub parents: bool,
    /// `--link`: the files go into a layer of their own, independent of what is below.
    pub link: bool,
}

/// Selects `sources` in `tree` and lays them out under `dest`: Docker's way, or with
/// `parents` keeping each match's path (below a `/./` in its pattern).
pub fn lay_out(
    tree: &Tree,
    sources: &[String],
    dest: &str,
    ignore: &Patterns,
    parents: bool,
) -> anyhow::Result<fsroot::CopyPlan> {
    if !parents {
        let mut selected = Vec::new();
        for s in sources {
            selected.extend(context::select(tree, s, ignore)?);
        }
        return Ok(fsroot::plan(tree, &selected, dest, ignore)?);
    }
    let mut laid = fsroot::CopyPlan::default();
    let base = dest.trim_end_matches('/');
    for s in sources {
        let pivot = s.split_once("/./").map(|(before, _)| clean(before).unwrap_or_default()).unwrap_or_default();
        for rel in context::select(tree, &s.replacen("/./", "/", 1), ignore)? {
            let kept = rel.strip_prefix(&pivot).unwrap_or(&rel);
            // A directory's contents go into its own path; a file into its parent's.
            let into = if tree.is_dir(&rel) { kept } else { kept.parent().unwrap_or(Path::new("")) };
            let d = format!("{base}/{}/", into.display());
            let p = fsroot::plan(tree, std::slice::from_ref(&rel), &d, ignore)?;
            laid.items.extend(p.items);
            laid.tops.extend(p.tops);
        }
    }
    Ok(laid)
}

/// Plans a COPY (`checksum` None) or ADD (`checksum` Some) on `scope`.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    plan_inputs: &Inputs,
    downloads: &mut Vec<ScratchDir>,
    scope: &Scope,
    spec: &CopySpec,
    verb: &'static str,
    checksum: Option<Option<&str>>,
    parent: &Digest,
    from_stage: &dyn Fn(&str) -> Option<(usize, Digest)>,
) -> anyhow::Result<(String, CopyStep, Digest, super::ReadSet)> {
    let dest_raw = scope.expand(&spec.dest)?;
    let joined =
        if dest_raw.starts_with('/') { dest_raw.clone() } else { format!("{}/{dest_raw}", scope.config.working_dir()) };
    let mut dest = format!("/{}", clean_in_root(&joined).display());
    // `.` and a trailing `/` both mean "into this directory".
    if (dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.")) && !dest.ends_with('/') {
        dest.push('/');
    }
    let mode = match &spec.chmod {
        Some(m) => {
            let m = scope.expand(m)?;
            Some(u32::from_str_radix(&m, 8).with_context(|| format!("--chmod={m}: want an octal mode"))?)
        }
        None => None,
    };
    let chown = spec.chown.as_ref().map(|o| scope.expand(o)).transpose()?;
    let excludes: Vec<String> = spec.exclude.iter().map(|e| scope.expand(e)).collect::<anyhow::Result<_>>()?;
    let mut sources: Vec<String> = spec.sources.iter().map(|s| scope.expand(s)).collect::<anyhow::Result<_>>()?;
    let from = spec.from.as_ref().map(|f| scope.expand(f)).transpose()?;
    let urls = sources.iter().filter(|s| s.starts_with("http://") || s.starts_with("https://")).count();
    let checksum = checksum.flatten().map(|c| scope.expand(c)).transpose()?;
    if urls > 0 && urls < sources.len() {
        bail!("ADD: URLs and local sources in one ADD are not supported; split it");
    }
    if urls == 0 && checksum.is_some() {
        bail!("ADD --checksum is for URL sources");
    }
    let flags: String = [("from", &from), ("chown", &chown), ("chmod", &spec.chmod)]
        .iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| format!("--{n}={v} ")))
        .chain(spec.parents.then(|| "--parents ".to_string()))
        .chain(spec.link.then(|| "--link ".to_string()))
        .collect();
    let text = format!("{verb} {flags}{} {dest}", sources.join(" "));
    let attrs = Attrs { mode, ..Attrs::default() };
    let ignore = |base: &Patterns| base.clone().with(&excludes);
    let mut key = Key::new("copy", Some(parent))
        .field("text", &text)
        .field("chown", chown.as_deref().unwrap_or(""))
        .field("chmod", &mode.map(|m| format!("{m:o}")).unwrap_or_default())
        .field("parents", &spec.parents.to_string())
        .field("link", &spec.link.to_string())
        .field("exclude", &excludes.join("\n"));
    // What the step reads, by name: explains a later miss of it.
    let mut inputs: Vec<(String, String)> = Vec::new();
    let source = if urls > 0 {
        let dir = ScratchDir(plan_inputs.store.scratch_dir("build-download")?);
        let want = checksum
            .map(|c| Digest::parse(&c).with_context(|| format!("--checksum={c}: want sha256:<64 hex>")))
            .transpose()?;
        let mut names = Vec::new();
        for url in &sources {
            names.push(download(plan_inputs.transfers, url, dir.path(), want, plan_inputs.max_download)?);
        }
        sources = names;
        let tree = Tree::open(dir.path(), "downloads")?;
        let laid = lay_out(&tree, &sources, &dest, &Patterns::default(), false)?;
        let content = context::content_digest(&tree, &laid, attrs, None)?;
        key = key.field("content", &content.digest.to_string());
        inputs.extend(content.entries.into_iter().map(|(p, d)| (format!("download {p}"), d.to_string())));
        downloads.push(dir);
        Source::Downloads(downloads.len() - 1)
    } else if !spec.heredocs.is_empty() {
        let mut docs = Vec::new();
        for h in &spec.heredocs {
            let content = if h.expand {
                scope.expand(&format!("\"{}\"", h.content.replace('"', "\\\"")))?
            } else {
                h.content.clone()
            };
            key = key.field("heredoc", &h.name).field("content", &content);
            inputs.push((format!("here-document {}", h.name), Digest::of(content.as_bytes()).to_string()));
            docs.push((h.name.clone(), content));
        }
        sources = sources.iter().map(|s| s.trim_start_matches("<<").trim_matches(['"', '\'']).to_string()).collect();
        Source::Heredocs(docs)
    } else if let Some(from) = &from {
        match from_stage(from) {
            Some((i, stage_key)) => {
                key = key.field("from-stage", &stage_key.to_string());
                inputs.push((format!("stage {from}"), stage_key.to_string()));
                Source::Stage(i)
            }
            None => {
                let why = format!("COPY --from={from}: pulling {from}");
                let row = (plan_inputs.base)(from, None, &why).with_context(|| format!("--from={from}"))?;
                key = key.field("from-image", &row.manifest.to_string());
                inputs.push((format!("image {from}"), row.manifest.to_string()));
                Source::Image(row)
            }
        }
    } else {
        let tree = plan_inputs.context_tree;
        let laid = lay_out(tree, &sources, &dest, &ignore(&plan_inputs.ignore), spec.parents)?;
        let content = context::content_digest(tree, &laid, attrs, Some(plan_inputs.store))?;
        key = key.field("content", &content.digest.to_string());
        inputs.extend(content.entries.into_iter().map(|(p, d)| (p, d.to_string())));
        Source::Context
    };
    let step = CopyStep { verb, source, sources, dest, chown, mode, excludes, parents: spec.parents, link: spec.link };
    Ok((text, step, key.finish(), inputs))
}

/// Fetches `url` into `dir` under its last path component (mode 0600, as BuildKit
/// gives it), streamed: at most `max` bytes, hashed on the way, `want` enforced.
fn download(
    transfers: &crate::transfer::Transfers,
    url: &str,
    dir: &Path,
    want: Option<Digest>,
    max: u64,
) -> anyhow::Result<String> {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .find(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or("index.html")
        .to_string();
    let path = dir.join(&name);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stall = crate::registry::stall_timeout();
    let client = reqwest::Client::builder()
        .user_agent(concat!("layers/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(stall)
        .build()?;
    let got = transfers
        .block_on(async {
            // The same pace rules as a pull: headers within one window, then at least
            // $LAYERS_MIN_RATE bytes a second over each window.
            let sent = tokio::time::timeout(stall, client.get(url).send())
                .await
                .map_err(|_| anyhow::anyhow!("no response within {}s ($LAYERS_STALL_TIMEOUT)", stall.as_secs()))?;
            let mut resp = sent?.error_for_status()?;
            if resp.status().is_redirection() {
                // reqwest follows http(s) Locations only (10 at most) and hands back a
                // redirect to any other scheme: `file:`, `data:`, `http+unix:` are
                // errors here, as BuildKit's, not the empty body of a 3xx as the file.
                let to = resp.headers().get("location").map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
                bail!(
                    "redirected to {}: only http and https redirects are followed",
                    to.unwrap_or_default().escape_debug()
                );
            }
            if !resp.status().is_success() {
                bail!("answered {}, not a file", resp.status());
            }
            let mut pace = crate::registry::rate::RateGuard::new();
            if let Some(len) = resp.content_length().filter(|l| *l > max) {
                bail!("{len} bytes is over the {max} byte limit (--max-layer-size)");
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("create {}", path.display()))?;
            let (mut hasher, mut size) = (Hasher::new(), 0u64);
            loop {
                let next = tokio::time::timeout(stall, resp.chunk())
                    .await
                    .map_err(|_| anyhow::anyhow!("stalled for {}s ($LAYERS_STALL_TIMEOUT)", stall.as_secs()))?;
                let Some(chunk) = next? else { break };
                pace.check(chunk.len()).map_err(anyhow::Error::msg)?;
                size += chunk.len() as u64;
                if size > max {
                    bail!("more than the {max} byte limit (--max-layer-size)");
                }
                hasher.update(&chunk);
                file.write_all(&chunk)?;
            }
            anyhow::Ok(hasher.finish())
        })
        .and_then(|r| r)
        .with_context(|| format!("ADD {url}"))?;
    if let Some(w) = want.filter(|w| *w != got) {
        bail!("ADD {url}: checksum mismatch: want {w}, got {got}");
    }
    Ok(name)
}
