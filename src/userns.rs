//! Rootless: a user who is not root works in a user namespace of its own, where it
//! is root over its own ID and its subordinate range, as `podman unshare` does.
//!
//! One namespace per user, kept alive by a pause process (`layers-pause`, started by
//! the first command that needs it, as Podman's pause process): every later command
//! joins it with two `setns` calls instead of making a namespace and running
//! `newuidmap`/`newgidmap` again, and a `layers mount` made by one command stays
//! visible to the next (both are in the pause process's mount namespace).
//!
//! The map is container ID 0 → the user, 1…N → the subordinate range in
//! `/etc/subuid`/`/etc/subgid` (N up to 65536), set by the setuid `newuidmap` and
//! `newgidmap` (package `uidmap`): nothing of `layers` runs with more privilege than
//! the user's. Without a range or without those programs, only the user's own ID is
//! mapped (a warning says how to fix it): files that images give other owners are
//! then the user's.
//!
//! A pause process that was killed while containers run is replaced by one that joins
//! the namespace those containers' processes still hold (as Podman rejoins through a
//! container's conmon): a fresh namespace could not reach them (`exec`, `stop`).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// How many subordinate IDs a namespace maps at most (container IDs 1…65536).
const MAX_SUBORDINATE: u64 = 65536;

/// The pause process's name, as `ps` and `/proc/PID/comm` show it.
const PAUSE_NAME: &str = "layers-pause";

/// The subordinate ID map of a user (`/etc/subuid` or `/etc/subgid`): its first range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First host ID of the range.
    pub start: u64,
    /// How many (at most [`MAX_SUBORDINATE`] are used).
    pub count: u64,
}

/// The first range `file`'s text gives the user `name` (or its numeric `id`), as
/// shadow-utils reads it: `NAME:START:COUNT` lines, `#` comments.
pub fn subordinate_range(text: &str, name: &str, id: u32) -> Option<Range> {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        let range = Range { start: start.parse().ok()?, count: count.parse().ok()? };
        (range.count > 0).then_some(range)
    })
}

/// What to map, decided before the namespace is made.
enum Plan {
    /// `newuidmap`/`newgidmap` with these ranges.
    Subordinate { uids: Range, gids: Range, newuidmap: PathBuf, newgidmap: PathBuf },
    /// Only the user's own IDs, for this reason (the warning names the fix).
    Single { why: String },
}

