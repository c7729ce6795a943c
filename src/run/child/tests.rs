//! The setup sequence, recorded instead of made: runs without root.

use std::collections::BTreeMap;

use super::super::sys::Beneath;
use super::*;

/// Writes every call down; knows only the paths it was told of or made.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    paths: BTreeMap<PathBuf, Kind>,
    pivot_refused: bool,
    /// Filesystem types whose mount the kernel refuses (sysfs, rootless in the host's network).
    refused: Vec<&'static str>,
}

impl Recorder {
    fn note(&mut self, call: String) -> Step {
        self.calls.push(call);
        Ok(())
    }

    fn position(&self, prefix: &str) -> usize {
        self.calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {:#?}", self.calls))
    }

    fn has(&self, prefix: &str) -> bool {
        self.calls.iter().any(|c| c.starts_with(prefix))
    }
}

impl Sys for Recorder {
    fn kind(&self, path: &Path) -> Option<Kind> {
        self.paths.get(path).copied()
    }
    fn mkdir(&mut self, path: &Path) -> Step {
        self.paths.insert(path.to_path_buf(), Kind::Dir);
        self.note(format!("mkdir {}", path.display()))
    }
    fn mkdir_all(&mut self, path: &Path) -> Step {
        self.note(format!("mkdir-all {}", path.display()))
    }
    fn create_file(&mut self, path: &Path) -> Step {
        self.paths.insert(path.to_path_buf(), Kind::File);
        self.note(format!("create {}", path.display()))
    }
    fn remove_file(&mut self, path: &Path) -> Step {
        self.paths.remove(path);
        self.note(format!("remove {}", path.display()))
    }
    fn mknod_char(&mut self, path: &Path, major: u32, minor: u32) -> Step {
        self.note(format!("mknod {} {major}:{minor}", path.display()))
    }
    fn symlink(&mut self, target: &str, link: &Path) -> Step {
        self.note(format!("symlink {} -> {target}", link.display()))
    }
    fn dir_beneath(&mut self, root: &Path, target: &str) -> Step<Beneath> {
        let path = root.join(target.trim_start_matches('/'));
        self.paths.insert(path.clone(), Kind::Dir);
        Ok(Beneath { _dir: None, path })
    }
    fn join_cgroup(&mut self, procs: &Path) -> Step {
        self.note(format!("join-cgroup {}", procs.display()))
    }
    fn unshare(&mut self, flags: UnshareFlags) -> Step {
        self.note(format!("unshare {flags:?}"))
    }
    fn join_network(&mut self, _ns: &OwnedFd) -> Step {
        self.note("join-network".into())
    }
    fn make_mounts_private(&mut self) -> Step {
        self.note("private".into())
    }
    fn mount_rootfs(&mut self, _spec: &MountSpec, target: &Path) -> Step {
        self.note(format!("mount-rootfs {}", target.display()))
    }
    fn mount(&mut self, fstype: &str, target: &Path, flags: MountFlags, data: &str) -> Step {
        if self.refused.contains(&fstype) {
            return Err(format!("mount {fstype}: EPERM"));
        }
        self.note(format!("mount {fstype} {} {flags:?} {data}", target.display()))
    }
    fn bind(&mut self, from: &Path, to: &Path) -> Step {
        self.note(format!("bind {} {}", from.display(), to.display()))
    }
    fn rbind(&mut self, from: &Path, to: &Path) -> Step {
        self.note(format!("rbind {} {}", from.display(), to.display()))
    }
    fn remount(&mut self, target: &Path, flags: MountFlags) -> Step {
        self.note(format!("remount {} {flags:?}", target.display()))
    }
    fn sethostname(&mut self, name: &str) -> Step {
        self.note(format!("sethostname {name}"))
    }
    fn loopback_up(&mut self) -> Step {
        self.note("lo-up".into())
    }
    fn enter_dir(&mut self, dir: &Path) -> Step {
        self.note(format!("enter {}", dir.display()))
    }
    fn pivot_root_here(&mut self) -> rustix::io::Result<()> {
        self.calls.push("pivot_root".into());
        if self.pivot_refused {
            return Err(rustix::io::Errno::INVAL);
        }
        Ok(())
    }
    fn detach_old_root(&mut self) -> Step {
        self.note("detach-old-root".into())
    }
    fn move_root_and_chroot(&mut self) -> Step {
        self.note("move-root-chroot".into())
    }
    fn console(&mut self, _sock: &OwnedFd, uid: u32) -> Step {
        self.note(format!("console {uid}"))
    }
    fn drop_bounding(&mut self, cap: CapabilitySet) -> Step {
        self.note(format!("drop-bounding {}", cap.bits().trailing_zeros()))
    }
    fn clear_ambient(&mut self) -> Step {
        self.note("clear-ambient".into())
    }
    fn set_groups(&mut self, groups: &[u32]) -> Step {
        self.note(format!("set-groups {groups:?}"))
    }
    fn set_gid(&mut self, gid: u32) -> Step {
        self.note(format!("set-gid {gid}"))
    }
    fn set_uid(&mut self, uid: u32) -> Step {
        self.note(format!("set-uid {uid}"))
    }
    fn set_caps(&mut self, sets: CapabilitySets) -> Step {
        self.note(format!("set-caps {:x} {:x}", sets.effective.bits(), sets.permitted.bits()))
    }
    fn no_new_privs(&mut self) -> Step {
        self.note("no-new-privs".into())
    }
    fn die_with_parent(&mut self) -> Step {
        self.note("die-with-parent".into())
    }
    fn chdir(&mut self, path: &str) -> Step {
        self.note(format!("chdir {path}"))
    }
    fn close_other_fds(&mut self) -> Step {
        self.note("close-fds".into())
    }
    fn fork_init(&mut self, tty: bool, seccomp: &[seccompiler::BpfProgram]) -> Step {
        self.note(format!("fork-init tty={tty} filters={}", seccomp.len()))
    }
    fn seccomp(&mut self, filters: &[seccompiler::BpfProgram]) -> Step {
        self.note(format!("seccomp {}", filters.len()))
    }
}

fn docker_caps() -> CapabilitySet {
    super::super::caps::effective(&[], &[]).unwrap()
}

fn setup_for(user: users::User) -> ChildSetup {
    ChildSetup {
        cgroup_procs: vec![PathBuf::from("/cg/memory/procs"), PathBuf::from("/cg/pids/procs")],
        mount: MountSpec { lowers: vec![PathBuf::from("/l1")], upper: None },
        rootfs: PathBuf::from("/r"),
        hostname: "box".into(),
        network: ChildNetwork::Own,
        files: vec![(PathBuf::from("/c/hosts"), "etc/hosts".into())],
        user,
        cwd: "/work".into(),
        caps: docker_caps(),
        privileged: false,
        seccomp: vec![Vec::new(), Vec::new()],
        binds: vec![Bind { host: PathBuf::from("/no/such/host/file"), target: "/data/v".into(), read_only: true }],
        tmpfs: vec![("/run".into(), "size=1m".into())],
        read_only: false,
        console: None,
        init: false,
        devices: Devices::Made,
    }
}

fn root() -> users::User {
    users::User { uid: 0, gid: 0, groups: vec![0, 10], home: "/root".into() }
}

fn recorder() -> Recorder {
    let mut r = Recorder::default();
    r.paths.insert(PathBuf::from("/r/etc"), Kind::Dir);
    r.paths.insert(PathBuf::from("/r/proc/kcore"), Kind::File);
    r.paths.insert(PathBuf::from("/r/proc/sys"), Kind::Dir);
    r
}

#[test]
fn setup_runs_cgroup_namespaces_mounts_root_identity_and_seccomp_last() {
    let mut k = recorder();
    setup(&setup_for(root()), &mut k).unwrap();
    let order = [
        "join-cgroup /cg/memory/procs",
        "join-cgroup /cg/pids/procs",
        "unshare",
        "private",
        "mount-rootfs /r",
        "mount proc /r/proc",
        "mount tmpfs /r/dev",
        "mount devpts /r/dev/pts",
        "mount sysfs /r/sys",
        "bind /r/dev/null /r/proc/kcore",
        "bind /r/proc/sys /r/proc/sys",
        "remount /r/proc/sys",
        "bind /c/hosts /r/etc/hosts",
        "bind /no/such/host/file /r/data/v",
        "remount /r/data/v",
        "mount tmpfs /r/run",
        "sethostname box",
        "lo-up",
        "enter /r",
        "pivot_root",
        "detach-old-root",
        "chdir /",
        "mkdir-all /work",
        "drop-bounding",
        "clear-ambient",
        "set-groups [0, 10]",
        "set-gid 0",
        "set-uid 0",
        "set-caps",
        "no-new-privs",
        "die-with-parent",
        "chdir /work",
        "close-fds",
        "seccomp 2",
    ];
    let at: Vec<usize> = order.iter().map(|c| k.position(c)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "order {:?} in {:#?}", at, k.calls);
    assert_eq!(k.calls.last().map(String::as_str), Some("seccomp 2"), "seccomp is the very last step");
    assert!(k.calls[k.position("unshare")].contains("NEWNET"), "--net none: own network namespace");
    let dropped = k.calls.iter().filter(|c| c.starts_with("drop-bounding")).count();
    assert_eq!(dropped, 64 - 14, "all but Docker's 14 capabilities leave the bounding set");
    let caps = docker_caps().bits();
    assert!(k.has(&format!("set-caps {caps:x} {caps:x}")), "root keeps them effective and permitted");
    assert!(k.calls[k.position("remount /r/data/v")].contains("RDONLY"), ":ro volume remounted read-only");
    assert!(k.has("create /r/etc/hosts") && k.has("create /r/data/v"), "file mount points made, not followed");
}

#[test]
fn a_bridged_container_joins_the_namespace_its_parent_made_before_anything_else() {
    let mut s = setup_for(root());
    let null = std::fs::File::open("/dev/null").unwrap();
    s.network = ChildNetwork::Join(OwnedFd::from(null));
    let mut k = recorder();
    setup(&s, &mut k).unwrap();
    assert!(k.position("join-network") < k.position("unshare"), "{:#?}", k.calls);
    assert!(
        !k.calls[k.position("unshare")].contains("NEWNET") && !k.has("lo-up"),
        "its lo is the parent's to bring up"
    );
}

#[test]
fn privileged_host_network_users_and_init_change_only_their_steps() {
    let mut s = setup_for(users::User { uid: 1000, gid: 100, groups: vec![], home: "/".into() });
    s.privileged = true;
    // What `run --privileged` hands the child: every capability (on a full host).
    s.caps = CapabilitySet::from_bits_retain(u64::MAX);
    s.network = ChildNetwork::Inherited;
    s.seccomp = Vec::new();
    s.init = true;
    let mut k = recorder();
    setup(&s, &mut k).unwrap();
    assert!(!k.has("bind /r/dev/null /r/proc/kcore") && !k.has("remount /r/proc/sys"), "no masks: {:#?}", k.calls);
    assert!(!k.has("drop-bounding") && !k.has("no-new-privs"), "privileged keeps everything");
    assert!(!k.calls[k.position("unshare")].contains("NEWNET") && !k.has("lo-up"), "--net host");
    assert!(k.has("set-caps 0 0"), "a non-root user has no capabilities");
    assert_eq!(k.calls.last().map(String::as_str), Some("fork-init tty=false filters=0"));
    assert!(k.position("set-uid 1000") < k.position("fork-init"), "the init is forked as the user");
}

#[test]
fn rootless_binds_the_hosts_devices_and_sysfs_where_it_may_not_make_them() {
    let mut s = setup_for(root());
    s.devices = Devices::Bound { tty_gid: false };
    s.network = ChildNetwork::Inherited;
    let mut k = recorder();
    k.refused = vec!["sysfs"];
    setup(&s, &mut k).unwrap();
    assert!(!k.has("mknod"), "no device node is made in a user namespace: {:#?}", k.calls);
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(k.position(&format!("create /r/dev/{dev}")) < k.position(&format!("bind /dev/{dev} /r/dev/{dev}")));
    }
    let devpts = &k.calls[k.position("mount devpts")];
    assert!(!devpts.contains("gid=5"), "an unmapped tty group is not named: {devpts}");
    assert!(k.position("rbind /sys /r/sys") < k.position("remount /r/sys"));
    assert!(k.calls[k.position("remount /r/sys")].contains("RDONLY"), "the host's sysfs, read-only");
    // As root, a refused sysfs is an error, not a bind of the host's.
    let mut k = recorder();
    k.refused = vec!["sysfs"];
    assert!(setup(&setup_for(root()), &mut k).is_err());
}

#[test]
fn pivot_root_refused_falls_back_to_moving_the_root_and_chroot() {
    let mut k = recorder();
    k.pivot_refused = true;
    setup(&setup_for(root()), &mut k).unwrap();
    assert!(k.position("pivot_root") < k.position("move-root-chroot"));
    assert!(!k.has("detach-old-root"));
    assert!(k.position("move-root-chroot") < k.position("chdir /"));
}

#[test]
fn a_symlinked_proc_stops_setup_before_anything_is_mounted_on_it() {
    let mut k = recorder();
    k.paths.insert(PathBuf::from("/r/proc"), Kind::Symlink);
    let err = setup(&setup_for(root()), &mut k).unwrap_err();
    assert_eq!(err, "/proc in the image is a symlink; refusing to mount over it");
    assert_eq!(k.calls.last().map(String::as_str), Some("mount-rootfs /r"));
}

#[test]
fn a_file_volume_over_a_directory_is_refused() {
    let mut k = recorder();
    k.paths.insert(PathBuf::from("/r/data/v"), Kind::Dir);
    let err = setup(&setup_for(root()), &mut k).unwrap_err();
    assert_eq!(err, "mount target /data/v: exists and is not a regular file");
    assert!(!k.has("bind /no/such/host/file"));
}
