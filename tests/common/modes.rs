//! One test, two modes: as root, and as a real unprivileged user in the user
//! namespace `layers` enters (as umoci runs each suite as root and as a user). The
//! users are made here, idempotently: one with a subordinate ID range, one without.
//! Run by an unprivileged user (CI's second pass), the rootless half runs as that
//! user itself, with no root anywhere in the test.

use std::path::Path;
use std::process::{Command, Output};

use super::layers_bin;

fn harness_is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The name of the user running the tests.
fn me() -> &'static str {
    static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let out = Command::new("id").arg("-un").output().expect("id -un");
        String::from_utf8(out.stdout).expect("a user name").trim().to_string()
    })
}

fn has_subordinate_range(name: &str) -> bool {
    let listed = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    listed.lines().any(|l| l.starts_with(&format!("{name}:")))
}

/// Whether this process can run the rootless half: root makes the user; an
/// unprivileged user needs a subordinate range of its own. Otherwise as [`super::need_root`].
pub fn can_run_rootless(test: &str) -> bool {
    harness_is_root() || has_subordinate_range(me()) || super::need_root(test)
}

/// A user with a subordinate range (container IDs 1…65536 mapped).
pub const MAPPED: (&str, &str) = ("layers-rl", "300000-365535");
/// A user without one (only its own ID mapped).
pub const SINGLE: &str = "layers-rl-single";

/// Who runs `layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Root,
    /// This user (made if missing), through `setpriv`, with its own environment.
    Rootless(&'static str),
}

impl Mode {
    /// The user with a subordinate range.
    pub fn rootless() -> Mode {
        if !harness_is_root() {
            assert!(has_subordinate_range(me()), "{} has no subordinate range in /etc/subuid", me());
            return Mode::Rootless(me());
        }
        user(MAPPED.0, Some(MAPPED.1));
        Mode::Rootless(MAPPED.0)
    }

    /// `layers --root STORE` as this mode's user.
    pub fn command(self, store: &Path) -> Command {
        self.command_with(store, &[])
    }

    /// [`Mode::command`] with these variables in its environment (setpriv resets the user's).
    pub fn command_with(self, store: &Path, vars: &[(&str, &str)]) -> Command {
        let mut cmd = match self {
            Mode::Rootless(u) if harness_is_root() => {
                let mut c = Command::new("setpriv");
                let test_env = [super::NO_DEFAULT_NETWORK];
                c.args([&format!("--reuid={u}"), &format!("--regid={u}"), "--init-groups", "--reset-env", "--", "env"])
                    .args(test_env.iter().chain(vars).map(|(k, v)| format!("{k}={v}")))
                    .arg(layers_bin());
                c
            }
            // Root, or the unprivileged user running the tests: as it is.
            _ => {
                let mut c = super::layers_cmd();
                c.envs(vars.iter().copied());
                c
            }
        };
        cmd.arg("--root").arg(store);
        cmd
    }

    /// `layers --root STORE ARGS…` to the end.
    pub fn run(self, store: &Path, args: &[&str]) -> Output {
        self.command(store).args(args).output().expect("run layers")
    }

    /// [`Mode::run`] that must succeed; its stdout.
    pub fn ok(self, store: &Path, args: &[&str]) -> String {
        let out = self.run(store, args);
        assert!(out.status.success(), "layers {args:?} as {self:?}: {}{}", super::stdout(&out), super::stderr(&out));
        super::stdout(&out)
    }

