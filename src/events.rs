//! The store's event log, which `layers events` reads (Docker's `docker events`):
//! containers created, started, ended and removed, images pulled, tagged and
//! deleted, each with its time. Docker keeps its last events in the daemon's memory;
//! with no daemon, each `layers` process appends one JSON line per event to
//! `<root>/events.log` with one `write` on an `O_APPEND` file (the kernel keeps
//! concurrent appends whole). Past 1 MiB the file becomes `events.log.1`, so the log
//! holds the last 1-2 MiB: thousands of events, where Docker keeps 256.
//!
//! Recording never fails a command: an event lost to a full disk is only lost.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use layers_store::images::catalog::Removed;
use layers_store::meta::ImageRow;
use layers_store::{ContainerRow, Store};

/// The current file, beneath the store root.
const FILE: &str = "events.log";
/// Size past which the current file is rotated.
const MAX_SIZE: u64 = 1 << 20;
/// Longest line written: an event whose labels make it longer keeps only its own
/// attributes. The reader takes lines up to 64 KiB.
const MAX_LINE: usize = 16 << 10;
/// The attributes an event keeps when its labels are dropped, each cut to this.
const MAX_VALUE: usize = 1024;

/// What an event is about, as Docker's `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    Container,
    Image,
}

impl Type {
    /// Docker's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Type::Container => "container",
            Type::Image => "image",
        }
    }
}

/// What an event happened to, as Docker's `Actor` with the event's `Type`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: Type,
    /// A container's full ID, an image's ID, or the name pulled or pushed.
    pub id: String,
    /// Docker's attributes: `name`, `image`, `exitCode`, labels.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Actor {
    /// Container `c`, made on image `image` (as the user named it) with `labels`,
    /// which Docker puts among the attributes (`name` and `image` win).
    pub fn container(c: &ContainerRow, image: &str, labels: &BTreeMap<String, String>) -> Actor {
        let mut attributes = labels.clone();
        attributes.insert("image".into(), image.into());
        attributes.insert("name".into(), c.name.clone());
        Actor { kind: Type::Container, id: c.id.clone(), attributes }
    }

    /// An image: `id` is its ID (`sha256:…`) or, for `pull` and `push`, the name;
    /// `name` the name the event concerns, as Docker shows it.
    pub fn image(id: &str, name: &str) -> Actor {
        let attributes = BTreeMap::from([("name".to_string(), name.to_string())]);
        Actor { kind: Type::Image, id: id.into(), attributes }
    }

    /// With one more attribute.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Actor {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Appends its event `action`, timed now, to `store`'s log.
    pub fn record(&self, store: &Store, action: &str) {
        record_in(store.root(), &Event { time: now_nanos(), action: action.into(), actor: self.clone() });
    }
}

/// One event, as a line of the log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// Docker's action: `create`, `start`, `die`, `pull`, `tag`, …
    pub action: String,
    #[serde(flatten)]
    pub actor: Actor,
}

impl Event {
    /// The line the log holds for it, at most `MAX_LINE` long.
    fn line(&self) -> Option<Vec<u8>> {
        let mut line = serde_json::to_vec(self).ok()?;
        if line.len() >= MAX_LINE {
            let mut short = self.clone();
            let a = &mut short.actor;
            a.attributes.retain(|k, _| matches!(k.as_str(), "name" | "image" | "exitCode" | "signal" | "oldName"));
            a.attributes.values_mut().chain([&mut a.id]).for_each(cut);
            line = serde_json::to_vec(&short).ok()?;
        }
        line.push(b'\n');
        Some(line)
    }
}

