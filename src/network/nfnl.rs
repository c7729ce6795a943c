//! nf_tables over netlink, in process: requests built as netlink attributes, sent as
//! one batch (one transaction: all of it applies or none), and rule dumps read back.
//! Spawning `nft` cost about 2 ms per call, and closing a netfilter socket after a
//! deletion waits for the kernel's deferred destruction (an RCU grace period, 10–16 ms
//! here); `close_detached` takes that wait off the caller.

use std::os::fd::{AsRawFd, RawFd};

use netlink_sys::{Socket, SocketAddr};

/// A failed nf_tables request: what was asked and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("nftables: {what}: {source}")]
pub struct NftError {
    what: String,
    #[source]
    source: std::io::Error,
}

impl NftError {
    /// The errno the kernel answered with, if it was one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

type Result<T> = std::result::Result<T, NftError>;

fn fail(what: &str) -> impl FnOnce(std::io::Error) -> NftError + '_ {
    move |source| NftError { what: what.to_string(), source }
}

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const AF_UNSPEC: u8 = 0;
/// `NFPROTO_IPV4`: the `ip` family.
pub const FAMILY_IP: u8 = 2;

/// The nf_tables message types used here.
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
pub enum Msg {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    NewRule = 6,
    GetRule = 7,
    DelRule = 8,
}

