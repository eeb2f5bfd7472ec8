//! Socket I/O on file descriptors that Python owns or hands over: accept, receive, send,
//! sendfile. Pure Rust (rustix), no PyO3.
//!
//! [`borrow`] turns a descriptor number that Python keeps open into a `BorrowedFd`: an
//! `unsafe fn`, whose callers (the response writer and the serve loop, `src/wsgi/`) say at each
//! call what keeps the descriptor open. The only other `unsafe` is `pystr::latin1`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, SocketAddrAny, SocketFlags};

/// Borrows a descriptor owned elsewhere (a Python socket or file object, a listener).
///
/// Returns `None` for a negative number.
///
/// # Safety
///
/// `fd` must be an open descriptor that stays open, and is not closed through another handle,
/// for the whole lifetime `'a`: the caller holds the object that owns it for that long and
/// chooses `'a` no longer than that hold. The returned handle never closes it.
#[allow(unsafe_code)]
pub unsafe fn borrow<'a>(fd: RawFd) -> Option<BorrowedFd<'a>> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the caller's contract above: `fd` is open for `'a`.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The peer of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ip(SocketAddr),
    /// A unix socket: always allowed (A3); `REMOTE_ADDR` falls back to `''`.
    Unix,
}

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(a) => Some(a.ip()),
            Self::Unix => None,
        }
    }
}

fn peer_of(addr: Option<SocketAddrAny>) -> Peer {
    addr.and_then(|a| SocketAddr::try_from(a).ok())
        .map_or(Peer::Unix, Peer::Ip)
}

/// Outcome of a non-blocking accept.
pub enum Accepted {
    Conn(OwnedFd, Peer),
    /// Nothing pending (or the attempt was interrupted or aborted): go back to waiting.
    Idle,
}

/// Accepts one connection from a non-blocking listener. The new socket is blocking and
/// close-on-exec, and inherits the listener's `SO_RCVTIMEO`/`SO_SNDTIMEO`.
pub fn accept(listener: BorrowedFd<'_>) -> std::io::Result<Accepted> {
    accept_with(listener, SocketFlags::CLOEXEC)
}

/// [`accept`] for a worker that waits in its event loop: the new socket is non-blocking.
pub fn accept_nonblocking(listener: BorrowedFd<'_>) -> std::io::Result<Accepted> {
    accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
}

fn accept_with(listener: BorrowedFd<'_>, flags: SocketFlags) -> std::io::Result<Accepted> {
    match rustix::net::acceptfrom_with(listener, flags) {
        Ok((fd, addr)) => Ok(Accepted::Conn(fd, peer_of(addr))),
        Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => Ok(Accepted::Idle),
        Err(e) => Err(e.into()),
    }
}

/// Receives what is ready without blocking: `Ok(None)` when nothing is.
pub fn recv_ready(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    recv_with(fd, buf, max, RecvFlags::DONTWAIT)
}

/// Receives, blocking up to the socket's `SO_RCVTIMEO`; a timeout is `ErrorKind::WouldBlock`.
pub fn recv_blocking(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    loop {
        match recv_with(fd, buf, max, RecvFlags::empty()) {
            Ok(Some(n)) => return Ok(n),
            Ok(None) => return Err(std::io::ErrorKind::WouldBlock.into()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn recv_with(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    flags: RecvFlags,
) -> std::io::Result<Option<usize>> {
    // Into the spare capacity: no zero-filling of the buffer on every receive.
    buf.reserve(max);
    match rustix::net::recv(fd, rustix::buffer::spare_capacity(buf), flags) {
        Ok((n, _)) => Ok(Some(n)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Waits up to `millis` for bytes to read; `true` when some (or EOF) are there.
pub fn wait_readable(fd: BorrowedFd<'_>, millis: i64) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: millis.div_euclid(1000),
        tv_nsec: millis.rem_euclid(1000) * 1_000_000,
    };
    matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Sends as much as the socket takes without blocking; returns the bytes sent.
pub fn send_ready(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<usize> {
    let mut sent = 0;
    while let Some(rest) = data.get(sent..).filter(|r| !r.is_empty()) {
        match rustix::net::send(fd, rest, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::AGAIN) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// Sends everything, blocking up to the socket's `SO_SNDTIMEO` per call.
pub fn send_all(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<()> {
    let mut sent = 0;
    while let Some(rest) = data.get(sent..).filter(|r| !r.is_empty()) {
        match rustix::net::send(fd, rest, SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes everything to a file or pipe, blocking.
pub fn write_all(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while let Some(rest) = data.get(written..).filter(|r| !r.is_empty()) {
        match rustix::io::write(fd, rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `sendfile(2)` of `count` bytes from `offset`, blocking; returns the bytes sent.
pub fn send_file(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: u64,
) -> std::io::Result<u64> {
    send_file_until(out, file, offset, count, false)
}

/// `sendfile(2)` of up to `count` bytes from `offset` as far as a non-blocking socket takes
/// them without waiting; returns the bytes sent.
pub fn send_file_ready(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: u64,
) -> std::io::Result<u64> {
    send_file_until(out, file, offset, count, true)
}

fn send_file_until(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: u64,
    until_full: bool,
) -> std::io::Result<u64> {
    let mut offset = offset;
    let mut left = count;
    while left > 0 {
        let chunk = usize::try_from(left.min(0x3FFF_FFFF)).unwrap_or(0x3FFF_FFFF);
        match rustix::fs::sendfile(out, file, Some(&mut offset), chunk) {
            Ok(0) => break,
            Err(Errno::AGAIN) if until_full => break,
            Ok(n) => left -= n as u64,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(count - left)
}

/// Half-closes the write side.
pub fn shutdown_write(fd: impl AsFd) {
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn send_and_receive_over_a_socketpair() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_fd();
        send_all(fd, b"hello").unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let mut buf = Vec::new();
        assert_eq!(recv_ready(fd, &mut buf, 16).unwrap(), None);
        b.write_all(b"abc").unwrap();
        assert_eq!(recv_blocking(fd, &mut buf, 16).unwrap(), 3);
        assert_eq!(buf, b"abc");
        assert!(!wait_readable(fd, 1));
        drop(b);
        assert!(wait_readable(fd, 1));
        assert_eq!(recv_blocking(fd, &mut buf, 16).unwrap(), 0);
    }

    #[test]
    fn accept_is_idle_when_nothing_is_pending() {
        let dir = std::env::temp_dir().join(format!("gu-io-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixListener::bind(&dir).unwrap();
        listener.set_nonblocking(true).unwrap();
        let lfd = listener.as_fd();
        assert!(matches!(accept(lfd).unwrap(), Accepted::Idle));
        let _client = UnixStream::connect(&dir).unwrap();
        match accept(lfd).unwrap() {
            Accepted::Conn(_, peer) => assert_eq!(peer, Peer::Unix),
            Accepted::Idle => panic!("expected a connection"),
        }
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    #[allow(unsafe_code)]
    fn borrow_rejects_negative() {
        // SAFETY: a negative number is refused before any handle is made.
        assert!(unsafe { borrow(-1) }.is_none());
    }
}