/// Set once this process has joined the user's namespace from outside it.
static JOINED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process came into the user's namespace from outside it (its caller
/// does not see the mounts it makes there).
pub fn joined() -> bool {
    JOINED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Enters this user's namespace (making it and its pause process first if there is
/// none): a no-op for root and for a process already inside one. Must run while the
/// process has one thread (`setns` into a user namespace requires it).
pub fn enter() -> anyhow::Result<()> {
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    // Read, not remembered: the remembered answer must be the one after joining.
    if uid == 0 || !layers_store::layer::encoding::read_in_initial_user_namespace() {
        return Ok(());
    }
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    if threads != 1 {
        bail!("enter user namespace: layers has {threads} threads; it enters from one");
    }
    let dir = runtime_dir(uid)?;
    let lock = lock_file(&dir.join("pause.lock"))?;
    // The namespaces are opened under the lock: a pause process that died since its
    // check (killed, or a zombie not reaped yet) is replaced, not joined.
    let recorded = Recorded::read(&dir.join("pause.pid"));
    let namespaces = match recorded.as_ref().and_then(|r| running_pause(r, uid)).and_then(|pid| namespaces_of(pid).ok())
    {
        Some(ns) => ns,
        None => {
            // A member that exits before it is joined: a fresh namespace, as if none survived.
            let rejoined = recorded.and_then(|r| r.surviving_member()).map(|m| start_pause(uid, gid, Some(m)));
            let pid = match rejoined {
                Some(Ok(pid)) => pid,
                _ => start_pause(uid, gid, None)?,
            };
            write_pid(&dir, pid)?;
            namespaces_of(pid)?
        }
    };
    drop(lock);
    join(namespaces)?;
    JOINED.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(warning) = single_id_warning(uid, gid) {
        eprintln!("layers: warning: {warning}");
    }
    Ok(())
}

/// `$XDG_RUNTIME_DIR/layers`, or `/tmp/layers-UID` where there is no runtime dir
/// (`su`, `runuser`, cron): made 0700 and required to be the user's own.
fn runtime_dir(uid: u32) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("layers"),
        None => PathBuf::from(format!("/tmp/layers-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("make runtime dir {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(&dir).with_context(|| format!("runtime dir {}", dir.display()))?;
    // Another user's dir at that name could hand us its pause process's pid.
    if !meta.is_dir() || meta.uid() != uid {
        bail!("runtime dir {}: not a directory of this user (uid {uid}); remove it", dir.display());
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make runtime dir {} private", dir.display()))?;
    }
    Ok(dir)
}

/// Opens (making it if needed) the lock file `path` and waits for it, exclusively.
pub(crate) fn lock_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    f.lock().with_context(|| format!("lock {}", path.display()))?;
    Ok(f)
}

/// What `pause.pid` records: the pause process and the namespaces it held.
struct Recorded {
    pid: u32,
    /// `/proc/PID/ns/user` and `ns/mnt` as read when it started (`user:[INODE]`).
    namespaces: Option<(String, String)>,
}

impl Recorded {
    fn read(pidfile: &Path) -> Option<Recorded> {
        let text = std::fs::read_to_string(pidfile).ok()?;
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let namespaces = match (lines.next(), lines.next()) {
            (Some(u), Some(m)) => Some((u.to_string(), m.to_string())),
            _ => None,
        };
        Some(Recorded { pid, namespaces })
    }

    /// A live process still in the recorded user and mount namespaces (a detached
    /// container's monitor), found by reading `/proc`; only when the pause process is gone.
    fn surviving_member(&self) -> Option<u32> {
        let (user, mnt) = self.namespaces.as_ref()?;
        let procs = std::fs::read_dir("/proc").ok()?;
        procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
            let ns = |n: &str| std::fs::read_link(format!("/proc/{pid}/ns/{n}")).ok();
            ns("user").is_some_and(|l| l.as_os_str() == user.as_str())
                && ns("mnt").is_some_and(|l| l.as_os_str() == mnt.as_str())
        })
    }
}

/// The recorded pid if it is this user's live pause process.
fn running_pause(recorded: &Recorded, uid: u32) -> Option<u32> {
    let pid = recorded.pid;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc.join("comm")).ok()?;
    let status = std::fs::read_to_string(proc.join("status")).ok()?;
    // Its real uid as seen from here is ours, and it is in another user namespace.
    let real_uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok();
    let other_ns = std::fs::read_link(proc.join("ns/user")).ok()? != std::fs::read_link("/proc/self/ns/user").ok()?;
    (comm.trim() == PAUSE_NAME && real_uid == Some(uid) && other_ns).then_some(pid)
}

