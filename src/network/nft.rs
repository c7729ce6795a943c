//! The one nftables table of ours (`ip layers`): outgoing traffic of each bridge's
//! subnet masqueraded, and published ports carried to their containers (DNAT for
//! traffic to a local address, arriving from outside or made on the host itself). The table is written whole in one `nft` transaction through
//! nft's JSON interface (made if missing, emptied, filled), so writing it again is
//! idempotent and nobody else's table or rule is ever read, flushed or changed.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::ports::PortMap;
use super::Subnet;

/// Our table's name (family `ip`).
pub const TABLE: &str = "layers";

fn table() -> Value {
    json!({"family": "ip", "name": TABLE})
}

fn prefix(s: &Subnet) -> Value {
    json!({"prefix": {"addr": s.base.to_string(), "len": s.prefix}})
}

fn ip_field(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

fn chain(name: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": name,
        "type": "nat", "hook": hook, "prio": prio, "policy": "accept"}}})
}

fn rule(chain: &str, expr: Value) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "expr": expr}}})
}

/// The commands that leave the table holding exactly these bridges' rules and these
/// published ports (each to a container's address).
pub fn commands(bridges: &[(&str, Subnet)], published: &[(std::net::Ipv4Addr, PortMap)]) -> Value {
    let to_local =
        json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}});
    let mut cmds = vec![
        json!({"add": {"table": table()}}),
        json!({"delete": {"table": table()}}),
        json!({"add": {"table": table()}}),
        chain("postrouting", "postrouting", 100),
        chain("prerouting", "prerouting", -100),
        chain("output", "output", -100),
        json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": "published"}}}),
        rule("prerouting", json!([to_local, {"jump": {"target": "published"}}])),
        rule("output", json!([to_local, {"jump": {"target": "published"}}])),
    ];
    for (bridge, s) in bridges {
        // Published to 127.0.0.1 from the host itself: the reply must come back to us.
        cmds.push(rule(
            "postrouting",
            json!([
                {"match": {"op": "==", "left": ip_field("saddr"), "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}},
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
                {"masquerade": null}
            ]),
        ));
        cmds.push(rule(
            "postrouting",
            json!([
                {"match": {"op": "==", "left": ip_field("saddr"), "right": prefix(s)}},
                {"match": {"op": "!=", "left": ip_field("daddr"), "right": prefix(s)}},
                {"masquerade": null}
            ]),
        ));
    }
    for (to, p) in published {
        let mut expr = Vec::new();
        if let Some(ip) = p.host_ip {
            expr.push(json!({"match": {"op": "==", "left": ip_field("daddr"), "right": ip.to_string()}}));
        }
        let port = json!({"payload": {"protocol": p.proto.name(), "field": "dport"}});
        expr.push(json!({"match": {"op": "==", "left": port, "right": p.host_port}}));
        expr.push(json!({"dnat": {"addr": to.to_string(), "port": p.container_port}}));
        cmds.push(rule("published", Value::Array(expr)));
    }
    json!({"nftables": cmds})
}

/// Writes the table for `bridges` (name and subnet) and `published` (`nft -j -f -`).
pub fn apply(bridges: &[(&str, Subnet)], published: &[(std::net::Ipv4Addr, PortMap)]) -> anyhow::Result<()> {
    let nft =
        crate::userns::program("nft").context("--network bridge: `nft` is not installed (apt-get install nftables)")?;
    let mut child = Command::new(nft)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft")?;
    let text = commands(bridges, published).to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).context("write to nft")?;
    }
    let out = child.wait_with_output().context("run nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("nftables table ip {TABLE}: {}", err.trim().lines().next().unwrap_or("nft failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_replaced_whole_and_names_only_ours() {
        let cmds = commands(&[("layers0", Subnet::parse("10.77.0.0/16").unwrap())], &[]);
        let list = cmds["nftables"].as_array().unwrap();
        // Made, removed and made again in one transaction: idempotent.
        assert_eq!(list[0]["add"]["table"]["name"], TABLE);
        assert_eq!(list[1]["delete"]["table"]["name"], TABLE);
        assert!(list.iter().all(|c| c.to_string().contains(&format!("\"{TABLE}\""))));
        let rule = &list[10]["add"]["rule"]["expr"];
        assert_eq!(list[9]["add"]["rule"]["expr"][1]["match"]["right"], "layers0");
        assert_eq!(rule[0]["match"]["right"]["prefix"]["addr"], "10.77.0.0");
        assert_eq!(rule[2]["masquerade"], Value::Null);
    }

    #[test]
    fn a_published_port_is_a_dnat_rule_to_the_containers_address() {
        let to = std::net::Ipv4Addr::new(10, 77, 0, 5);
        let p = crate::network::ports::parse("127.0.0.1:8080:80/udp").unwrap()[0];
        let cmds = commands(&[], &[(to, p)]);
        let last = cmds["nftables"].as_array().unwrap().last().unwrap().clone();
        let expr = &last["add"]["rule"]["expr"];
        assert_eq!(last["add"]["rule"]["chain"], "published");
        assert_eq!(expr[0]["match"]["right"], "127.0.0.1");
        assert_eq!(expr[1]["match"]["left"]["payload"]["protocol"], "udp");
        assert_eq!(expr[1]["match"]["right"], 8080);
        assert_eq!(expr[2]["dnat"], json!({"addr": "10.77.0.5", "port": 80}));
    }
}
