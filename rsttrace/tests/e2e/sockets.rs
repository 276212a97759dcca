//! Socket options std does not offer.

use std::os::fd::AsRawFd;

pub(crate) fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: i32,
    name: i32,
    value: T,
) -> std::io::Result<()> {
    // SAFETY: value is a plain C struct/int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SO_LINGER {on, secs}.
pub(crate) fn set_linger(fd: &impl AsRawFd, on: bool, secs: i32) {
    let linger = libc::linger {
        l_onoff: on.into(),
        l_linger: secs,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, linger).expect("SO_LINGER");
}

/// TCP_REPAIR: the next close() sends nothing, as if the socket vanished
/// (a server restarted, a NAT entry expired).
pub(crate) fn set_repair(fd: &impl AsRawFd) {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, 1i32).expect("TCP_REPAIR");
}

/// The errno name of an io::Error, as rsttrace prints it.
pub(crate) fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => "ECONNRESET".into(),
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::EPIPE) => "EPIPE".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::ECONNABORTED) => "ECONNABORTED".into(),
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH".into(),
        Some(libc::ENETUNREACH) => "ENETUNREACH".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

/// Waits until `c` has `n` bytes to read (and the FIN behind them has
/// had time to follow on loopback, in the same flight).
pub(crate) fn wait_unread(c: &impl AsRawFd, n: i32) {
    for _ in 0..500 {
        let mut avail: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer given.
        unsafe { libc::ioctl(c.as_raw_fd(), libc::FIONREAD, &mut avail) };
        if avail >= n {
            std::thread::sleep(std::time::Duration::from_millis(20));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{n} bytes never arrived");
}