/// Records the pause process and its namespaces (read now, from outside them).
fn write_pid(dir: &Path, pid: u32) -> anyhow::Result<()> {
    let ns = |n: &str| {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{n}"));
        link.with_context(|| format!("read the pause process's {n} namespace"))
    };
    let text = format!("{pid}\n{}\n{}\n", ns("user")?.display(), ns("mnt")?.display());
    let tmp = dir.join(format!("pause.pid.{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("pause.pid")).with_context(|| format!("write {}", dir.display()))
}

/// Starts the pause process (`layers userns-pause`) and returns its pid: it makes a
/// namespace, which is mapped here, or joins that of `member`, a process still in the
/// user's previous one.
fn start_pause(uid: u32, gid: u32, member: Option<u32>) -> anyhow::Result<u32> {
    let plan = plan(uid, gid)?;
    let exe = std::env::current_exe().context("find the layers binary")?;
    let mut child = Command::new(exe)
        .arg("userns-pause")
        .args(member.map(|pid| pid.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start the user namespace's pause process")?;
    let pid = child.id();
    let (Some(mut to), Some(mut from)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("start the user namespace's pause process: no pipe");
    };
    let mut said = [0u8; 8];
    let n = from.read(&mut said).unwrap_or(0);
    match &said[..n] {
        [b'u', ..] => {}
        // Joined: already mapped, and root there.
        [b'j', ..] => {
            std::mem::forget(child);
            return Ok(pid);
        }
        [b'e', rest @ ..] => {
            let _ = child.wait();
            let errno = String::from_utf8_lossy(rest).trim().parse::<i32>().unwrap_or(0);
            bail!("{}", refused(errno));
        }
        _ => {
            let _ = child.wait();
            bail!("start the user namespace's pause process: it exited early");
        }
    }
    let mapped = map(pid, (uid, gid), &plan);
    if let Err(e) = mapped {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    to.write_all(b"m").context("tell the pause process it is mapped")?;
    let n = from.read(&mut said).unwrap_or(0);
    if said[..n].first() != Some(&b'k') {
        let _ = child.wait();
        bail!("the user namespace's pause process did not become root in its namespace");
    }
    // It lives on (its own session, reparented to init when we exit): not waited for.
    std::mem::forget(child);
    Ok(pid)
}

/// Why the kernel refused an unprivileged user namespace, naming the setting.
fn refused(errno: i32) -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let cause = if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        "the sysctl user.max_user_namespaces is 0".to_string()
    } else if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        "AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns=1; allow layers in a profile or set it to 0)"
            .to_string()
    } else if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        "the sysctl kernel.unprivileged_userns_clone is 0".to_string()
    } else {
        format!("unshare: {}", std::io::Error::from_raw_os_error(errno))
    };
    format!("rootless: this kernel refuses unprivileged user namespaces: {cause}")
}

/// What to map for `uid`: its subordinate ranges through newuidmap/newgidmap, or, when
/// something is missing, only its own IDs.
fn plan(uid: u32, gid: u32) -> anyhow::Result<Plan> {
    let name = user_name(uid).unwrap_or_default();
    let range = |file: &str, id: u32| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| subordinate_range(&t, &name, id))
            .map(|r| Range { start: r.start, count: r.count.min(MAX_SUBORDINATE) })
    };
    let (uids, gids) = (range("/etc/subuid", uid), range("/etc/subgid", gid));
    let (newuidmap, newgidmap) = (program("newuidmap"), program("newgidmap"));
    Ok(match (uids, gids, newuidmap, newgidmap) {
        (Some(uids), Some(gids), Some(newuidmap), Some(newgidmap)) => {
            Plan::Subordinate { uids, gids, newuidmap, newgidmap }
        }
        (None, _, _, _) | (_, None, _, _) => Plan::Single {
            why: format!(
                "no subordinate ID range for {who} in /etc/subuid and /etc/subgid (add one: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who})",
                who = if name.is_empty() { uid.to_string() } else { name }
            ),
        },
        _ => Plan::Single { why: "newuidmap and newgidmap are not installed (apt-get install uidmap)".to_string() },
    })
}

/// The login name of `uid` in /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// A program on PATH (or in /usr/bin, where Debian puts newuidmap).
pub(crate) fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| rustix::fs::access(p.as_path(), rustix::fs::Access::EXEC_OK).is_ok())
}

/// Writes the ID maps of the pause process `pid`'s new namespace.
fn map(pid: u32, (uid, gid): (u32, u32), plan: &Plan) -> anyhow::Result<()> {
    match plan {
        Plan::Subordinate { uids, gids, newuidmap, newgidmap } => {
            for (prog, own, r) in [(newuidmap, uid, uids), (newgidmap, gid, gids)] {
                let out = Command::new(prog)
                    .args([pid.to_string(), "0".into(), own.to_string(), "1".into()])
                    .args(["1".to_string(), r.start.to_string(), r.count.to_string()])
                    .stdin(Stdio::null())
                    .output()
                    .with_context(|| format!("run {}", prog.display()))?;
                if !out.status.success() {
                    bail!(
                        "rootless: {} failed: {}",
                        prog.display(),
                        String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("no message")
                    );
                }
            }
        }
        Plan::Single { .. } => {
            // An unprivileged writer may map only its own ID, and gid_map only once
            // setgroups is denied (else dropping a group could grant access).
            let proc = PathBuf::from(format!("/proc/{pid}"));
            for (file, text) in [
                ("setgroups", "deny".to_string()),
                ("uid_map", format!("0 {uid} 1")),
                ("gid_map", format!("0 {gid} 1")),
            ] {
                std::fs::write(proc.join(file), text).with_context(|| format!("write /proc/{pid}/{file}"))?;
            }
        }
    }
    Ok(())
}

