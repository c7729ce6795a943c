//! `layers attach`: our terminal to a running container, through the attach socket
//! of the `layers run` watching it (see run/attach.rs). Its output from now on to our
//! stdout and stderr, our stdin to its stdin when it was started with `-i`, signals
//! passed on (`--sig-proxy`, without a terminal), and with `-t` our terminal raw and
//! its size followed until the detach keys (Ctrl-P Ctrl-Q) are typed. Ends with the
//! container, with its exit code, as `docker attach`.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::Args;
use layers_store::{ContainerRow, Store};

use crate::run::attach::{self as socket, header};
use crate::run::container::{ContainerConfig, ContainerDir};
use crate::run::state::{self, Status};

// Arguments of `layers attach`.
#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach our stdin.
    #[arg(long)]
    no_stdin: bool,
    /// Pass the signals we receive on to the container (without a terminal).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    /// The keys that detach from a container with a terminal (`ctrl-p,ctrl-q`).
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Container.
    container: String,
}

/// Docker's default detach keys: Ctrl-P Ctrl-Q.
const DEFAULT_DETACH_KEYS: [u8; 2] = [16, 17];

/// Docker's `--detach-keys` syntax: comma-separated `ctrl-X` (X a letter or one of
/// `@[\]^_`) or single characters.
pub fn parse_detach_keys(spec: &str) -> anyhow::Result<Vec<u8>> {
    let bad = || anyhow::anyhow!("--detach-keys {spec:?}: want keys like `ctrl-p,ctrl-q` or `ctrl-a,d`");
    let mut keys = Vec::new();
    for k in spec.split(',') {
        let k = k.trim();
        match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let c = c.as_bytes()[0].to_ascii_lowercase();
                keys.push(match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return Err(bad()),
                });
            }
            None if k.len() == 1 => keys.push(k.as_bytes()[0]),
            _ => return Err(bad()),
        }
    }
    Ok(keys)
}

