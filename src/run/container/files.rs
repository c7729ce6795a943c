//! The files `run` makes in a container's dir for it: the init layer and what is
//! mounted on its `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use layers_store::fsroot::lowers;

use super::dir::{ContainerDir, File};

/// Docker's "init layer": a lower dir between the image and the container's upper
/// dir holding the mount points `run` needs (`/etc/hosts`... and `/proc`, `/sys`,
/// `/dev` when the image lacks them), so they never show in `diff` or `commit`.
pub fn init_layer(dir: &ContainerDir, lowers: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let init = dir.file(File::InitLayer);
    let visible_dir = |rel: &str| lowers::is_visible_dir(lowers, Path::new(rel));
    let absent = |rel: &str| !lowers::in_lowers(lowers, Path::new(rel));
    // The init dir is ours (the container's dir); only fixed names are made in it.
    let mk = |rel: &str| std::fs::create_dir_all(init.join(rel)).with_context(|| format!("create init layer {rel}"));
    mk("")?;
    for d in ["proc", "sys", "dev"] {
        if absent(d) {
            mk(d)?;
        }
    }
    // Only into a real /etc: a dir here would hide an image's /etc symlink.
    if visible_dir("etc") || absent("etc") {
        mk("etc")?;
        for f in ["hosts", "hostname", "resolv.conf"] {
            if absent(&format!("etc/{f}")) {
                std::fs::write(init.join("etc").join(f), "").with_context(|| format!("create init layer etc/{f}"))?;
            }
        }
    }
    Ok(init)
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` for the container, in its dir.
/// On a bridge (`address`), the hosts file names the container's own address, and
/// the resolver is the host's without loopback nameservers, which the container's
/// namespace cannot reach.
pub fn etc_files(
    dir: &ContainerDir,
    hostname: &str,
    address: Option<Ipv4Addr>,
    resolver: &super::config::Resolver,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let hosts = hosts_text(hostname, address, &resolver.hosts);
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match address {
        Some(_) => {
            let upstream = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default();
            resolv_for_bridge(&host_resolv, &upstream)
        }
        None => host_resolv,
    };
    let resolv = with_resolver(&resolv, resolver);
    let mut out = Vec::new();
    for (f, content) in [(File::Hostname, format!("{hostname}\n")), (File::Hosts, hosts), (File::ResolvConf, resolv)] {
        let p = dir.file(f);
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
        out.push((p, format!("etc/{}", f.name())));
    }
    Ok(out)
}

/// A container's `/etc/hosts`: localhost, its host name at its address on a bridge
/// (else 127.0.1.1, as Debian has it), and its `--add-host` entries.
pub fn hosts_text(hostname: &str, address: Option<Ipv4Addr>, extra: &[(String, std::net::IpAddr)]) -> String {
    let own = address.map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    let mut text = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{hostname}\n");
    for (name, ip) in extra {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    text
}

/// `resolv` with `--dns` nameservers and `--dns-search` domains in place of its own.
fn with_resolver(resolv: &str, r: &super::config::Resolver) -> String {
    let replaced = |l: &str| {
        let first = l.split_whitespace().next();
        (!r.nameservers.is_empty() && first == Some("nameserver"))
            || (!r.search.is_empty() && matches!(first, Some("search" | "domain")))
    };
    let mut out: String = resolv.lines().filter(|l| !replaced(l)).map(|l| format!("{l}\n")).collect();
    if !r.search.is_empty() {
        out.push_str(&format!("search {}\n", r.search.join(" ")));
    }
    for ns in &r.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out
}

/// Docker's fallback when the host names no nameserver a container can reach.
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `host` (the host's resolv.conf) without loopback nameservers: in their place the
/// servers systemd-resolved forwards to (`upstream`, its own resolv.conf), else
/// Docker's fallback. Other lines (search, options) are kept.
pub fn resolv_for_bridge(host: &str, upstream: &str) -> String {
    let nameserver = |l: &str| {
        l.split_whitespace().nth(1).filter(|_| l.split_whitespace().next() == Some("nameserver")).map(str::to_string)
    };
    let loopback = |a: &str| a.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let mut servers: Vec<String> = host.lines().filter_map(nameserver).filter(|a| !loopback(a)).collect();
    if servers.is_empty() {
        servers = upstream.lines().filter_map(nameserver).filter(|a| !loopback(a)).collect();
    }
    if servers.is_empty() {
        servers = FALLBACK_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    }
    let mut out: String = host.lines().filter(|l| nameserver(l).is_none()).map(|l| format!("{l}\n")).collect();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_give_way_to_the_upstream_ones_or_dockers_fallback() {
        let resolved = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n";
        let upstream = "nameserver 192.0.2.53\nnameserver 127.0.0.1\nsearch example.org\n";
        assert_eq!(
            resolv_for_bridge(resolved, upstream),
            "options edns0 trust-ad\nsearch example.org\nnameserver 192.0.2.53\n"
        );
        assert_eq!(resolv_for_bridge("nameserver 127.0.0.1\n", ""), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert_eq!(resolv_for_bridge("nameserver 10.0.0.2\nnameserver ::1\n", "x"), "nameserver 10.0.0.2\n");
    }
}