/// The pause process's user and mount namespaces, open.
fn namespaces_of(pid: u32) -> anyhow::Result<(std::fs::File, std::fs::File)> {
    let open = |ns: &str| {
        std::fs::File::open(format!("/proc/{pid}/ns/{ns}"))
            .with_context(|| format!("open the pause process's {ns} namespace"))
    };
    Ok((open("user")?, open("mnt")?))
}

/// Joins the user and mount namespaces, keeping the working directory.
fn join((user, mnt): (std::fs::File, std::fs::File)) -> anyhow::Result<()> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    let cwd = std::env::current_dir().ok();
    move_into_link_name_space(user.as_fd(), Some(LinkNameSpaceType::User)).context("join the user namespace")?;
    move_into_link_name_space(mnt.as_fd(), Some(LinkNameSpaceType::Mount)).context("join its mount namespace")?;
    // Joining a mount namespace moves the working directory to its root.
    if let Some(cwd) = cwd {
        std::env::set_current_dir(&cwd).with_context(|| format!("return to {}", cwd.display()))?;
    }
    Ok(())
}

/// The warning a namespace that maps only the user's own ID earns, with its fix.
fn single_id_warning(uid: u32, gid: u32) -> Option<String> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    let ranges: Vec<&str> = map.lines().collect();
    if ranges.len() != 1 {
        return None;
    }
    // The reason is looked up again (outside the namespace it was decided in): the
    // same files, read once more, only by a user in this state.
    let why = match plan(uid, gid) {
        Ok(Plan::Single { why }) => why,
        _ => "the namespace was made before a subordinate range was added (`pkill -u $USER layers-pause`, and the next command makes it again)".into(),
    };
    Some(format!(
        "rootless with only your own user ID mapped: image files owned by other users are stored as yours; {why}"
    ))
}

/// The pause process: makes the namespace, waits to be mapped, then holds it until
/// killed. Started by [`start_pause`] with its stdin and stdout as the pipes.
pub fn pause_main() -> std::process::ExitCode {
    use rustix::thread::UnshareFlags;
    let mut out = std::io::stdout();
    let member = std::env::args().nth(2).and_then(|a| a.parse::<u32>().ok());
    if let Some(pid) = member {
        // Joins the namespaces a surviving process holds: mapped already.
        if namespaces_of(pid).and_then(join).is_err() || rustix::process::getuid().as_raw() != 0 {
            return std::process::ExitCode::FAILURE;
        }
    } else {
        // SAFETY: called first thing in a fresh process (one thread): unsharing the user
        // and mount namespaces affects only this process.
        #[allow(unsafe_code)]
        let unshared = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) };
        if let Err(e) = unshared {
            let _ = write!(out, "e{}", e.raw_os_error());
            return std::process::ExitCode::FAILURE;
        }
        let _ = out.write_all(b"u").and_then(|()| out.flush());
        let mut go = [0u8; 1];
        if std::io::stdin().read_exact(&mut go).is_err() || rustix::process::getuid().as_raw() != 0 {
            return std::process::ExitCode::FAILURE;
        }
    }
    let _ = rustix::process::setsid();
    let _ = rustix::thread::set_name(c"layers-pause");
    let _ = out.write_all(if member.is_some() { b"j" } else { b"k" }).and_then(|()| out.flush());
    // Nothing of the caller's is held: stdio go to /dev/null, the cwd to /.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for n in 0..3 {
            // SAFETY: 0, 1 and 2 are this process's stdio, replaced, never closed.
            #[allow(unsafe_code)]
            let mut target = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) };
            let _ = rustix::io::dup2(&null, &mut target);
            std::mem::forget(target);
        }
    }
    let _ = std::env::set_current_dir("/");
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_first_range_by_name_or_id() {
        let text = "# comment\nalice:100000:65536\nbob:165536:0\n1001:200000:1000\nbob:300000:70000\n";
        assert_eq!(subordinate_range(text, "alice", 1000), Some(Range { start: 100000, count: 65536 }));
        // A zero-sized range is no range; the next line for the same user counts.
        assert_eq!(subordinate_range(text, "bob", 1002), Some(Range { start: 300000, count: 70000 }));
        assert_eq!(subordinate_range(text, "carol", 1001), Some(Range { start: 200000, count: 1000 }));
        assert_eq!(subordinate_range(text, "dave", 1003), None);
        assert_eq!(subordinate_range("alice:x:1\n", "alice", 1), None);
    }
}
