//! Bringing a network interface up (SIOCSIFFLAGS): rustix has no interface ioctls.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets IFF_UP on interface `name` through the socket `sock`.
pub fn set_up(sock: BorrowedFd<'_>, name: &str) -> rustix::io::Result<()> {
    // SAFETY: `ifreq` is plain old data, zero-initialised; the name fits (checked) and is
    // NUL-terminated by the zeroing; both ioctls read and write only that struct.
    #[allow(unsafe_code)]
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