    /// `layers ARGS` as this mode's user on a pty of ROWS x COLS driven by `steps`
    /// (see tests/support/pty_harness.py): what the harness printed.
    pub fn on_a_terminal(self, store: &Path, size: (u16, u16), steps: &[&str], args: &[&str]) -> String {
        let layers = self.command(store);
        let out = Command::new("python3")
            .envs(layers.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .arg(super::repo().join("tests/support/pty_harness.py"))
            .args([size.0.to_string(), size.1.to_string()])
            .args(steps)
            .arg("--")
            .arg(layers.get_program())
            .args(layers.get_args())
            .args(args)
            .output()
            .expect("run python3 pty harness");
        assert!(out.status.success(), "harness: {}{}", super::stdout(&out), super::stderr(&out));
        super::stdout(&out)
    }

    /// A word for this mode, for file names.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Rootless(u) => u,
        }
    }

    /// [`Mode::ok`], trimmed, as `common::layers_ok` gives it.
    pub fn layers_ok(self, store: &Path, args: &[&str]) -> String {
        self.ok(store, args).trim().to_string()
    }

    /// `layers --root STORE ARGS…` started, its stdout and stderr piped.
    pub fn spawn(self, store: &Path, args: &[&str]) -> std::process::Child {
        let mut cmd = self.command(store);
        cmd.args(args).stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("run layers")
    }

    /// A work dir of this mode's user with a store (`DIR/store`) holding the fixture images.
    pub fn store_with_fixtures(self) -> (tempfile::TempDir, std::path::PathBuf) {
        let work = self.work();
        let store = self.fixture_store_in(work.path(), "store");
        (work, store)
    }

    /// `work/NAME`, a store of this mode's user holding the fixture images (`work` is
    /// shared by both modes when each has a store of its own there).
    pub fn fixture_store_in(self, work: &Path, name: &str) -> std::path::PathBuf {
        let store = work.join(name);
        self.ok(&store, &["load", "-q", "-i", &self.fixtures_in(work)]);
        store
    }

    /// A work dir this mode's user owns (tests' own temp dirs are root's, 0700).
    pub fn work(self) -> tempfile::TempDir {
        let work = tempfile::Builder::new().prefix("layers-test").tempdir_in("/tmp").unwrap();
        self.give(work.path());
        work
    }

    /// Makes `path` (and what is beneath it) this mode's user's.
    pub fn give(self, path: &Path) {
        if let (Mode::Rootless(u), true) = (self, harness_is_root()) {
            let ok = Command::new("chown").args(["-R", &format!("{u}:{u}")]).arg(path).status().unwrap();
            assert!(ok.success(), "chown {}", path.display());
        }
    }

    /// The fixture images' OCI layout, copied into `work` where this mode's user can
    /// read it (umoci writes its index.json 0600).
    pub fn fixtures_in(self, work: &Path) -> String {
        let to = work.join(format!("oci-{}", self.name()));
        let ok = Command::new("cp").arg("-a").arg(super::fixtures().join("oci")).arg(&to).status().unwrap();
        assert!(ok.success());
        self.give(&to);
        to.to_str().unwrap().to_string()
    }
}

/// Two tests, `$root` and `$rootless`, that run `$body` as root and as the user with a
/// subordinate range: one suite, two modes.
#[allow(unused_macros)] // not every test file runs both modes
macro_rules! both_modes {
    ($root:ident, $rootless:ident, $body:expr) => {
        #[test]
        fn $root() {
            if need_root(stringify!($root)) {
                $body(Mode::Root);
            }
        }

        #[test]
        fn $rootless() {
            if can_run_rootless(stringify!($rootless)) {
                $body(Mode::rootless());
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_modes;

/// Makes the user `name` if missing (with the subordinate range `range`); its uid.
pub fn user(name: &str, range: Option<&str>) -> u32 {
    assert!(harness_is_root(), "making the user {name} needs root");
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let id = |n: &str| Command::new("id").args(["-u", n]).output().unwrap();
    if !id(name).status.success() {
        // No subordinate IDs unless asked (useradd gives some where login.defs says so).
        let ok = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name])
            .status()
            .unwrap();
        assert!(ok.success(), "useradd {name}");
    }
    if let Some(r) = range {
        let listed = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !listed.lines().any(|l| l.starts_with(&format!("{name}:"))) {
            let ok = Command::new("usermod").args(["--add-subuids", r, "--add-subgids", r, name]).status().unwrap();
            assert!(ok.success(), "usermod --add-subuids {r} {name}");
        }
    }
    String::from_utf8(id(name).stdout).unwrap().trim().parse().unwrap()
}

/// The first host ID of `name`'s subordinate range: what container ID 1 is on the host.
pub fn first_subuid(name: &str) -> u32 {
    let listed = std::fs::read_to_string("/etc/subuid").unwrap();
    let line = listed.lines().find(|l| l.starts_with(&format!("{name}:"))).expect("a subordinate range");
    line.split(':').nth(1).unwrap().parse().unwrap()
}
