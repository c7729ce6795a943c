//! Published ports (`-p [IP:][HOSTPORT:]CPORT[/tcp|udp]`, ranges too, and `-P`): parsed
//! as Docker parses them, each host port reserved by a socket bound for as long as the
//! container runs (a port already bound is refused by name before it starts, and no
//! later program can take it meanwhile), and carried to the container by DNAT rules in
//! our nftables table.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use anyhow::{bail, Context};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// Its IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PortMap {
    /// Only traffic to this host address (`None`: any).
    pub host_ip: Option<Ipv4Addr>,
    /// 0: any free port, chosen when the container starts.
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMap {
    /// The host side: `0.0.0.0:8080`.
    pub fn host(&self) -> String {
        format!("{}:{}", self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), self.host_port)
    }

    /// As `docker port` prints it: `80/tcp -> 0.0.0.0:8080`.
    pub fn describe(&self) -> String {
        format!("{}/{} -> {}", self.container_port, self.proto.name(), self.host())
    }

    /// As `docker ps` prints it: `0.0.0.0:8080->80/tcp`.
    pub fn column(&self) -> String {
        format!("{}->{}/{}", self.host(), self.container_port, self.proto.name())
    }
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16), String> {
    let one =
        |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| format!("-p {spec}: invalid {what} {p:?}"));
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("-p {spec}: invalid {what} range {s}"));
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// `-p [IP:][HOSTPORT:]CPORT[/tcp|udp]`, ranges (`8000-8010:80-90`) expanded; no host
/// port (or an empty one): any free port. IPv4 only (an IPv6 host address is refused).
pub fn parse(spec: &str) -> Result<Vec<PortMap>, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((_, p)) => return Err(format!("-p {spec}: unsupported protocol {p:?} (tcp or udp)")),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [ip, h, c] => (Some(*ip), *h, *c),
        _ => {
            return Err(format!(
                "-p {spec}: want [IP:][HOSTPORT:]CONTAINERPORT[/PROTO] (an IPv6 address is not supported)"
            ))
        }
    };
    let host_ip = match ip.filter(|i| !i.is_empty()) {
        Some(i) => Some(i.parse::<Ipv4Addr>().map_err(|_| format!("-p {spec}: invalid host IP {i:?} (IPv4 only)"))?),
        None => None,
    };
    let (c0, c1) = port_range(container, "container port", spec)?;
    let hosts = if host.is_empty() { None } else { Some(port_range(host, "host port", spec)?) };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 {
            return Err(format!("-p {spec}: the host and container port ranges differ in length"));
        }
    }
    Ok((c0..=c1)
        .enumerate()
        .map(|(i, c)| PortMap {
            host_ip,
            host_port: hosts.map_or(0, |(h0, _)| h0 + i as u16),
            container_port: c,
            proto,
        })
        .collect())
}

/// `-P`: the image's `ExposedPorts` (`80/tcp`, `53/udp`, `80`) to any free host ports.
pub fn exposed<'a>(keys: impl Iterator<Item = &'a String>) -> anyhow::Result<Vec<PortMap>> {
    let mut out = Vec::new();
    for k in keys {
        out.extend(parse(k).map_err(|e| anyhow::anyhow!("-P: the image's ExposedPorts {k:?}: {e}"))?);
    }
    Ok(out)
}

/// Host ports held for a running container.
pub struct Reserved {
    /// The ports, with any-free ones resolved.
    pub maps: Vec<PortMap>,
    _sockets: Vec<OwnedFd>,
}

