//! The data socket protocol between a client and the sidecar.
//!
//! A client connects to the sidecar's Unix stream socket and sends
//! [`ClientMsg::Hello`] with its call-site table's memfd attached, then one
//! [`ClientMsg::Ring`] per ring (memfd attached), now and whenever it makes a
//! new ring. The sidecar answers [`SidecarMsg::Welcome`] with its wake-up
//! eventfd attached, or [`SidecarMsg::Refused`] and closes. Who the client
//! is (pid, uid, gid) the sidecar learns from the kernel (`SO_PEERCRED`); the
//! pid in the hello is used only where the kernel reports none (another pid
//! namespace) and is then marked unverified.
//!
//! Framing: a little-endian `u32` length, then that many bytes of `postcard`.
//! File descriptors travel with `SCM_RIGHTS` on the `sendmsg` that carries
//! the message's first byte; the receiver keeps those that arrive while it
//! reads one message.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// Largest message (the sidecar closes a connection that announces more).
pub const MAX_MSG: usize = 64 << 10;
/// Most fds one message may carry.
pub const MAX_FDS: usize = 4;

/// Client to sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message. Attached: the call-site table memfd.
    Hello {
        /// The highest protocol version the client speaks
        /// ([`crate::wire::PROTOCOL_VERSION`] unless pinned lower).
        version: u16,
        /// Service name.
        service: String,
        /// The pid the client believes it has (trusted only if the kernel
        /// reports none).
        pid: u32,
        /// Timestamps are TSC ticks (else realtime ns).
        clock_tsc: bool,
        /// Language / library, e.g. "rust 0.1.0", for status output.
        library: String,
    },
    /// A ring. Attached: its memfd.
    Ring {
        /// Its index in the process.
        index: u32,
    },
}

/// Sidecar to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SidecarMsg {
    /// Accepted. Attached: the eventfd to write to when a ring says the
    /// sidecar sleeps, then (optional) this client's control segment (see
    /// [`crate::control`]).
    Welcome {
        /// The protocol version both sides speak: the lower of the
        /// hello's and the sidecar's own (a sidecar before version 2
        /// echoes the hello's, having refused any higher one). The client
        /// writes only record layouts this version reads.
        version: u16,
        /// The sidecar's pid, for messages.
        sidecar_pid: u32,
    },
    /// The directives in the control segment changed (a nudge: the client
    /// re-reads the segment).
    Directives {
        /// The control segment's sequence number after the change.
        seq: u64,
    },
    /// Not accepted; the connection closes.
    Refused {
        /// Why, for people.
        reason: String,
    },
}

/// Protocol errors.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// Bytes that are not a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Would block (non-blocking sockets only).
    #[error("would block")]
    WouldBlock,
}

impl From<nix::Error> for ProtoError {
    fn from(e: nix::Error) -> Self {
        if e == nix::Error::EAGAIN {
            ProtoError::WouldBlock
        } else {
            ProtoError::Io(std::io::Error::from(e))
        }
    }
}

/// Send one message with `fds` attached. Blocking sockets: all of it is
/// sent; short writes are continued without the fds.
pub fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ProtoError> {
    let body = postcard::to_allocvec(msg).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cm: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let mut sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&buf)],
            cm,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    while sent < buf.len() {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&buf[sent..])],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A message's bytes and the fds that came with it.
type Message = (Vec<u8>, Vec<OwnedFd>);

/// Incremental receiver: call [`Receiver::recv`] when the socket is
/// readable; it returns a whole message and its fds, or `WouldBlock`.
#[derive(Debug, Default)]
pub struct Receiver {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Receiver {
    /// A new receiver.
    pub fn new() -> Self {
        Self::default()
    }

    fn take_message(&mut self) -> Result<Option<Message>, ProtoError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_MSG {
            return Err(ProtoError::Malformed(format!("message of {len} bytes")));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some((body, std::mem::take(&mut self.fds))))
    }

    /// Read until one whole message is here. On a non-blocking socket that
    /// has nothing more, `Err(WouldBlock)`; call again when readable.
    pub fn recv<T: for<'de> Deserialize<'de>>(
        &mut self,
        sock: BorrowedFd<'_>,
    ) -> Result<(T, Vec<OwnedFd>), ProtoError> {
        loop {
            if let Some((body, fds)) = self.take_message()? {
                let msg = postcard::from_bytes(&body)
                    .map_err(|e| ProtoError::Malformed(e.to_string()))?;
                return Ok((msg, fds));
            }
            let mut chunk = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
            // Never read past the current message: fds arrive with the
            // first read that touches the packet they were sent with, so a
            // read spanning two messages would give the second one's fds to
            // the first.
            let want = if self.buf.len() < 4 {
                4 - self.buf.len()
            } else {
                let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                // len <= MAX_MSG: take_message checked it above.
                (4 + len).saturating_sub(self.buf.len()).max(1)
            };
            let want = want.min(chunk.len());
            let (n, fds) = {
                let mut iov = [IoSliceMut::new(&mut chunk[..want])];
                let r = match recvmsg::<()>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Ok(r) => r,
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut fds = Vec::new();
                if let Ok(cms) = r.cmsgs() {
                    for c in cms {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            for fd in raw {
                                // SAFETY: the kernel just installed this fd
                                // in our table for us; we are its only owner.
                                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                }
                (r.bytes, fds)
            };
            if fds.len() + self.fds.len() > MAX_FDS {
                return Err(ProtoError::Malformed("too many file descriptors".into()));
            }
            self.fds.extend(fds);
            if n == 0 {
                return Err(ProtoError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn roundtrip_with_fd() {
        let (a, b) = UnixStream::pair().unwrap();
        let seg = crate::segment::Segment::create("x", 4096).unwrap();
        let hello = ClientMsg::Hello {
            version: 1,
            service: "svc".into(),
            pid: 3,
            clock_tsc: true,
            library: "test".into(),
        };
        send(a.as_fd(), &hello, &[seg.fd()]).unwrap();
        send(a.as_fd(), &ClientMsg::Ring { index: 1 }, &[]).unwrap();
        send(a.as_fd(), &ClientMsg::Ring { index: 2 }, &[seg.fd()]).unwrap();
        let mut r = Receiver::new();
        let (m, fds): (ClientMsg, _) = r.recv(b.as_fd()).unwrap();
        assert_eq!(m, hello);
        assert_eq!(fds.len(), 1);
        let (m, fds): (ClientMsg, _) = r.recv(b.as_fd()).unwrap();
        assert_eq!(m, ClientMsg::Ring { index: 1 });
        assert!(
            fds.is_empty(),
            "a message without fds gets none of the next one's"
        );
        let (m, fds): (ClientMsg, _) = r.recv(b.as_fd()).unwrap();
        assert_eq!(m, ClientMsg::Ring { index: 2 });
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(matches!(
            r.recv::<ClientMsg>(b.as_fd()),
            Err(ProtoError::Closed)
        ));
    }
}