/// Netlink attributes being written (type, length, value; each padded to 4 bytes).
#[derive(Default)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    /// An attribute of type `ty` holding `value`.
    pub fn bytes(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
        self
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(ty, &v)
    }

    /// A 32-bit number in network order (nf_tables' convention).
    pub fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }

    /// A 64-bit number in network order.
    pub fn be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.bytes(ty, &v.to_be_bytes())
    }

    /// A nested attribute whose content `fill` writes.
    pub fn nest(&mut self, ty: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Self {
        let start = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        fill(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends attributes written elsewhere.
    pub fn append(&mut self, other: &Attrs) -> &mut Self {
        self.0.extend_from_slice(&other.0);
        self
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

/// The attributes of a received message: (type without flags, value).
pub fn parse_attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED & !0x4000;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        let next = (len + 3) & !3;
        buf = &buf[next.min(buf.len())..];
    }
    out
}

/// A dumped rule's attributes: (type, value).
pub type RuleAttrs = Vec<(u16, Vec<u8>)>;

/// Appends one nfnetlink message: the netlink header, nfgenmsg (family, version 0,
/// and for the batch markers the subsystem) and `attrs`.
fn write_message(buf: &mut Vec<u8>, seq: u32, ty: u16, flags: u16, family: u8, attrs: &Attrs) {
    let len = 16 + 4 + attrs.0.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    let res_id = if family == AF_UNSPEC { NFNL_SUBSYS_NFTABLES } else { 0 };
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(&attrs.0);
}

/// Requests gathered into one transaction.
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// What each request (by sequence number) was, to name a failed one.
    what: Vec<(u32, String)>,
}

impl Batch {
    /// An empty transaction.
    pub fn new() -> Batch {
        let mut b = Batch { buf: Vec::new(), seq: 0, what: Vec::new() };
        b.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, AF_UNSPEC, &Attrs::default());
        b
    }

    fn header(&mut self, ty: u16, flags: u16, family: u8, attrs: &Attrs) {
        self.seq += 1;
        write_message(&mut self.buf, self.seq, ty, flags, family, attrs);
    }

    /// Adds the request `msg` (`flags` besides request and ack) described as `what`.
    pub fn push(&mut self, msg: Msg, flags: u16, attrs: &Attrs, what: impl Into<String>) {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg as u16;
        self.header(ty, NLM_F_REQUEST | NLM_F_ACK | flags, FAMILY_IP, attrs);
        self.what.push((self.seq, what.into()));
    }

    /// Whether it holds no request.
    pub fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    fn finish(mut self) -> (Vec<u8>, Vec<(u32, String)>) {
        self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, AF_UNSPEC, &Attrs::default());
        (self.buf, self.what)
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

/// A netfilter netlink socket in the network namespace it was opened in.
pub struct Nfnl {
    socket: Socket,
    buf: Vec<u8>,
}

/// One received message: its type, and its payload past the netlink header.
struct Received {
    ty: u16,
    seq: u32,
    payload: Vec<u8>,
}

impl Received {
    /// An error message's errno, negated as the kernel sends it (0: an ack).
    fn error_code(&self) -> i32 {
        self.payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Nfnl {
    /// A socket in this thread's network namespace.
    pub fn open() -> Result<Nfnl> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(fail("open socket"))?;
        socket.bind_auto().map_err(fail("bind socket"))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail("connect socket"))?;
        Ok(Nfnl { socket, buf: vec![0; 64 * 1024] })
    }

    /// Sends `batch` as one transaction. The kernel handles it inside the send, so its
    /// answers are all queued when the send returns: each one is read, and the first
    /// error names the request it failed.
    pub fn commit(&mut self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (bytes, what) = batch.finish();
        self.socket.send(&bytes, 0).map_err(fail("send a batch"))?;
        let mut first_error = None;
        loop {
            let got = match self.receive(libc::MSG_DONTWAIT) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(fail("read the answers")(e)),
            };
            for m in got {
                if m.ty != NLMSG_ERROR || first_error.is_some() {
                    continue;
                }
                let code = m.error_code();
                if code != 0 {
                    let asked = what.iter().find(|(s, _)| *s == m.seq).map_or("a request", |(_, w)| w.as_str());
                    first_error =
                        Some(NftError { what: asked.to_string(), source: std::io::Error::from_raw_os_error(-code) });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The rules of `table`'s `chain`, each as its attributes (handle, userdata, …);
    /// an absent table or chain has none.
    pub fn rules(&mut self, table: &str, chain: &str) -> Result<Vec<RuleAttrs>> {
        let what = format!("list chain ip {table} {chain}");
        let mut attrs = Attrs::default();
        attrs.str(1, table).str(2, chain);
        let mut req = Vec::new();
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | Msg::GetRule as u16;
        write_message(&mut req, 1, ty, NLM_F_REQUEST | NLM_F_DUMP, FAMILY_IP, &attrs);
        self.socket.send(&req, 0).map_err(fail(&what))?;
        let mut rules = Vec::new();
        loop {
            for m in self.receive(0).map_err(fail(&what))? {
                match m.ty {
                    NLMSG_DONE => return Ok(rules),
                    NLMSG_ERROR => {
                        let code = m.error_code();
                        if code == -libc::ENOENT {
                            return Ok(Vec::new());
                        }
                        if code != 0 {
                            return Err(fail(&what)(std::io::Error::from_raw_os_error(-code)));
                        }
                    }
                    _ => {
                        let body = m.payload.get(4..).unwrap_or_default();
                        rules.push(parse_attrs(body).into_iter().map(|(t, v)| (t, v.to_vec())).collect());
                    }
                }
            }
        }
    }

    fn receive(&mut self, flags: i32) -> std::io::Result<Vec<Received>> {
        let n = self.socket.recv(&mut &mut self.buf[..], flags)?;
        let mut out = Vec::new();
        let mut buf = &self.buf[..n];
        while buf.len() >= 16 {
            let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len < 16 || len > buf.len() {
                break;
            }
            let ty = u16::from_ne_bytes([buf[4], buf[5]]);
            let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
            out.push(Received { ty, seq, payload: buf[16..len].to_vec() });
            buf = &buf[((len + 3) & !3).min(buf.len())..];
        }
        Ok(out)
    }

    /// Closes the socket without waiting: after a deletion, the last close of a
    /// netfilter socket waits for nf_tables to destroy what was deleted (an RCU grace
    /// period). A child process takes the socket's last reference and that wait with
    /// it; the transaction itself was complete when `commit` returned.
    pub fn close_detached(self) {
        let fd: RawFd = self.socket.as_raw_fd();
        // SAFETY: the child only calls close_range, close and _exit, which are
        // async-signal-safe, so forking a process with other threads is sound.
        #[allow(unsafe_code)]
        unsafe {
            if libc::fork() == 0 {
                // Its copies of every other descriptor go first: a pipe it held on to
                // would keep a reader from seeing the end.
                let (fd, max) = (fd as libc::c_uint, libc::c_uint::MAX);
                if fd > 0 {
                    libc::syscall(libc::SYS_close_range, 0, fd - 1, 0);
                }
                libc::syscall(libc::SYS_close_range, fd + 1, max, 0);
                libc::close(fd as RawFd);
                libc::_exit(0);
            }
        }
        // Ours closes at once: the child holds the last reference (or, had the fork
        // failed, this close waits).
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_nest_pad_and_parse_back() {
        let mut a = Attrs::default();
        a.str(1, "layers").nest(2, |n| {
            n.be32(1, 7).bytes(2, &[1, 2, 3]);
        });
        let top = parse_attrs(&a.0);
        assert_eq!(top[0], (1, &b"layers\0"[..]));
        assert_eq!(top[1].0, 2, "the nested flag is not part of the type");
        let inner = parse_attrs(top[1].1);
        assert_eq!(inner, [(1, &[0, 0, 0, 7][..]), (2, &[1, 2, 3][..])]);
        assert_eq!(a.0.len() % 4, 0);
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_with_its_requests_numbered() {
        let mut b = Batch::new();
        let mut t = Attrs::default();
        t.str(1, "layers");
        b.push(Msg::NewTable, 0, &t, "add table");
        let (bytes, what) = b.finish();
        assert_eq!(what, [(2, "add table".to_string())]);
        let types: Vec<u16> = {
            let mut v = Vec::new();
            let mut buf = &bytes[..];
            while buf.len() >= 16 {
                let len = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
                v.push(u16::from_ne_bytes([buf[4], buf[5]]));
                buf = &buf[len..];
            }
            v
        };
        assert_eq!(types, [NFNL_MSG_BATCH_BEGIN, NFNL_SUBSYS_NFTABLES << 8, NFNL_MSG_BATCH_END]);
    }
}
