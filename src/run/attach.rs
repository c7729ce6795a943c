//! The attach socket: while a container runs, the `layers run` watching it (its
//! monitor, when detached) listens on `attach.sock` in the container's dir, sends
//! each client the container's output as it comes and takes keys and window sizes
//! from it, as conmon's attach socket does for podman. The socket lives behind the
//! store's 0700 root: only the store's owner reaches it.
//!
//! Frames, both ways, are Docker's stdcopy framing: `[kind, 0, 0, 0, len (u32 BE)]`
//! then `len` bytes. To the client: kind 1 stdout, 2 stderr, 3 the exit code (one
//! byte, last). From the client: kind 0 keys for the container's stdin, kind 5 a
//! window size (rows, cols as u16 BE).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::event::PollFlags;

use super::log::Stream;

/// The socket's name in the container's dir.
pub const SOCKET: &str = super::container::dir::ATTACH_SOCKET;
/// Frame kinds.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 5;
/// Largest frame a client may send.
pub const MAX_FRAME: usize = 64 << 10;
/// Output a client has not taken yet beyond this, and it is dropped: a stalled
/// attacher never stalls the container (its log still has everything).
const MAX_BEHIND: usize = 4 << 20;
/// At most this many attachers at once.
const MAX_CLIENTS: usize = 16;

/// A frame's 8-byte header.
pub fn header(kind: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [kind, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// A path to `name` in `dir` short enough for a socket address (108 bytes), through
/// `/proc/self/fd`: store paths can be longer. Valid while the returned file is open.
pub fn short_path(dir: &Path, name: &str) -> std::io::Result<(std::fs::File, String)> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir)?;
    let path = format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
    Ok((d, path))
}

/// What a client asked of the container.
pub enum Input {
    /// Keys for its stdin.
    Keys(Vec<u8>),
    /// Its terminal's size.
    Resize { rows: u16, cols: u16 },
}

struct Client {
    sock: UnixStream,
    /// Bytes of a frame not read in full yet.
    partial: Vec<u8>,
    /// Output not written to it yet.
    behind: Vec<u8>,
}

/// The listening socket and the clients attached.
pub struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
    path: std::path::PathBuf,
}

impl Server {
    /// Listens on `dir/attach.sock` (a stale one from an earlier run is replaced).
    pub fn bind(dir: &Path) -> anyhow::Result<Server> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let (_dir, short) = short_path(dir, SOCKET).with_context(|| format!("open {}", dir.display()))?;
        let listener = UnixListener::bind(&short).with_context(|| format!("listen on {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", path.display()))?;
        listener.set_nonblocking(true).context("attach socket")?;
        Ok(Server { listener, clients: Vec::new(), path })
    }

    /// The descriptors to poll and for what: the listener, then each client (for
    /// input only when `take_input`, for output when it is behind).
    pub fn interest(&self, take_input: bool) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut v = vec![(self.listener.as_fd(), PollFlags::IN)];
        for c in &self.clients {
            let mut f = if take_input { PollFlags::IN } else { PollFlags::empty() };
            if !c.behind.is_empty() {
                f |= PollFlags::OUT;
            }
            v.push((c.sock.as_fd(), f));
        }
        v
    }

    /// Acts on what `poll` reported for `interest`'s descriptors (in its order),
    /// collecting what the clients sent into `input`.
    pub fn ready(&mut self, revents: &[PollFlags], input: &mut Vec<Input>) {
        let mut gone = vec![false; self.clients.len()];
        for (i, c) in self.clients.iter_mut().enumerate() {
            let ev = revents.get(i + 1).copied().unwrap_or_else(PollFlags::empty);
            if ev.contains(PollFlags::OUT) && !flush(c) {
                gone[i] = true;
            }
            if ev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) && !receive(c, input) {
                gone[i] = true;
            }
        }
        let mut i = 0;
        self.clients.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        if revents.first().is_some_and(|e| e.contains(PollFlags::IN)) {
            while let Ok((sock, _)) = self.listener.accept() {
                if self.clients.len() < MAX_CLIENTS && sock.set_nonblocking(true).is_ok() {
                    self.clients.push(Client { sock, partial: Vec::new(), behind: Vec::new() });
                }
            }
        }
    }

    /// Sends output of the container's `stream` to every client.
    pub fn send(&mut self, stream: Stream, data: &[u8]) {
        let kind = if stream == Stream::Stderr { STDERR } else { STDOUT };
        self.clients.retain_mut(|c| {
            if c.behind.len() + data.len() > MAX_BEHIND {
                return false;
            }
            c.behind.extend_from_slice(&header(kind, data.len()));
            c.behind.extend_from_slice(data);
            flush(c)
        });
    }

    /// The container ended with `code`: tell every client (waiting at most 2 s for
    /// slow ones), then stop listening.
    pub fn finish(mut self, code: u8) {
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in &mut self.clients {
            c.behind.extend_from_slice(&header(EXIT, 1));
            c.behind.push(code);
            let _ = c.sock.set_nonblocking(false);
            let _ = c.sock.set_write_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(ONE_MS)));
            let _ = c.sock.write_all(&c.behind);
        }
    }
}

const ONE_MS: Duration = Duration::from_millis(1);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes what `c` is behind on; false when it is gone.
fn flush(c: &mut Client) -> bool {
    while !c.behind.is_empty() {
        match c.sock.write(&c.behind) {
            Ok(0) => return false,
            Ok(n) => drop(c.behind.drain(..n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads what `c` sent; false when it is gone or sent something malformed.
fn receive(c: &mut Client, input: &mut Vec<Input>) -> bool {
    let mut buf = [0u8; 16 << 10];
    let n = match c.sock.read(&mut buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => return true,
        Err(_) => return false,
    };
    c.partial.extend_from_slice(&buf[..n]);
    loop {
        let Some(h) = c.partial.get(..8) else { return true };
        let (kind, len) = (h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize);
        if len > MAX_FRAME {
            return false;
        }
        let Some(body) = c.partial.get(8..8 + len) else { return true };
        match (kind, body) {
            (STDIN, keys) => input.push(Input::Keys(keys.to_vec())),
            (RESIZE, &[r0, r1, c0, c1]) => {
                input.push(Input::Resize { rows: u16::from_be_bytes([r0, r1]), cols: u16::from_be_bytes([c0, c1]) })
            }
            _ => return false,
        }
        c.partial.drain(..8 + len);
    }
}
