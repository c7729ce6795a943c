//! `layers events`: what the store's event log (`events.rs`) records, printed and
//! followed as Docker's `docker events` prints them: its `--since`, `--until`,
//! `--filter` and `--format`, its line and its JSON message.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::Store;
use serde_json::{json, Value};

use crate::events::{self, Event};
use crate::json_lines::Follower;
use crate::template::{self, Format};

/// How often a follower looks for new events.
const POLL: Duration = Duration::from_millis(100);

// Arguments of `layers events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Show events from this time on: RFC 3339, Unix seconds, or a duration before now (`10m`).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms); with neither, events are followed from now on.
    #[arg(long)]
    until: Option<String>,
    /// Only events matching: type=, event=, container=, image=, label=, scope=local.
    #[arg(short, long)]
    filter: Vec<String>,
    /// `json`, or a Go template over Docker's event message (`{{.Action}}`, `{{json .}}`).
    #[arg(long)]
    format: Option<String>,
}

/// The filter keys Docker's events take that concern what this store never records.
const NOT_RECORDED: &[&str] = &["config", "daemon", "network", "node", "plugin", "secret", "service", "volume"];

/// `--filter`s, as Docker applies them: values of one key are alternatives, keys all
/// have to match.
#[derive(Default, Debug)]
struct Filters {
    types: Vec<String>,
    events: Vec<String>,
    containers: Vec<String>,
    images: Vec<String>,
    labels: Vec<String>,
}

impl Filters {
    fn parse(given: &[String]) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        for g in given {
            let Some((key, value)) = g.split_once('=') else {
                bail!("--filter {g}: give KEY=VALUE (keys: type, event, container, image, label, scope)")
            };
            match key {
                "type" if matches!(value, "container" | "image") => f.types.push(value.into()),
                "type" => bail!("--filter {g}: this store records container and image events only"),
                "event" => f.events.push(value.into()),
                "container" => f.containers.push(value.into()),
                "image" => f.images.push(value.into()),
                "label" => f.labels.push(value.into()),
                "scope" if value == "local" => {}
                "scope" => bail!("--filter {g}: every event here is local (no swarm)"),
                k if NOT_RECORDED.contains(&k) => bail!("--filter {g}: this store records no {k} events"),
                _ => bail!(
                    "--filter {g}: invalid filter '{key}' (events takes type, event, container, image, label, scope)"
                ),
            }
        }
        Ok(f)
    }

    fn matches(&self, e: &Event) -> bool {
        let exact = |set: &[String], v: &str| set.is_empty() || set.iter().any(|s| s == v);
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str).unwrap_or("");
        // A container filter matches an ID or name by prefix, and only containers' events.
        let container = self.containers.is_empty()
            || (e.actor.kind == events::Type::Container
                && self
                    .containers
                    .iter()
                    .any(|p| e.actor.id.starts_with(p.as_str()) || attr("name").starts_with(p.as_str())));
        // An image filter: an image event's ID or name, a container event's image; with
        // or without the tag.
        let image_name = attr(if e.actor.kind == events::Type::Image { "name" } else { "image" });
        let image = self.images.is_empty()
            || [e.actor.id.as_str(), image_name]
                .iter()
                .any(|v| self.images.iter().any(|i| i == v || i == strip_tag(v)));
        let labels = self.labels.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => e.actor.attributes.get(k).is_some_and(|x| x == v),
            None => e.actor.attributes.contains_key(l),
        });
        exact(&self.types, e.actor.kind.name()) && exact(&self.events, &e.action) && container && image && labels
    }
}