/// Binds each host port (so it is ours until dropped); a port in use is refused by name.
pub fn reserve(maps: &[PortMap]) -> anyhow::Result<Reserved> {
    use rustix::net::{bind, socket, AddressFamily, SocketAddrV4, SocketType};
    let mut sockets = Vec::new();
    let mut resolved = Vec::new();
    for m in maps {
        let kind = match m.proto {
            Proto::Tcp => SocketType::STREAM,
            Proto::Udp => SocketType::DGRAM,
        };
        let sock = socket(AddressFamily::INET, kind, None).context("open a socket to hold a published port")?;
        // SO_REUSEADDR, so connections of an earlier holder waiting out TIME_WAIT do
        // not block the port; a TCP port is then held by listening on it (two
        // sockets with SO_REUSEADDR may share a port that neither listens on). Our
        // DNAT rules take its traffic before any socket sees it.
        let _ = rustix::net::sockopt::set_socket_reuseaddr(&sock, true);
        let ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        match bind(&sock, &SocketAddrV4::new(ip, m.host_port)) {
            Ok(()) => {}
            Err(rustix::io::Errno::ADDRINUSE) => {
                bail!("-p {}: host port {} ({}) is already in use", m.column(), m.host_port, m.proto.name())
            }
            Err(rustix::io::Errno::ADDRNOTAVAIL) => bail!("-p {}: {ip} is not an address of this host", m.column()),
            Err(rustix::io::Errno::ACCESS) => bail!(
                "-p {}: host port {} is privileged here (net.ipv4.ip_unprivileged_port_start)",
                m.column(),
                m.host_port
            ),
            Err(e) => return Err(e).with_context(|| format!("-p {}: hold host port {}", m.column(), m.host_port)),
        }
        if m.proto == Proto::Tcp {
            rustix::net::listen(&sock, 0)
                .with_context(|| format!("-p {}: hold host port {}", m.column(), m.host_port))?;
        }
        let bound = rustix::net::getsockname(&sock).context("read a held port")?;
        let port = SocketAddrV4::try_from(bound).map_or(m.host_port, |a| a.port());
        resolved.push(PortMap { host_port: port, ..*m });
        sockets.push(sock);
    }
    Ok(Reserved { maps: resolved, _sockets: sockets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ip: Option<[u8; 4]>, host: u16, c: u16, proto: Proto) -> PortMap {
        PortMap { host_ip: ip.map(Ipv4Addr::from), host_port: host, container_port: c, proto }
    }

    #[test]
    fn publish_specs_parse_as_dockers() {
        assert_eq!(parse("80").unwrap(), [p(None, 0, 80, Proto::Tcp)]);
        assert_eq!(parse("8080:80").unwrap(), [p(None, 8080, 80, Proto::Tcp)]);
        assert_eq!(parse("127.0.0.1:8080:80/udp").unwrap(), [p(Some([127, 0, 0, 1]), 8080, 80, Proto::Udp)]);
        assert_eq!(parse("127.0.0.1::80").unwrap(), [p(Some([127, 0, 0, 1]), 0, 80, Proto::Tcp)]);
        assert_eq!(parse("8000-8001:80-81").unwrap(), [p(None, 8000, 80, Proto::Tcp), p(None, 8001, 81, Proto::Tcp)]);
        assert_eq!(parse("80-81").unwrap().len(), 2);
        for (bad, says) in [
            ("80/sctp", "unsupported protocol"),
            ("8000-8002:80-81", "differ in length"),
            ("0:80", "invalid host port"),
            ("x:80", "invalid host port"),
            ("1.2.3:80:80", "invalid host IP"),
            ("[::1]:80:80", "want [IP:]"),
            ("90-80", "invalid container port range"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let shown = p(None, 8080, 80, Proto::Tcp);
        assert_eq!(
            (shown.describe(), shown.column()),
            ("80/tcp -> 0.0.0.0:8080".into(), "0.0.0.0:8080->80/tcp".into())
        );
    }

    #[test]
    fn a_host_port_in_use_is_refused_and_any_free_one_is_chosen() {
        let held = reserve(&[p(Some([127, 0, 0, 1]), 0, 80, Proto::Tcp)]).unwrap();
        let port = held.maps[0].host_port;
        assert_ne!(port, 0);
        let err = reserve(&[p(Some([127, 0, 0, 1]), port, 80, Proto::Tcp)]).err().unwrap().to_string();
        assert!(err.contains(&format!("host port {port} (tcp) is already in use")), "{err}");
        // UDP is another space.
        assert!(reserve(&[p(Some([127, 0, 0, 1]), port, 80, Proto::Udp)]).is_ok());
    }
}
