//! A network namespace of the test's own, where `layers` makes its bridge, veths and
//! nftables table: nothing is added to or changed in the machine's own namespace.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use super::layers_bin;

/// A network namespace held by a `sleep` for as long as this lives, with `lo` up, IP
/// forwarding on, and its own directory for `layers`'s network state.
pub struct NetNs {
    holder: Child,
    state: tempfile::TempDir,
}

impl NetNs {
    /// A fresh namespace.
    pub fn new() -> NetNs {
        let mut holder = Command::new("unshare")
            // Forwarding on, as on a machine that runs containers: a new namespace
            // copies the machine's setting, which a fresh Debian has off.
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && echo 1 >/proc/sys/net/ipv4/ip_forward && exec sleep infinity",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net");
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let path = format!("/proc/{}/ns/net", holder.id());
        for _ in 0..500 {
            // Its namespace is the new one once `ip` has run (lo up) and sleep took over.
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", holder.id())).unwrap_or_default();
            if std::fs::read_link(&path).is_ok_and(|l| l != ours) && comm.trim() == "sleep" {
                let state = tempfile::tempdir().unwrap();
                return NetNs { holder, state };
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = holder.kill();
        let _ = holder.wait();
        panic!("unshare --net: no namespace of its own");
    }

    /// `program` run in the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.holder.id())).arg("--").arg(program);
        c
    }

    /// `layers --root STORE` in the namespace, with its default network (no test
    /// override) and the namespace's own state dir.
    pub fn layers_command(&self, store: &Path) -> Command {
        let mut c = self.command(layers_bin());
        c.env("LAYERS_NETWORK_STATE", self.state.path().join("run"))
            .env("LAYERS_NETWORK_CONFIG", self.state.path().join("networks"))
            .arg("--root")
            .arg(store);
        c
    }

    /// [`NetNs::layers_command`] with `args`, to its end.
    pub fn layers(&self, store: &Path, args: &[&str]) -> Output {
        self.layers_command(store).args(args).output().expect("run layers")
    }

    /// [`NetNs::layers`] that must succeed: its stdout, trimmed.
    pub fn layers_ok(&self, store: &Path, args: &[&str]) -> String {
        let out = self.layers(store, args);
        assert!(out.status.success(), "layers {args:?}: {}{}", super::stdout(&out), super::stderr(&out));
        super::stdout(&out).trim().to_string()
    }

    /// A shell command in the namespace, which must succeed: its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = self.command("sh").args(["-c", script]).output().unwrap();
        assert!(out.status.success(), "{script}: {}", super::stderr(&out));
        super::stdout(&out)
    }

    /// The addresses of the default bridge that a container holds (its lease not
    /// released, though its holder may have died), by address.
    pub fn leases(&self) -> Vec<String> {
        let mut found = Vec::new();
        for ns in std::fs::read_dir(self.state.path().join("run")).into_iter().flatten().flatten() {
            let Ok(entries) = std::fs::read_dir(ns.path().join("bridge")) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
                let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if !name.starts_with('.') && !record["holder"].is_null() {
                    found.push(name);
                }
            }
        }
        found.sort();
        found
    }

    /// Waits (30 s at most) until the namespace's links are `want`: veths go with their
    /// container's namespace, which the kernel removes from a work queue.
    pub fn links_become(&self, want: &[&str]) -> Vec<String> {
        let mut now = Vec::new();
        for _ in 0..3000 {
            now = self.links();
            if now == want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        now
    }

    /// The links of the namespace, by name.
    pub fn links(&self) -> Vec<String> {
        let listed = self.sh("ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1");
        listed.lines().map(str::to_string).collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
