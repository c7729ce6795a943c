//! The one nftables table of ours (`ip layers`): outgoing traffic of each bridge's
//! subnet masqueraded, and published ports carried to their containers (DNAT for
//! traffic to a local address, arriving from outside or made on the host itself).
//! Written through netlink in process (`nfnl`). The table is written whole in one
//! transaction (made if missing, removed, made and filled), so writing it again is
//! idempotent and nobody else's table or rule is ever read, flushed or changed. A
//! container's published ports are rules of their own, appended when it starts and
//! deleted when it stops, each marked with a comment naming the container.

use std::net::Ipv4Addr;

use anyhow::Context;

use super::nfnl::{Attrs, Batch, Msg, Nfnl, FAMILY_IP};
use super::ports::PortMap;
use super::Subnet;

/// Our table's name (family `ip`).
pub const TABLE: &str = "layers";
/// The chain of published ports' DNAT rules.
const PUBLISHED: &str = "published";

const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;

// Attribute numbers from linux/netfilter/nf_tables.h.
const TABLE_NAME: u16 = 1;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_NUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_HANDLE: u16 = 3;
const RULE_EXPRESSIONS: u16 = 4;
const RULE_USERDATA: u16 = 7;
const LIST_ELEM: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;
/// `nft`'s rule comment, a TLV in the rule's userdata (libnftnl's `NFTNL_UDATA_RULE_COMMENT`).
const UDATA_COMMENT: u8 = 0;

/// The first data register (a 16-byte one) and the second.
const REG1: u32 = 1;
const REG2: u32 = 2;

/// Netfilter hooks (`NF_INET_*`).
#[derive(Clone, Copy)]
enum Hook {
    PreRouting = 0,
    LocalOut = 3,
    PostRouting = 4,
}

/// Where a payload expression reads from.
#[derive(Clone, Copy)]
enum Base {
    Network = 1,
    Transport = 2,
}

