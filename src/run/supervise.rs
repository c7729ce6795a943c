//! `layers run`'s side while the container runs: forward signals to its PID 1 and,
//! with `-t`, relay between our terminal and the container's pty. One thread (after
//! `unshare(CLONE_NEWPID)` this process can make no other), one `poll` over the
//! child's pidfd, a self-pipe the signal handlers write to, the pty and stdin.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ExitStatus};

use anyhow::Context;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

use super::attach::{self, Input};
use super::console;
use super::log::{LogWriter, Stream};

/// Signals `layers run` passes on to the container.
const FORWARDED: [i32; 7] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH];

/// Signal handlers, installed before the fork so that a signal arriving while the
/// container starts is forwarded, not fatal to us (which would kill the container).
pub struct Signals {
    pending: signal_hook::iterator::Signals,
    wake: OwnedFd,
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        let pending = signal_hook::iterator::Signals::new(FORWARDED).context("install signal handlers")?;
        let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
        let (wake, wake_w) = rustix::pipe::pipe_with(flags).context("make signal pipe")?;
        let mut ids = Vec::new();
        for sig in FORWARDED {
            let w = wake_w.try_clone().context("make signal pipe")?;
            ids.push(signal_hook::low_level::pipe::register_raw(sig, w).context("install signal handlers")?);
        }
        Ok(Signals { pending, wake, ids })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.pending.handle().close();
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The container's pty, relayed to our stdin and stdout.
pub struct Relay {
    pub master: OwnedFd,
    /// Whether to pass our stdin on (`-i`).
    pub stdin: bool,
}

/// Where the container's output goes while we wait for it.
pub struct Outputs {
    /// With `-t`: our end of the socket the container's pty comes over.
    pub console: Option<console::Ours>,
    /// The read ends of its stdout and stderr pipes (none with a pty, which carries both).
    pub pipes: Option<[OwnedFd; 2]>,
    /// Its log, if it keeps one.
    pub log: Option<LogWriter>,
    /// Copy the output to ours too (attached), not only to the log (detached).
    pub echo: bool,
    /// The attach socket, where `layers attach` clients come.
    pub attach: Option<attach::Server>,
    /// Without a pty: the write end of the container's stdin, fed by attach clients.
    pub stdin_pipe: Option<OwnedFd>,
}

impl Default for Outputs {
    /// Ours: what is not piped is inherited, and a pty is relayed to our stdout.
    fn default() -> Self {
        Outputs { console: None, pipes: None, log: None, echo: true, attach: None, stdin_pipe: None }
    }
}

impl Outputs {
    /// Passes `data` from the container's `stream` on.
    fn pass(&mut self, stream: Stream, data: &[u8]) {
        use std::io::Write;
        if let Some(log) = &mut self.log {
            log.write(stream, data);
        }
        if self.echo {
            // Our reader gone (`| head`) does not stop the container or its log.
            let _ = match stream {
                Stream::Stdout => std::io::stdout().lock().write_all(data).and_then(|()| std::io::stdout().flush()),
                Stream::Stderr => std::io::stderr().lock().write_all(data),
            };
        }
        if let Some(a) = &mut self.attach {
            a.send(stream, data);
        }
    }
}

/// Keys from attach clients waiting for the container beyond this, and no more are read.
const MAX_KEYS: usize = 64 << 10;

/// Waits for `child`, forwarding signals, relaying its pty and passing its output on.
pub fn wait(
    child: &mut Child,
    mut signals: Signals,
    relay: Option<Relay>,
    mut outputs: Outputs,
) -> anyhow::Result<ExitStatus> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).context("container pid")?;
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).context("open container pidfd")?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let _raw = relay.as_ref().filter(|r| r.stdin).and_then(|_| console::RawMode::enter(stdin.as_fd()));
    if let Some(r) = &relay {
        console::copy_winsize(stdout.as_fd(), r.master.as_fd());
        // Writing keys to it must never leave us in a read() that waits for output.
        rustix::io::ioctl_fionbio(&r.master, true).context("make the pty non-blocking")?;
    }
    let mut stdin_open = relay.as_ref().is_some_and(|r| r.stdin);
    let mut master_open = relay.is_some();
    let pipes = outputs.pipes.take();
    let mut pipe_open = [pipes.is_some(); 2];
    let stdin_pipe = outputs.stdin_pipe.take();
    if let Some(p) = &stdin_pipe {
        let _ = rustix::io::ioctl_fionbio(p, true);
    }
    let mut stdin_pipe_open = stdin_pipe.is_some();
    // Keys read but not yet taken by the pty (or the stdin pipe).
    let mut to_pty: Vec<u8> = Vec::new();
    let mut input = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut fds = vec![PollFd::new(&signals.wake, PollFlags::IN), PollFd::new(&pidfd, PollFlags::IN)];
        let master_at = fds.len();
        if let (Some(r), true) = (&relay, master_open) {
            let out = if to_pty.is_empty() { PollFlags::empty() } else { PollFlags::OUT };
            fds.push(PollFd::new(&r.master, PollFlags::IN | out));
        }
        let stdin_at = fds.len();
        if stdin_open && to_pty.is_empty() {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        let pipes_at = fds.len();
        if let Some(p) = &pipes {
            for (fd, _) in p.iter().zip(pipe_open).filter(|(_, open)| *open) {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
        }
        let stdin_pipe_at = fds.len();
        if let (Some(p), true) = (&stdin_pipe, stdin_pipe_open) {
            let out = if to_pty.is_empty() { PollFlags::empty() } else { PollFlags::OUT };
            fds.push(PollFd::new(p, out));
        }
        let attach_at = fds.len();
        let keys_wanted = to_pty.len() < MAX_KEYS && ((relay.is_some() && master_open) || stdin_pipe_open);
        if let Some(a) = &outputs.attach {
            fds.extend(a.interest(keys_wanted).into_iter().map(|(fd, f)| PollFd::from_borrowed_fd(fd, f)));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("wait for the container"),
        }
        let ready = |i: usize| fds.get(i).map(|f| f.revents()).unwrap_or_else(PollFlags::empty);
        let (exited, master_ev, stdin_ev) = (!ready(1).is_empty(), ready(master_at), ready(stdin_at));
        let has_stdin = stdin_open && to_pty.is_empty();
        let mut pipe_ev = [false; 2];
        let mut at = pipes_at;
        for (i, open) in pipe_open.iter().enumerate() {
            if *open {
                pipe_ev[i] = !ready(at).is_empty();
                at += 1;
            }
        }
        let stdin_pipe_ev = ready(stdin_pipe_at);
        let attach_ev: Vec<PollFlags> = (attach_at..fds.len()).map(ready).collect();
        drop(fds);
        if let Some(a) = &mut outputs.attach {
            a.ready(&attach_ev, &mut input);
        }
        for i in input.drain(..) {
            match (i, &relay) {
                (Input::Keys(k), _) => to_pty.extend_from_slice(&k),
                (Input::Resize { rows, cols }, Some(r)) => {
                    let size = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                    let _ = rustix::termios::tcsetwinsize(&r.master, size);
                }
                (Input::Resize { .. }, None) => {}
            }
        }
        if let (Some(p), true) = (&stdin_pipe, stdin_pipe_open) {
            // It closed its stdin: what is typed from now on goes nowhere.
            if stdin_pipe_ev.contains(PollFlags::OUT) {
                stdin_pipe_open = feed(p, &mut to_pty);
            } else if stdin_pipe_ev.intersects(PollFlags::ERR | PollFlags::HUP) {
                to_pty.clear();
                stdin_pipe_open = false;
            }
        }
        if relay.is_none() && !stdin_pipe_open {
            to_pty.clear();
        }
        if let Some(p) = &pipes {
            for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                if pipe_ev[i] && !drain(&p[i], stream, &mut outputs, &mut buf, false) {
                    pipe_open[i] = false;
                }
            }
        }
        while rustix::io::read(&signals.wake, &mut buf[..64]).is_ok_and(|n| n > 0) {}
        for sig in signals.pending.pending() {
            match (&relay, sig) {
                // The pty's own SIGWINCH reaches the container once the size is set.
                (Some(r), SIGWINCH) => console::copy_winsize(stdout.as_fd(), r.master.as_fd()),
                _ => {
                    if let Some(s) = rustix::process::Signal::from_named_raw(sig) {
                        let _ = rustix::process::kill_process(pid, s);
                    }
                }
            }
        }
        if let (Some(r), true) = (&relay, master_open) {
            if master_ev.contains(PollFlags::OUT) {
                feed(&r.master, &mut to_pty);
            }
            // POLLOUT alone (keys taken) says nothing about output to read.
            if master_ev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
                && pump(&r.master, &mut outputs, &mut buf) == Pumped::Closed
            {
                master_open = false;
            }
        }
        if has_stdin && !stdin_ev.is_empty() {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => to_pty.extend_from_slice(&buf[..n]),
            }
        }
        if exited {
            if let (Some(r), true) = (&relay, master_open) {
                // What the container wrote just before it ended is still in the pty.
                while pump(&r.master, &mut outputs, &mut buf) == Pumped::Data {}
            }
            // And in the pipes. PID 1 of a PID namespace takes every process in it
            // along when it ends, so nothing holds their write ends any more.
            if let Some(p) = &pipes {
                for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                    if pipe_open[i] {
                        let _ = rustix::io::ioctl_fionbio(&p[i], true);
                        while drain(&p[i], stream, &mut outputs, &mut buf, true) {}
                    }
                }
            }
            break;
        }
    }
    if let Some(log) = &mut outputs.log {
        log.flush();
    }
    drop(signals);
    let status = child.wait().context("wait for the container")?;
    if let Some(a) = outputs.attach.take() {
        a.finish(super::exit_code(status));
    }
    Ok(status)
}

