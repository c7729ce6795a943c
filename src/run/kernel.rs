//! Every `unsafe` of the runtime, each with its reason: the unshare and pre_exec
//! hooks of the process that starts a container, the small init forked inside it
//! (`--init`, as tini), the interface ioctl rustix lacks, and raw descriptors.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::Command;

/// Makes the next child of this process PID 1 of a new PID namespace. Refused unless
/// this process is single-threaded: the child runs Rust code between fork and exec.
pub fn unshare_pid_for_children() -> anyhow::Result<()> {
    use anyhow::Context;
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    if threads != 1 {
        anyhow::bail!("start container: layers has {threads} threads; a container is started from one");
    }
    // SAFETY: single-threaded (checked above); CLONE_NEWPID changes only which
    // namespace later children are born in.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }.context("unshare PID namespace")
}

/// `unshare` in a container's first process (a fresh fork: single-threaded; none of
/// the flags setup passes share or unshare descriptor tables or memory).
pub fn unshare_in_child(flags: rustix::thread::UnshareFlags) -> rustix::io::Result<()> {
    // SAFETY: see above.
    unsafe { rustix::thread::unshare_unsafe(flags) }
}

/// Runs `f` in a fork of this (single-threaded) process and returns what it returned:
/// for a rootless container, whose PID namespace this process could not leave again
/// (its own belongs to the initial user namespace, where it has no privilege), so the
/// fork that unshares it ends with it. Signals a user sends this process by PID
/// (TERM, HUP, USR1, USR2) are passed to the fork; INT and QUIT come from the terminal
/// to the whole process group, the fork included, so they are not passed twice.
pub fn in_fork<T: serde::Serialize + serde::de::DeserializeOwned>(
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use anyhow::Context;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicI32, Ordering};
    static CHILD: AtomicI32 = AtomicI32::new(0);
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make result pipe")?;
    // SAFETY: the callers hold `Quiesced` (no transfer thread runs), so the process is
    // single-threaded and the child may run Rust code; it leaves with `_exit`, running no
    // destructor of state it shares with the parent (the store's handle, locks).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork for the container"),
        0 => {
            drop(r);
            // A panic must not unwind into the parent's code, which this copy would then run.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the process running the container panicked")))
                .map_err(|e| format!("{e:#}"));
            let mut out = std::fs::File::from(w);
            let _ = serde_json::to_writer(&mut out, &result).map(|()| out.flush());
            // SAFETY: ends the forked child at once, as above.
            unsafe { libc::_exit(0) }
        }
        pid => {
            drop(w);
            CHILD.store(pid, Ordering::SeqCst);
            let mut ids = Vec::new();
            for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2] {
                // SAFETY: the handler only reads an atomic and calls kill(2), both async-signal-safe.
                let id = unsafe {
                    signal_hook::low_level::register(sig, move || {
                        libc::kill(CHILD.load(Ordering::SeqCst), sig);
                    })
                };
                ids.extend(id.ok());
            }
            for sig in [libc::SIGINT, libc::SIGQUIT] {
                // SAFETY: an empty handler: the signal is only kept from ending us.
                ids.extend(unsafe { signal_hook::low_level::register(sig, || {}) }.ok());
            }
            let mut text = Vec::new();
            let read = std::fs::File::from(r).read_to_end(&mut text);
            let mut status = 0;
            // SAFETY: waits for our own child, by its pid; `status` is a plain int.
            while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {}
            for id in ids {
                signal_hook::low_level::unregister(id);
            }
            read.context("read the container's result")?;
            let result: Result<T, String> = serde_json::from_slice(&text)
                .map_err(|_| anyhow::anyhow!("the process that ran the container ended without a result"))?;
            result.map_err(anyhow::Error::msg)
        }
    }
}

/// Children born from here on are in this process's own PID namespace again.
pub fn restore_pid_namespace_for_children() -> anyhow::Result<()> {
    use anyhow::Context;
    let own = std::fs::File::open("/proc/self/ns/pid").context("open own PID namespace")?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&own),
        Some(rustix::thread::LinkNameSpaceType::ProcessID),
    )
    .context("return to own PID namespace")
}

/// Runs `f` in the forked child before it execs.
pub fn pre_exec(cmd: &mut Command, f: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static) {
    use std::os::unix::process::CommandExt;
    // SAFETY: callers fork from a single-threaded process ([`unshare_pid_for_children`]
    // checks it; `exec` joins a container the same way), so the allocations and std
    // calls the closure makes cannot deadlock on a lock another thread held.
    unsafe {
        cmd.pre_exec(f);
    }
}

/// Gives the child `cmd` spawns each `(fd, number)` at that number (not close-on-exec).
pub fn pass_fds(cmd: &mut Command, fds: Vec<(OwnedFd, i32)>) {
    pre_exec(cmd, move || {
        for (fd, n) in &fds {
            // SAFETY: `n` is a small number the caller reserves for this; dup2 onto it
            // replaces whatever the child had there, and the result is not owned here.
            let mut target = unsafe { OwnedFd::from_raw_fd(*n) };
            let done = rustix::io::dup2(fd, &mut target);
            std::mem::forget(target);
            done?;
        }
        Ok(())
    });
}

