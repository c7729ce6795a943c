//! `-t`: a pseudo-terminal for the container. As runc's console socket does, the
//! pty is made inside the container (its own `devpts` instance, so `tty` names
//! `/dev/pts/0` there) and the master end is passed to `layers` over a socket pair;
//! `layers` relays it to its own terminal, which it puts in raw mode.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Context;
use rustix::fs::{Mode, OFlags};
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

use super::step::{errno, Step};

/// `layers`'s end of the console socket.
pub struct Ours {
    pub sock: OwnedFd,
    /// Whether our stdin is relayed (`-i`).
    pub stdin: bool,
}

/// With `-t`: the two ends of the socket the master travels over (ours, the child's).
pub fn ends(tty: bool, interactive: bool) -> anyhow::Result<(Option<Ours>, Option<OwnedFd>)> {
    if !tty {
        return Ok((None, None));
    }
    let (ours, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .context("make the console socket")?;
    Ok((Some(Ours { sock: ours, stdin: interactive }), Some(theirs)))
}

/// In the container's process, after `pivot_root`: a new session whose controlling
/// terminal is a fresh pty slave, on fds 0, 1 and 2; the master goes to `layers`.
pub fn make_in_child(sock: &OwnedFd, uid: u32) -> Step {
    use rustix::pty::{openpt, ptsname, unlockpt, OpenptFlags};
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(errno("open /dev/ptmx"))?;
    unlockpt(&master).map_err(errno("unlock pty"))?;
    let name = ptsname(&master, Vec::new()).map_err(errno("name pty"))?;
    rustix::process::setsid().map_err(errno("new session"))?;
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno(format!("open {}", name.to_string_lossy())))?;
    rustix::process::ioctl_tiocsctty(&slave).map_err(errno("set controlling terminal"))?;
    // The user owns their terminal, as with a login.
    rustix::fs::fchown(&slave, Some(rustix::process::Uid::from_raw(uid)), None).map_err(errno("chown pty"))?;
    // Sized now, from the terminal still on stdout, so the command never sees 0x0.
    copy_winsize(rustix::stdio::stdout(), slave.as_fd());
    rustix::stdio::dup2_stdin(&slave).map_err(errno("pty as stdin"))?;
    rustix::stdio::dup2_stdout(&slave).map_err(errno("pty as stdout"))?;
    rustix::stdio::dup2_stderr(&slave).map_err(errno("pty as stderr"))?;
    let fds = [master.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(sock, &[IoSlice::new(b"t")], &mut control, SendFlags::empty()).map_err(errno("pass pty to layers"))?;
    Ok(())
}

/// The master end the child sent.
pub fn receive(sock: &OwnedFd) -> anyhow::Result<OwnedFd> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(sock, &mut [IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .context("receive the container's pty")?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    anyhow::bail!("receive the container's pty: no descriptor came")
}

/// Gives the pty `to` the window size of terminal `from`, if `from` is one.
pub fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    if let Ok(size) = tcgetwinsize(from) {
        let _ = tcsetwinsize(to, size);
    }
}

/// A terminal in raw mode until dropped: keys (Ctrl-C too) go to the container's pty
/// untouched, and its line discipline does the rest.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Raw mode on `fd` when it is a terminal.
    pub fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}
