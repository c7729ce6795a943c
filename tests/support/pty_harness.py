#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal, as a user at a terminal would.

usage: pty_harness.py ROWS COLS STEP... -- COMMAND...

Steps, in order:
  expect:TEXT     wait (5 s at most) until TEXT has appeared in the output
  send:TEXT       type TEXT (Python escapes: \\r, \\x03 for Ctrl-C, ...)
  resize:R,C      change the terminal's window size (the command gets SIGWINCH)
  sleep:SECONDS   wait without reading what the command writes meanwhile

Prints everything the command wrote, then `exit=N` with its exit status, and exits 0;
exits 2 if an expected text never came, or the command did not end within 10 s
after the last step (after printing what did come; the command is killed).
"""
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time


def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    args = sys.argv[1:]
    sep = args.index("--")
    rows, cols, steps, command = int(args[0]), int(args[1]), args[2:sep], args[sep + 1:]
    # The size is set on the pty before the command starts (via the child side below).
    pid, fd = pty.fork()
    if pid == 0:
        winsize(0, rows, cols)
        os.execvp(command[0], command)
    out = b""

    def read_until(text, timeout):
        nonlocal out
        end = time.time() + timeout
        while text not in out and time.time() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                out += chunk

    for step in steps:
        kind, _, value = step.partition(":")
        if kind == "expect":
            read_until(value.encode(), 5)
            if value.encode() not in out:
                sys.stdout.write(out.decode(errors="replace"))
                sys.stdout.write(f"\nharness: never saw {value!r}\n")
                os.kill(pid, 9)
                sys.exit(2)
        elif kind == "send":
            os.write(fd, value.encode().decode("unicode_escape").encode("latin-1"))
        elif kind == "sleep":
            time.sleep(float(value))
        elif kind == "resize":
            r, c = value.split(",")
            winsize(fd, int(r), int(c))
        else:
            sys.exit(f"harness: unknown step {step!r}")
    read_until(b"\0never\0", 10)
    end = time.time() + 2
    done, status = os.waitpid(pid, os.WNOHANG)
    while done == 0 and time.time() < end:
        time.sleep(0.05)
        done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        sys.stdout.write(out.decode(errors="replace"))
        sys.stdout.write("\nharness: the command did not end; killed\n")
        os.kill(pid, 9)
        sys.exit(2)
    sys.stdout.write(out.decode(errors="replace"))
    sys.stdout.write(f"\nexit={os.waitstatus_to_exitcode(status)}\n")


main()