/// Takes descriptor `n` that the process that started us passed (`pass_fds`), marked
/// close-on-exec so that no child of ours inherits it; `None` when nothing is open there.
pub fn take_passed_fd(n: i32) -> Option<OwnedFd> {
    // SAFETY: borrowed for one fcntl to see whether anything is open at `n`.
    let borrowed = unsafe { BorrowedFd::borrow_raw(n) };
    rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC).ok()?;
    // SAFETY: `n` was passed to this process for it to own (pass_fds in our parent),
    // and each number is taken once, at start-up, before anything else opens it.
    Some(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Marks a descriptor found in /proc/self/fd close-on-exec.
pub fn set_cloexec_raw(fd: i32) {
    // SAFETY: the fd is only borrowed for one fcntl; a stale one fails with EBADF, ignored.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
}

/// Sets IFF_UP on interface `name` through the socket `sock`.
pub fn set_interface_up(sock: BorrowedFd<'_>, name: &str) -> rustix::io::Result<()> {
    // SAFETY: `ifreq` is plain old data, zero-initialised; the name fits (checked) and is
    // NUL-terminated by the zeroing; both ioctls read and write only that struct.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        let bytes = name.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            return Err(rustix::io::Errno::NAMETOOLONG);
        }
        for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(rustix::io::Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(rustix::io::Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
    }
    Ok(())
}

/// Signals the kernel raises for a fault in the init itself: never blocked, so a
/// fault kills it instead of spinning.
const SYNCHRONOUS: [i32; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP, libc::SIGSYS, libc::SIGABRT];

/// Forks. Returns in the child, which goes on to exec the command (in its own
/// foreground process group when `tty`, so Ctrl-C reaches it and not the init);
/// never returns in the parent, which becomes the init.
pub fn fork_init(tty: bool, seccomp: impl Fn() -> Result<(), String>) -> Result<(), String> {
    // SAFETY: this runs between fork and exec in a single-threaded process (the
    // container's first process). The sigset_t values are plain data initialised by
    // sigfillset/sigprocmask before use; fork has no preconditions in a single-threaded
    // process; the child only makes async-signal-safe calls before returning to exec.
    unsafe {
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut blocked);
        for s in SYNCHRONOUS {
            libc::sigdelset(&mut blocked, s);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        // Blocked before the fork: a signal sent while the child starts waits for sigwaitinfo.
        if libc::sigprocmask(libc::SIG_BLOCK, &blocked, &mut old) != 0 {
            return Err(format!("block signals for init: {}", std::io::Error::last_os_error()));
        }
        match libc::fork() {
            -1 => Err(format!("fork init: {}", std::io::Error::last_os_error())),
            0 => {
                if tty {
                    // Blocked SIGTTOU lets a background group take the terminal.
                    libc::setpgid(0, 0);
                    libc::tcsetpgrp(0, libc::getpid());
                }
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                seccomp()
            }
            command => {
                // The init must not keep the exec-status pipe `layers run` reads (it would
                // never see EOF) nor any other descriptor.
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                // What `ps` inside shows as PID 1.
                let _ = rustix::thread::set_name(c"layers-init");
                if seccomp().is_err() {
                    libc::kill(command, libc::SIGKILL);
                }
                supervise(command, &blocked)
            }
        }
    }
}

/// The init's loop: wait for a signal; reap on SIGCHLD, forward anything else.
///
/// # Safety
/// Only in the forked init, with `blocked` blocked.
unsafe fn supervise(command: libc::pid_t, blocked: &libc::sigset_t) -> ! {
    loop {
        let sig = libc::sigwaitinfo(blocked, std::ptr::null_mut());
        if sig > 0 && sig != libc::SIGCHLD {
            libc::kill(command, sig);
            continue;
        }
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
            if pid <= 0 {
                break;
            }
            if pid == command {
                let code =
                    if libc::WIFSIGNALED(status) { 128 + libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) };
                // Leaving takes the rest of the namespace with it, as with tini.
                libc::_exit(code);
            }
        }
    }
}

/// Forks a process that outlives this one: it ignores the terminal's signals, has
/// /dev/null for stdio, no other descriptor of ours and `/` for its working
/// directory (paths given to it must be absolute), waits until this process
/// ends (however it ends: the last copy of a pipe's write end, held here, closes),
/// runs `then` and exits. Only from a single-threaded process.
pub fn fork_survivor(then: impl FnOnce()) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::fd::AsRawFd;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make a pipe")?;
    // SAFETY: the caller is single-threaded, so the child may run ordinary Rust code
    // (nothing is locked by another thread); it ends in _exit, never returning.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(write);
            let keep = read.as_raw_fd();
            // SAFETY: signal(), open(), dup2() and close_range on plain integers.
            unsafe {
                // Ctrl-C reaches the whole process group; this one must outlive it.
                for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
                    libc::signal(s, libc::SIG_IGN);
                }
                // Whoever reads this process's output sees EOF when it ends, not later.
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for fd in 0..3 {
                    libc::dup2(null, fd);
                }
                if keep > 3 {
                    libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
                }
                libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
            }
            // Holding no directory busy while it waits (an unmount after the command).
            let _ = rustix::process::chdir("/");
            let mut b = [0u8; 1];
            while matches!(rustix::io::read(&read, &mut b), Err(rustix::io::Errno::INTR)) {}
            then();
            // SAFETY: ends the child without the parent's exit handlers or buffers.
            unsafe { libc::_exit(0) }
        }
        _ => {
            drop(read);
            // Held open until this process ends.
            std::mem::forget(write);
            Ok(())
        }
    }
}
