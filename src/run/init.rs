//! `--init`: a small PID 1 for the container, as tini and `docker run --init` give.
//! It is forked from the container's first process once setup is done, so it holds
//! the same identity, capabilities and seccomp profile as the command. It reaps every
//! zombie reparented to it, forwards the signals it receives to the command, and exits
//! with the command's status (128 + N when signal N killed it).

use seccompiler::BpfProgram;

use super::child::Step;
use super::sys::{Kernel, Sys};

/// Signals the kernel raises for a fault in the init itself: never blocked, so a
/// fault kills it instead of spinning.
const SYNCHRONOUS: [i32; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP, libc::SIGSYS, libc::SIGABRT];

/// Forks. Returns in the child, which goes on to exec the command (in its own
/// foreground process group when `tty`, so Ctrl-C reaches it and not the init);
/// never returns in the parent, which becomes the init.
pub fn fork_init(tty: bool, seccomp: &[BpfProgram]) -> Step {
    // SAFETY: this runs between fork and exec in a single-threaded process (the
    // container's first process). The sigset_t values are plain data initialised by
    // sigfillset/sigprocmask before use; fork has no preconditions in a single-threaded
    // process; the child only makes async-signal-safe calls before returning to exec.
    #[allow(unsafe_code)]
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
                Kernel.seccomp(seccomp)
            }
            command => {
                // The init must not keep the exec-status pipe `layers run` reads (it would
                // never see EOF) nor any other descriptor.
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                // What `ps` inside shows as PID 1.
                let _ = rustix::thread::set_name(c"layers-init");
                if Kernel.seccomp(seccomp).is_err() {
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
#[allow(unsafe_code)]
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