/// Finds the detach keys in what is typed; keys that only start the sequence are held
/// back until the next key shows whether they were meant for the container.
struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    /// What of `typed` goes to the container, and whether the sequence was completed.
    fn feed(&mut self, typed: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(typed.len());
        for &b in typed {
            if self.keys.get(self.matched) == Some(&b) {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if self.keys.first() == Some(&b) {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Writes one frame to the socket (shared by the threads that write).
fn send(sock: &Mutex<UnixStream>, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let mut s = sock.lock().unwrap_or_else(|e| e.into_inner());
    for chunk in body.chunks(socket::MAX_FRAME) {
        s.write_all(&header(kind, chunk.len()))?;
        s.write_all(chunk)?;
    }
    Ok(())
}

/// Sends our terminal's size as the container's.
fn send_size(sock: &Mutex<UnixStream>, grow: u16) {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout()) {
        let (r, c) = (size.ws_row.saturating_add(grow).to_be_bytes(), size.ws_col.saturating_add(grow).to_be_bytes());
        let _ = send(sock, socket::RESIZE, &[r[0], r[1], c[0], c[1]]);
    }
}

/// `layers attach`.
pub fn attach(store: &Store, a: &AttachArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    attach_to(store, &c, !a.no_stdin, a.sig_proxy, a.detach_keys.as_deref())
}

/// Attaches to running `c`; `keys`: our stdin too, when it was started with `-i`.
pub fn attach_to(
    store: &Store,
    c: &ContainerRow,
    keys: bool,
    sig_proxy: bool,
    detach_keys: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let o = ContainerConfig::load(&ContainerDir::of(store, &c.id), &c.image.to_string())?;
    let running = match Status::of(store, c) {
        Status::Running(r) => r,
        Status::Paused(_) => bail!("attach {}: cannot attach to a paused container, unpause it first", c.name),
        Status::Restarting(_) => {
            bail!("attach {}: cannot attach to a restarting container, wait until it is running", c.name)
        }
        _ => bail!("attach {}: cannot attach to a stopped container, start it first", c.name),
    };
    if keys && o.tty && !std::io::stdin().is_terminal() {
        bail!("attach {}: the input device is not a TTY", c.name);
    }
    let escape = match (detach_keys, o.tty) {
        (Some(_), false) => bail!("--detach-keys: {} has no terminal (-t), where detach keys are read", c.name),
        (Some(k), true) => parse_detach_keys(k)?,
        (None, _) => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let keys = keys && o.interactive;
    let (_dir, path) = socket::short_path(&store.snapshots().dir(&c.id), socket::SOCKET)
        .with_context(|| format!("attach {}", c.name))?;
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) if state::running(store, c).is_none() => {
            bail!("attach {}: cannot attach to a stopped container, start it first", c.name)
        }
        Err(e) => bail!("attach {}: its attach socket does not answer: {e}", c.name),
    };
    let writer = Arc::new(Mutex::new(stream.try_clone().context("attach socket")?));
    let pid1 = crate::run::control::pidfd(running.pid);
    let signals = if o.tty { vec![signal_hook::consts::SIGWINCH] } else { forwarded(sig_proxy) };
    if !signals.is_empty() {
        let mut pending = signal_hook::iterator::Signals::new(&signals).context("install signal handlers")?;
        let w = writer.clone();
        let tty = o.tty;
        std::thread::spawn(move || {
            for sig in pending.forever() {
                if tty {
                    send_size(&w, 0);
                } else if let (Some(fd), Some(s)) = (&pid1, rustix::process::Signal::from_named_raw(sig)) {
                    let _ = rustix::process::pidfd_send_signal(fd, s);
                }
            }
        });
    }
    let stdin = std::io::stdin();
    let _raw = if o.tty && keys { crate::run::console::RawMode::enter(stdin.as_fd()) } else { None };
    if o.tty && std::io::stdout().is_terminal() {
        // A size that differs, then the real one: the program redraws (as Docker does).
        send_size(&writer, 1);
        send_size(&writer, 0);
    }
    let detached = Arc::new(AtomicBool::new(false));
    if keys {
        let (w, detached, tty) = (writer.clone(), detached.clone(), o.tty);
        let mut escape = Escape { keys: escape, matched: 0 };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 << 10];
            // At our EOF the container's stdin stays open, as Docker leaves it for `run -di`.
            while let Ok(n @ 1..) = std::io::stdin().read(&mut buf) {
                let (keys, done) = if tty { escape.feed(&buf[..n]) } else { (buf[..n].to_vec(), false) };
                if send(&w, socket::STDIN, &keys).is_err() {
                    return;
                }
                if done {
                    detached.store(true, Ordering::SeqCst);
                    let s = w.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = s.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        });
    }
    let code = relay_output(stream).with_context(|| format!("attach {}", c.name))?;
    drop(_raw);
    if detached.load(Ordering::SeqCst) {
        eprintln!("read escape sequence");
        return Ok(ExitCode::from(1));
    }
    match code {
        Some(code) => Ok(ExitCode::from(code)),
        None => bail!("attach {}: its `layers run` went away without an exit status", c.name),
    }
}

/// The signals passed on to a container without a terminal.
fn forwarded(sig_proxy: bool) -> Vec<i32> {
    use signal_hook::consts::*;
    if sig_proxy {
        vec![SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2]
    } else {
        Vec::new()
    }
}

/// Copies the container's output frames to our stdout and stderr until its exit code
/// (returned) or the end of the stream.
fn relay_output(stream: UnixStream) -> anyhow::Result<Option<u8>> {
    let mut r = std::io::BufReader::new(stream);
    let mut body = Vec::new();
    loop {
        let mut h = [0u8; 8];
        if r.read_exact(&mut h).is_err() {
            return Ok(None);
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len > 4 << 20 {
            bail!("a frame of {len} bytes from the attach socket");
        }
        body.resize(len, 0);
        if r.read_exact(&mut body).is_err() {
            return Ok(None);
        }
        let written = match h[0] {
            socket::STDOUT => {
                let mut o = std::io::stdout().lock();
                o.write_all(&body).and_then(|()| o.flush())
            }
            socket::STDERR => std::io::stderr().lock().write_all(&body),
            socket::EXIT => return Ok(body.first().copied()),
            k => bail!("a frame of unknown kind {k} from the attach socket"),
        };
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            return Err(e).context("write the output out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_dockers() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,d").unwrap(), [1, b'd']);
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-[,ctrl-_").unwrap(), [0, 27, 31]);
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_that_only_start_the_sequence_reach_the_container() {
        let mut e = Escape { keys: vec![16, 17], matched: 0 };
        assert_eq!(e.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(e.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(e.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(e.feed(b"\x11rest"), (Vec::new(), true));
    }
}