/// Writes what it takes of `keys` to the container's stdin (its pty or pipe); false,
/// with the keys dropped, once that is closed.
fn feed(stdin: &OwnedFd, keys: &mut Vec<u8>) -> bool {
    match rustix::io::write(stdin, keys) {
        Ok(n) => drop(keys.drain(..n)),
        Err(Errno::AGAIN | Errno::INTR) => {}
        Err(_) => {
            keys.clear();
            return false;
        }
    }
    true
}

/// What one read of the (non-blocking) pty master gave.
#[derive(PartialEq)]
enum Pumped {
    Data,
    /// Nothing now (EAGAIN, EINTR).
    Empty,
    /// Every slave fd is closed (EIO), or it failed otherwise.
    Closed,
}

/// Passes one read of the pty on (as stdout).
fn pump(master: &OwnedFd, outputs: &mut Outputs, buf: &mut [u8]) -> Pumped {
    match rustix::io::read(master, &mut *buf) {
        Ok(0) => Pumped::Closed,
        Ok(n) => {
            outputs.pass(Stream::Stdout, &buf[..n]);
            Pumped::Data
        }
        Err(Errno::AGAIN | Errno::INTR) => Pumped::Empty,
        Err(_) => Pumped::Closed,
    }
}

/// Passes one read of an output pipe on; false at its end (or, `draining`, when empty).
fn drain(pipe: &OwnedFd, stream: Stream, outputs: &mut Outputs, buf: &mut [u8], draining: bool) -> bool {
    match rustix::io::read(pipe, &mut *buf) {
        Ok(0) => false,
        Ok(n) => {
            outputs.pass(stream, &buf[..n]);
            true
        }
        Err(Errno::INTR) => true,
        Err(Errno::AGAIN) => !draining,
        Err(_) => false,
    }
}
