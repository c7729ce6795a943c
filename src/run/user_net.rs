//! A container's own network through a user-mode network program, as rootless Podman
//! gives one: `pasta` (package `passt`, Podman 5's rootless default) or `slirp4netns`.
//! Neither needs privilege on the host: the program runs in the host's network
//! namespace and carries the container's traffic through a tap device in its own.
//!
//! The order matters. The program must see the host's routes, so it cannot be started
//! from inside the new namespace; and a user namespace's process cannot return to the
//! host's network namespace once it left (it belongs to the initial user namespace).
//! So a holder process (`sleep`) makes the namespace, the program configures it from
//! outside, this process (the fork that runs one container) joins it, and the holder
//! goes. The container then starts in a namespace whose network is already up.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

use super::container::network::{Network, PastaOptions, SlirpOptions};
use super::kernel;
use crate::network::ports::{PortMap, Proto};

/// The program serving a container's network, stopped when dropped.
pub struct UserNet {
    /// pasta's daemon, by the PID it wrote; slirp4netns, our child.
    program: Program,
}

enum Program {
    Pasta { pid: u32 },
    Slirp(Child),
}

impl Drop for UserNet {
    fn drop(&mut self) {
        match &mut self.program {
            Program::Pasta { pid } => {
                if let Some(fd) = super::control::pidfd(*pid) {
                    let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::TERM);
                    // Gone before we return, so its published ports are free again
                    // (a pidfd polls readable when its process ends; 1 s at most).
                    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
                    let _ = rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 1, tv_nsec: 0 }));
                }
            }
            Program::Slirp(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The program `net` needs, found on PATH, or the package to install.
fn program(net: &Network) -> anyhow::Result<PathBuf> {
    let (name, package) = match net {
        Network::Pasta(_) => ("pasta", "passt"),
        Network::Slirp4netns(_) => ("slirp4netns", "slirp4netns"),
        _ => bail!("--network {}: not a user-mode network", net.name()),
    };
    crate::userns::program(name)
        .with_context(|| format!("--network {}: `{name}` is not installed (apt-get install {package})", net.name()))
}

/// Gives this process a network namespace of its own with `lo` and the program's
/// interface up, served by the program until the returned value is dropped, with
/// `ports` forwarded from the host by it. `dir` is a directory of the container's, for
/// the program's PID file and API socket. The published ports, any-free ones chosen.
pub fn attach(net: &Network, dir: &Path, ports: &[PortMap]) -> anyhow::Result<(UserNet, Vec<PortMap>)> {
    let exe = program(net)?;
    // Checked (a port in use or privileged is refused by name) and chosen, then let go
    // for the program to bind.
    let ports = crate::network::ports::reserve(ports)?.maps;
    let mut holder = Command::new("sleep");
    holder.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    kernel::pre_exec(&mut holder, || {
        kernel::unshare_in_child(rustix::thread::UnshareFlags::NEWNET)?;
        // The holder runs with no capabilities: a process may open another's namespace
        // only with all the capabilities the other has, and pasta drops most of its
        // own before it opens the namespace it was given.
        for bit in 0..64 {
            match rustix::thread::remove_capability_from_bounding_set(rustix::thread::CapabilitySet::from_bits_retain(
                1 << bit,
            )) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    });
    let mut holder = holder.spawn().context("make the container's network namespace")?;
    let attached = configure(net, &exe, holder.id(), dir, &ports);
    let _ = holder.kill();
    let _ = holder.wait();
    Ok((attached?, ports))
}

fn configure(net: &Network, exe: &Path, holder: u32, dir: &Path, ports: &[PortMap]) -> anyhow::Result<UserNet> {
    let ns = format!("/proc/{holder}/ns/net");
    let program = match net {
        Network::Pasta(PastaOptions { map_gw, args }) => {
            let pidfile = dir.join("pasta.pid");
            // It configures the namespace, then goes to the background: its exit means ready.
            let out = Command::new(exe)
                .args(["--config-net", "--quiet", "--netns-only", "--netns", &ns])
                // The host's loopback stays closed unless asked for, as in Podman.
                .args((!map_gw).then_some("--no-map-gw"))
                .args(ports.iter().flat_map(pasta_forward))
                .args(args)
                .arg("--pid")
                .arg(&pidfile)
                .stdin(Stdio::null())
                .output()
                .context("run pasta")?;
            if !out.status.success() {
                bail!("--network pasta: pasta failed: {}", last_line(&out.stderr));
            }
            let pid = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok());
            let _ = std::fs::remove_file(&pidfile);
            Program::Pasta { pid: pid.context("--network pasta: pasta wrote no PID")? }
        }
        Network::Slirp4netns(SlirpOptions { allow_host_loopback, mtu }) => {
            let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make pipe")?;
            let mut cmd = Command::new(exe);
            // Sandboxed (an empty mount namespace, no capabilities) and under seccomp,
            // as Podman runs it: it parses the container's traffic.
            // A socket path is limited to 108 bytes, and a store's container dir can be
            // longer: the socket is named through our open fd of that dir.
            let _ = std::fs::remove_file(dir.join("slirp4netns.sock"));
            let dir_fd = std::fs::File::open(dir).context("open the container's dir")?;
            let api = PathBuf::from(format!("/proc/{}/fd/{}/slirp4netns.sock", std::process::id(), dir_fd.as_raw_fd()));
            cmd.args(["--configure", "--enable-sandbox", "--enable-seccomp", "--ready-fd=3"])
                .arg(format!("--api-socket={}", api.display()))
                .arg(format!("--mtu={}", mtu.unwrap_or(65520)))
                .args((!allow_host_loopback).then_some("--disable-host-loopback"))
                .args([holder.to_string(), "tap0".to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            kernel::pass_fds(&mut cmd, vec![(ready_w, 3)]);
            let mut child = cmd.spawn().context("run slirp4netns")?;
            drop(cmd);
            let mut byte = [0u8; 1];
            if rustix::io::read(&ready_r, &mut byte).unwrap_or(0) != 1 {
                let _ = child.kill();
                let out = child.wait_with_output().map(|o| o.stderr).unwrap_or_default();
                bail!("--network slirp4netns: slirp4netns failed: {}", last_line(&out));
            }
            let mut slirp = Program::Slirp(child);
            for p in ports {
                if let Err(e) = slirp_forward(&api, p) {
                    if let Program::Slirp(c) = &mut slirp {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Err(e);
                }
            }
            drop(dir_fd);
            slirp
        }
        Network::None | Network::Host | Network::Bridge(_) | Network::Container(_) => {
            bail!("--network {}: not a user-mode network", net.name())
        }
    };
    let served = UserNet { program };
    let file = std::fs::File::open(&ns).context("open the container's network namespace")?;
    rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .context("join the container's network namespace")?;
    let sock = rustix::net::socket(rustix::net::AddressFamily::INET, rustix::net::SocketType::DGRAM, None)
        .context("open socket for lo")?;
    kernel::set_interface_up(sock.as_fd(), "lo").context("bring up lo")?;
    Ok(served)
}

/// pasta's `-t|-u [ADDR/]HOSTPORT:CONTAINERPORT`.
fn pasta_forward(p: &PortMap) -> [String; 2] {
    let flag = if p.proto == Proto::Tcp { "-t" } else { "-u" };
    let addr = p.host_ip.map(|a| format!("{a}/")).unwrap_or_default();
    [flag.to_string(), format!("{addr}{}:{}", p.host_port, p.container_port)]
}

/// Asks slirp4netns through its API socket to forward `p` (one request per connection).
fn slirp_forward(api: &Path, p: &PortMap) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let request = serde_json::json!({"execute": "add_hostfwd", "arguments": {
        "proto": p.proto.name(),
        "host_addr": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
        "host_port": p.host_port,
        "guest_port": p.container_port,
    }});
    let what = || format!("-p {}: slirp4netns", p.column());
    let mut conn = std::os::unix::net::UnixStream::connect(api).with_context(what)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5))).with_context(what)?;
    conn.write_all(request.to_string().as_bytes()).with_context(what)?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut reply = String::new();
    conn.take(64 * 1024).read_to_string(&mut reply).with_context(what)?;
    let v: serde_json::Value = serde_json::from_str(&reply).with_context(what)?;
    if let Some(e) = v.get("error") {
        bail!("{}: {}", what(), e.get("desc").and_then(|d| d.as_str()).unwrap_or("refused"));
    }
    Ok(())
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim().lines().last().unwrap_or("no message").to_string()
}