/// A rule's expressions, in order.
#[derive(Default)]
struct Rule(Vec<(&'static str, Attrs)>);

impl Rule {
    fn expr(&mut self, name: &'static str, fill: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut data = Attrs::default();
        fill(&mut data);
        self.0.push((name, data));
        self
    }

    fn payload(&mut self, base: Base, offset: u32, len: u32) -> &mut Self {
        self.expr("payload", |a| {
            a.be32(1, REG1).be32(2, base as u32).be32(3, offset).be32(4, len);
        })
    }

    /// Compares the first register with `value` (`eq`, or `neq` when `equal` is false).
    fn cmp(&mut self, equal: bool, value: &[u8]) -> &mut Self {
        self.expr("cmp", |a| {
            a.be32(1, REG1).be32(2, if equal { 0 } else { 1 }).nest(3, |d| {
                d.bytes(DATA_VALUE, value);
            });
        })
    }

    /// `ip saddr` (offset 12) or `ip daddr` (offset 16) in `subnet`, or not in it.
    fn in_subnet(&mut self, offset: u32, subnet: &Subnet, equal: bool) -> &mut Self {
        let mask = (u32::MAX << (32 - subnet.prefix)).to_be_bytes();
        self.payload(Base::Network, offset, 4);
        self.expr("bitwise", |a| {
            a.be32(1, REG1).be32(2, REG1).be32(3, 4);
            a.nest(4, |d| {
                d.bytes(DATA_VALUE, &mask);
            });
            a.nest(5, |d| {
                d.bytes(DATA_VALUE, &[0; 4]);
            });
        });
        self.cmp(equal, &subnet.base.octets())
    }

    /// `meta KEY` into the first register.
    fn meta(&mut self, key: u32) -> &mut Self {
        self.expr("meta", |a| {
            a.be32(1, REG1).be32(2, key);
        })
    }

    /// `fib daddr type local`.
    fn if_to_local_address(&mut self) -> &mut Self {
        const RESULT_ADDRTYPE: u32 = 3;
        const FLAG_DADDR: u32 = 2;
        const RTN_LOCAL: u32 = 2;
        self.expr("fib", |a| {
            a.be32(1, REG1).be32(2, RESULT_ADDRTYPE).be32(3, FLAG_DADDR);
        });
        // The address type is a number in the host's order, as the kernel writes it.
        self.cmp(true, &RTN_LOCAL.to_ne_bytes())
    }

    fn load(&mut self, reg: u32, value: &[u8]) -> &mut Self {
        self.expr("immediate", |a| {
            a.be32(1, reg).nest(2, |d| {
                d.bytes(DATA_VALUE, value);
            });
        })
    }

    fn jump(&mut self, chain: &str) -> &mut Self {
        const NFT_JUMP: i32 = -3;
        self.expr("immediate", |a| {
            a.be32(1, 0).nest(2, |d| {
                d.nest(DATA_VERDICT, |v| {
                    v.be32(VERDICT_CODE, NFT_JUMP as u32).str(VERDICT_CHAIN, chain);
                });
            });
        })
    }

    fn masquerade(&mut self) -> &mut Self {
        self.expr("masq", |_| {})
    }

    /// A published port's match and DNAT to `to`.
    fn publish(&mut self, to: Ipv4Addr, p: &PortMap) -> &mut Self {
        const META_L4PROTO: u32 = 16;
        const NAT_DNAT: u32 = 1;
        if let Some(ip) = p.host_ip {
            self.payload(Base::Network, 16, 4).cmp(true, &ip.octets());
        }
        self.meta(META_L4PROTO).cmp(true, &[p.proto.number()]);
        self.payload(Base::Transport, 2, 2).cmp(true, &p.host_port.to_be_bytes());
        self.load(REG1, &to.octets()).load(REG2, &p.container_port.to_be_bytes());
        self.expr("nat", |a| {
            a.be32(1, NAT_DNAT).be32(2, FAMILY_IP.into()).be32(3, REG1).be32(5, REG2);
        })
    }

    /// The request adding this rule at the end of `chain`, with `comment` if any.
    fn add(&self, batch: &mut Batch, chain: &str, comment: Option<&str>) {
        let mut attrs = Attrs::default();
        attrs.str(RULE_TABLE, TABLE).str(RULE_CHAIN, chain);
        attrs.nest(RULE_EXPRESSIONS, |list| {
            for (name, data) in &self.0 {
                list.nest(LIST_ELEM, |e| {
                    e.str(EXPR_NAME, name);
                    if !data.is_empty() {
                        e.nest(EXPR_DATA, |d| {
                            d.append(data);
                        });
                    }
                });
            }
        });
        if let Some(c) = comment {
            attrs.bytes(RULE_USERDATA, &comment_udata(c));
        }
        batch.push(Msg::NewRule, NLM_F_CREATE | NLM_F_APPEND, &attrs, format!("add a rule to chain {chain}"));
    }
}

/// A rule comment as `nft` writes and shows it: type, length, the text with its NUL.
fn comment_udata(text: &str) -> Vec<u8> {
    // The length is one byte: a container ID and a word fit well within it.
    let text = &text.as_bytes()[..text.len().min(250)];
    let mut v = vec![UDATA_COMMENT, (text.len() + 1) as u8];
    v.extend_from_slice(text);
    v.push(0);
    v
}

/// The comment on a container's published-port rules.
fn container_comment(container: &str) -> String {
    format!("container {container}")
}

fn table_attrs() -> Attrs {
    let mut a = Attrs::default();
    a.str(TABLE_NAME, TABLE);
    a
}

fn base_chain(batch: &mut Batch, name: &str, hook: Hook, priority: i32) {
    const NF_ACCEPT: u32 = 1;
    let mut a = Attrs::default();
    a.str(CHAIN_TABLE, TABLE).str(CHAIN_NAME, name);
    a.nest(CHAIN_HOOK, |h| {
        h.be32(HOOK_NUM, hook as u32).be32(HOOK_PRIORITY, priority as u32);
    });
    a.be32(CHAIN_POLICY, NF_ACCEPT).str(CHAIN_TYPE, "nat");
    batch.push(Msg::NewChain, NLM_F_CREATE, &a, format!("add chain {name}"));
}

/// A port published by a live container.
pub struct Published<'a> {
    pub container: &'a str,
    pub address: Ipv4Addr,
    pub port: PortMap,
}

/// The transaction that leaves the table holding exactly these bridges' rules (name
/// and subnet) and these published ports.
fn whole_table(bridges: &[(&str, Subnet)], published: &[Published<'_>]) -> Batch {
    let mut b = Batch::new();
    // Made (if missing) and removed: the table is gone whatever was there, then made anew.
    b.push(Msg::NewTable, NLM_F_CREATE, &table_attrs(), format!("add table ip {TABLE}"));
    b.push(Msg::DelTable, 0, &table_attrs(), format!("delete table ip {TABLE}"));
    b.push(Msg::NewTable, NLM_F_CREATE, &table_attrs(), format!("add table ip {TABLE}"));
    base_chain(&mut b, "postrouting", Hook::PostRouting, 100);
    base_chain(&mut b, "prerouting", Hook::PreRouting, -100);
    base_chain(&mut b, "output", Hook::LocalOut, -100);
    let mut chain = Attrs::default();
    chain.str(CHAIN_TABLE, TABLE).str(CHAIN_NAME, PUBLISHED);
    b.push(Msg::NewChain, NLM_F_CREATE, &chain, format!("add chain {PUBLISHED}"));
    for hook in ["prerouting", "output"] {
        Rule::default().if_to_local_address().jump(PUBLISHED).add(&mut b, hook, None);
    }
    const META_OIFNAME: u32 = 7;
    let loopback = Subnet { base: Ipv4Addr::new(127, 0, 0, 0), prefix: 8 };
    for (bridge, s) in bridges {
        // Published to 127.0.0.1 from the host itself: the reply must come back to us.
        let mut name = [0u8; 16];
        let len = bridge.len().min(15);
        name[..len].copy_from_slice(&bridge.as_bytes()[..len]);
        let mut r = Rule::default();
        r.in_subnet(12, &loopback, true).meta(META_OIFNAME).cmp(true, &name).masquerade();
        r.add(&mut b, "postrouting", None);
        Rule::default().in_subnet(12, s, true).in_subnet(16, s, false).masquerade().add(&mut b, "postrouting", None);
    }
    for p in published {
        let comment = container_comment(p.container);
        Rule::default().publish(p.address, &p.port).add(&mut b, PUBLISHED, Some(&comment));
    }
    b
}

/// Writes the table for `bridges` and `published`, whole.
pub fn apply(bridges: &[(&str, Subnet)], published: &[Published<'_>]) -> anyhow::Result<()> {
    let mut nl = Nfnl::open()?;
    nl.commit(whole_table(bridges, published)).with_context(|| format!("write the nftables table ip {TABLE}"))
}

/// Appends `container`'s published ports to the table; `false` if the table or its
/// chain is missing (the table is then to be written whole).
pub fn publish(container: &str, address: Ipv4Addr, ports: &[PortMap]) -> anyhow::Result<bool> {
    let mut b = Batch::new();
    let comment = container_comment(container);
    for p in ports {
        Rule::default().publish(address, p).add(&mut b, PUBLISHED, Some(&comment));
    }
    let mut nl = Nfnl::open()?;
    match nl.commit(b) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("publish the ports of container {container}")),
    }
}

/// Deletes `container`'s published-port rules. The socket is closed without waiting
/// for the kernel to destroy them: they stopped matching when the deletion committed.
pub fn unpublish(container: &str) -> anyhow::Result<()> {
    let mut nl = Nfnl::open()?;
    let comment = comment_udata(&container_comment(container));
    let mut b = Batch::new();
    for rule in nl.rules(TABLE, PUBLISHED)? {
        let ours = rule.iter().any(|(t, v)| *t == RULE_USERDATA && udata_has_comment(v, &comment));
        let handle = rule.iter().find(|(t, _)| *t == RULE_HANDLE).and_then(|(_, v)| <[u8; 8]>::try_from(&v[..]).ok());
        if let (true, Some(h)) = (ours, handle) {
            let mut a = Attrs::default();
            a.str(RULE_TABLE, TABLE).str(RULE_CHAIN, PUBLISHED).be64(RULE_HANDLE, u64::from_be_bytes(h));
            b.push(Msg::DelRule, 0, &a, format!("delete rule {} of chain {PUBLISHED}", u64::from_be_bytes(h)));
        }
    }
    let deleted = !b.is_empty();
    nl.commit(b).with_context(|| format!("remove the published ports of container {container}"))?;
    if deleted {
        nl.close_detached();
    }
    Ok(())
}

/// Whether a rule's userdata holds `comment` (a whole TLV, as `comment_udata` wrote it).
fn udata_has_comment(udata: &[u8], comment: &[u8]) -> bool {
    let mut rest = udata;
    while rest.len() >= 2 {
        let len = 2 + rest[1] as usize;
        if len > rest.len() {
            return false;
        }
        if &rest[..len] == comment {
            return true;
        }
        rest = &rest[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_port_matches_protocol_and_port_then_dnats() {
        let p = crate::network::ports::parse("127.0.0.1:8080:80/udp").unwrap()[0];
        let mut r = Rule::default();
        r.publish(Ipv4Addr::new(10, 77, 0, 5), &p);
        let names: Vec<&str> = r.0.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["payload", "cmp", "meta", "cmp", "payload", "cmp", "immediate", "immediate", "nat"]);
    }

    #[test]
    fn a_comment_is_found_in_userdata_only_whole() {
        let c = comment_udata("container abc");
        assert!(udata_has_comment(&c, &c));
        assert!(!udata_has_comment(&comment_udata("container abcd"), &c));
        assert!(!udata_has_comment(&c[..c.len() - 1], &c));
    }

    /// Runs `f` on a thread of its own in a new network namespace (root only).
    fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
        if !rustix::process::geteuid().is_root() || crate::userns::program("nft").is_none() {
            eprintln!("SKIPPED: needs root and nft, to list what was written in a namespace of its own");
            return None;
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a network namespace for this thread alone, which ends with it.
                #[allow(unsafe_code)]
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.unwrap();
                f()
            })
            .join()
            .unwrap()
        })
        .into()
    }

    fn nft_list() -> String {
        let out = std::process::Command::new("nft").args(["list", "table", "ip", TABLE]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The table as nft reads it back: the reference reader of what we wrote.
    #[test]
    fn nft_reads_back_the_table_we_wrote_and_a_containers_rules_come_and_go() {
        let Some((whole, published, unpublished, again)) = in_new_netns(|| {
            let s = Subnet::parse("10.77.0.0/16").unwrap();
            let p = crate::network::ports::parse("127.0.0.1:8080:80").unwrap()[0];
            let first = Published { container: "c1", address: Ipv4Addr::new(10, 77, 0, 2), port: p };
            apply(&[("layers0", s)], &[first]).unwrap();
            let whole = nft_list();
            let udp = crate::network::ports::parse("5353:53/udp").unwrap();
            assert!(publish("c2", Ipv4Addr::new(10, 77, 0, 3), &udp).unwrap());
            let published = nft_list();
            unpublish("c2").unwrap();
            let unpublished = nft_list();
            // Written again whole: the same table (idempotent).
            apply(&[("layers0", s)], &[]).unwrap();
            apply(&[("layers0", s)], &[]).unwrap();
            (whole, published, unpublished, nft_list())
        }) else {
            return;
        };
        let expected = "table ip layers {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 127.0.0.0/8 oifname \"layers0\" masquerade
\t\tip saddr 10.77.0.0/16 ip daddr != 10.77.0.0/16 masquerade
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}

\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published
\t}

\tchain published {
\t\tip daddr 127.0.0.1 tcp dport 8080 dnat to 10.77.0.2:80 comment \"container c1\"
\t}
}
";
        assert_eq!(whole, expected);
        let c2 = "\t\tudp dport 5353 dnat to 10.77.0.3:53 comment \"container c2\"\n";
        assert!(published.contains(c2), "{published}");
        assert!(!unpublished.contains("c2") && unpublished.contains("c1"), "{unpublished}");
        assert!(!again.contains("dnat"), "{again}");
        assert!(again.contains("10.77.0.0/16 masquerade"), "{again}");
    }
}