/// Cuts `s` to at most `MAX_VALUE` bytes, on a character boundary.
fn cut(s: &mut String) {
    if s.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Image `img` (its ID the actor's) for an event about `name`, with the image's
/// labels among the attributes, as Docker's.
pub fn of_image(store: &Store, img: &ImageRow, name: &str) -> Actor {
    let labels = store.images().config(img).ok().and_then(|c| c.config).and_then(|c| c.labels);
    let mut a = Actor::image(&img.config.to_string(), name);
    for (k, v) in labels.unwrap_or_default() {
        a.attributes.entry(k).or_insert(v);
    }
    a
}

/// Records that `img` was given the stored name `tag` (`tag`, `build -t`, `commit
/// NAME`), named as Docker shows it.
pub fn tagged(store: &Store, img: &ImageRow, tag: &str) {
    of_image(store, img, &layers_store::familiar(tag)).record(store, "tag");
}

/// Records `action` (`pull`, `push`) of `img` by `reference`: Docker names the
/// actor by the reference, not the ID.
pub fn by_reference(store: &Store, img: &ImageRow, reference: &str, action: &str) {
    let name = layers_store::familiar(reference);
    Actor { id: name.clone(), ..of_image(store, img, &name) }.record(store, action);
}

/// Records what removing `img` did (`rmi`, `image prune`), as Docker's: an `untag`
/// for each name taken away and a `delete` when the image went, each named by the ID.
pub fn image_removed(store: &Store, img: &ImageRow, removed: &[Removed]) {
    let a = of_image(store, img, &img.config.to_string());
    for r in removed {
        a.record(store, if matches!(r, Removed::Untagged(_)) { "untag" } else { "delete" });
    }
}

/// Records the images an eviction (the size budget, `gc --max-size`) deleted.
pub fn evicted<'a>(store: &Store, images: impl IntoIterator<Item = &'a layers_store::gc::budget::Evicted>) {
    for i in images {
        let a = Actor::image(&i.config.to_string(), &i.config.to_string());
        for _ in &i.tags {
            a.record(store, "untag");
        }
        a.record(store, "delete");
    }
}

fn record_in(root: &Path, event: &Event) {
    let Some(line) = event.line() else { return };
    let path = root.join(FILE);
    let Ok(mut f) = OpenOptions::new().create(true).append(true).mode(0o600).open(&path) else { return };
    if f.write_all(&line).is_err() {
        return;
    }
    if f.metadata().is_ok_and(|m| m.len() > MAX_SIZE) {
        rotate(root, &f);
    }
}

/// Moves the current file (`written`, if it is still the current one) to
/// `events.log.1`. Under a lock: two processes past the size at once rotate once,
/// not twice (which would lose the file rotated first).
fn rotate(root: &Path, written: &std::fs::File) {
    let Ok(_lock) = crate::userns::lock_file(&root.join("locks/events.lock")) else { return };
    let path = root.join(FILE);
    let (Ok(ours), Ok(now)) = (written.metadata(), std::fs::metadata(&path)) else { return };
    if ours.ino() == now.ino() && ours.dev() == now.dev() {
        let _ = std::fs::rename(&path, root.join(format!("{FILE}.1")));
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    i64::try_from(crate::run::log::now_nanos()).unwrap_or(i64::MAX)
}

/// The log's files beneath `root`, oldest first: the last is the current one.
pub fn files(root: &Path) -> [PathBuf; 2] {
    [root.join(format!("{FILE}.1")), root.join(FILE)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_lines::{Follower, Reader};

    fn read_all(root: &Path) -> Vec<Event> {
        let mut out = Vec::new();
        for f in files(root) {
            let Some(mut r) = Reader::open(&f).unwrap() else { continue };
            while let Some(e) = r.next::<Event>().unwrap() {
                out.push(e);
            }
        }
        out
    }

    fn numbered(i: usize) -> Event {
        Event { time: i as i64, action: "tag".into(), actor: Actor::image(&format!("sha256:{i:064}"), "x") }
    }

    #[test]
    fn rotation_keeps_the_last_events_in_order_and_a_follower_sees_every_one() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("locks")).unwrap();
        let mut follower = Follower::at_end(&root.path().join(FILE)).unwrap();
        let mut followed = Vec::new();
        let mut keep = |e: Event| {
            followed.push(e);
            Ok(())
        };
        // Each line is about 150 bytes: 20 000 of them rotate the log twice.
        for i in 0..20_000 {
            record_in(root.path(), &numbered(i));
            if i % 997 == 0 {
                follower.poll(&mut keep).unwrap();
            }
        }
        follower.poll(&mut keep).unwrap();
        let times: Vec<i64> = followed.iter().map(|e| e.time).collect();
        assert_eq!(times, (0..20_000).collect::<Vec<i64>>(), "the follower lost or repeated events");

        let kept = read_all(root.path());
        let total: u64 = files(root.path()).iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(total <= 2 * MAX_SIZE + 200, "{total}");
        assert_eq!(kept.last().unwrap().time, 19_999);
        assert!(kept.windows(2).all(|w| w[1].time == w[0].time + 1), "a gap in what is kept");
        assert!(kept.len() > 6_000, "{}", kept.len());
    }

    #[test]
    fn an_event_with_huge_labels_keeps_its_own_attributes() {
        let root = tempfile::tempdir().unwrap();
        let mut e = numbered(1);
        e.actor = e.actor.with("big", "y".repeat(100_000)).with("name", "né".repeat(2500)).with("exitCode", "3");
        record_in(root.path(), &e);
        let kept = read_all(root.path());
        assert_eq!(kept.len(), 1);
        let kept = &kept[0].actor.attributes;
        assert!(!kept.contains_key("big"));
        assert_eq!(kept["exitCode"], "3");
        // Cut on a character boundary: 341 "né" (3 bytes each) and an "n" are 1 KiB.
        assert_eq!(kept["name"], format!("{}n", "né".repeat(341)));
    }
}