/// `busybox` for `busybox:1`, a name with a digest or none as it is.
fn strip_tag(name: &str) -> &str {
    if name.contains('@') {
        return name;
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

pub fn events(store: &Store, a: &EventsArgs) -> anyhow::Result<ExitCode> {
    let now = crate::run::log::now_nanos();
    let time = |flag: &str, t: &str| -> anyhow::Result<i64> {
        let n = crate::run::log::parse_since(t, now).with_context(|| format!("{flag} {t}"))?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    };
    let since = a.since.as_deref().map(|t| time("--since", t)).transpose()?;
    let until = a.until.as_deref().map(|t| time("--until", t)).transpose()?;
    let filters = Filters::parse(&a.filter)?;
    let format = Format::parse_raw(a.format.as_deref());
    if let Format::Template { text, .. } = &format {
        template::Template::parse(text).map_err(|e| anyhow::anyhow!("--format {text:?}: {e}"))?;
    }
    let wanted =
        |e: &Event| since.is_none_or(|s| e.time >= s) && until.is_none_or(|u| e.time <= u) && filters.matches(e);
    let show = |e: &Event| -> anyhow::Result<()> {
        if wanted(e) {
            outln!("{}", shown(&format, e)?);
        }
        Ok(())
    };
    let files = events::files(store.root());
    // With neither bound only new events are shown, as Docker's.
    let mut follower = if since.is_some() || until.is_some() {
        Follower::after_reading(&files, |e: Event| show(&e))
    } else {
        Follower::at_end(&files[1])
    }
    .context("events: the event log")?;
    let now = events::now_nanos();
    if until.is_some_and(|u| u <= now) {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(POLL);
        follower.poll(|e: Event| show(&e)).context("events: the event log")?;
        if until.is_some_and(|u| u <= events::now_nanos()) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// One event as `--format` says; by default Docker's line:
/// `2026-12-07T10:00:00.000000000Z container create ID (image=busybox, name=x)`.
fn shown(format: &Format, e: &Event) -> anyhow::Result<String> {
    match format {
        Format::Table => {
            let mut line =
                format!("{} {} {} {}", crate::format::rfc3339_nanos(e.time), e.actor.kind.name(), e.action, e.actor.id);
            if !e.actor.attributes.is_empty() {
                let attrs: Vec<String> = e.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                line.push_str(&format!(" ({})", attrs.join(", ")));
            }
            Ok(crate::format::printable(&line).into_owned())
        }
        f => Ok(template::render(f, &[], &[message(e)])?.trim_end_matches('\n').to_string()),
    }
}

/// Docker's event message: the fields a template reads (Go's names), and under
/// `json()` the JSON Docker sends (its lower-case legacy fields kept).
fn message(e: &Event) -> Value {
    let attributes: BTreeMap<&str, &str> = e.actor.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let actor = json!({ "ID": e.actor.id, "Attributes": attributes });
    let secs = e.time.div_euclid(1_000_000_000);
    // Docker fills the legacy `status`, `id` and `from` for containers and images.
    let from = if e.actor.kind == events::Type::Container { e.actor.attributes.get("image").cloned() } else { None };
    let mut wire = json!({
        "status": e.action,
        "id": e.actor.id,
        "Type": e.actor.kind.name(),
        "Action": e.action,
        "Actor": actor,
        "scope": "local",
        "time": secs,
        "timeNano": e.time,
    });
    if let Some(from) = &from {
        wire["from"] = json!(from);
    }
    json!({
        "Status": e.action,
        "ID": e.actor.id,
        "From": from.unwrap_or_default(),
        "Type": e.actor.kind.name(),
        "Action": e.action,
        "Actor": actor,
        "Scope": "local",
        "Time": secs,
        "TimeNano": e.time,
        "json()": wire,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container_event(action: &str, name: &str, image: &str) -> Event {
        let attributes = [("name", name), ("image", image), ("tier", "web")];
        let attributes = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let actor = events::Actor { kind: events::Type::Container, id: "abc123".into(), attributes };
        Event { time: 1, action: action.into(), actor }
    }

    fn filters(f: &[&str]) -> Filters {
        Filters::parse(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn filters_match_as_dockers() {
        let start = container_event("start", "web-1", "busybox:1");
        let tag = Event { time: 1, action: "tag".into(), actor: events::Actor::image("sha256:ff", "busybox:1") };
        // Values of one key are alternatives; keys all have to match.
        assert!(filters(&["event=die", "event=start"]).matches(&start));
        assert!(!filters(&["event=start", "type=image"]).matches(&start));
        // container=: ID or name by prefix, containers' events only.
        assert!(filters(&["container=web"]).matches(&start));
        assert!(filters(&["container=abc"]).matches(&start));
        assert!(!filters(&["container=eb"]).matches(&start));
        assert!(!filters(&["container=sha"]).matches(&tag));
        // image=: exact, with or without the tag; a container's image or an image's name.
        for f in ["image=busybox", "image=busybox:1"] {
            assert!(filters(&[f]).matches(&start), "{f}");
            assert!(filters(&[f]).matches(&tag), "{f}");
        }
        assert!(filters(&["image=sha256:ff"]).matches(&tag));
        assert!(!filters(&["image=busy"]).matches(&start));
        // label=: every one given must be there.
        assert!(filters(&["label=tier", "label=tier=web"]).matches(&start));
        assert!(!filters(&["label=tier=db"]).matches(&start));
        assert!(!filters(&["label=tier", "label=other"]).matches(&start));
    }

    #[test]
    fn filters_refuse_what_is_not_recorded() {
        for (f, says) in [
            ("type=volume", "container and image events only"),
            ("volume=v1", "records no volume events"),
            ("scope=swarm", "local"),
            ("colour=red", "invalid filter 'colour'"),
            ("event", "KEY=VALUE"),
        ] {
            let e = Filters::parse(&[f.to_string()]).unwrap_err().to_string();
            assert!(e.contains(says), "{f}: {e}");
        }
    }

    #[test]
    fn the_default_line_is_dockers() {
        let mut e = container_event("die", "web-1", "busybox");
        e.time = 1_700_000_000_000_000_005;
        e.actor.attributes.insert("exitCode".into(), "3".into());
        assert_eq!(
            shown(&Format::Table, &e).unwrap(),
            "2023-11-14T22:13:20.000000005Z container die abc123 (exitCode=3, image=busybox, name=web-1, tier=web)"
        );
    }

    #[test]
    fn json_is_dockers_message_and_templates_read_gos_fields() {
        let e = container_event("start", "web-1", "busybox");
        let json: Value = serde_json::from_str(&shown(&Format::Json, &e).unwrap()).unwrap();
        assert_eq!(json["status"], "start");
        assert_eq!(json["from"], "busybox");
        assert_eq!(json["Actor"]["Attributes"]["name"], "web-1");
        assert_eq!(json["timeNano"], 1);
        assert!(json.get("Status").is_none());
        let t = Format::parse_raw(Some("{{.Status}} {{.Type}} {{.Actor.Attributes.name}} {{.TimeNano}}"));
        assert_eq!(shown(&t, &e).unwrap(), "start container web-1 1");
        let j = Format::parse_raw(Some("{{json .Actor}}"));
        assert_eq!(
            shown(&j, &e).unwrap(),
            r#"{"Attributes":{"image":"busybox","name":"web-1","tier":"web"},"ID":"abc123"}"#
        );
    }
}
