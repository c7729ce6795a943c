//! The one nftables table of ours (`ip layers`): outgoing traffic of each bridge's
//! subnet masqueraded. The table is written whole in one `nft` transaction through
//! nft's JSON interface (made if missing, emptied, filled), so writing it again is
//! idempotent and nobody else's table or rule is ever read, flushed or changed.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::{json, Value};

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

/// The commands that leave the table holding exactly these bridges' rules.
pub fn commands(subnets: &[Subnet]) -> Value {
    let mut cmds = vec![
        json!({"add": {"table": table()}}),
        json!({"delete": {"table": table()}}),
        json!({"add": {"table": table()}}),
        json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": "postrouting",
            "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}),
    ];
    for s in subnets {
        cmds.push(json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": "postrouting", "expr": [
            {"match": {"op": "==", "left": ip_field("saddr"), "right": prefix(s)}},
            {"match": {"op": "!=", "left": ip_field("daddr"), "right": prefix(s)}},
            {"masquerade": null}
        ]}}}));
    }
    json!({"nftables": cmds})
}

/// Writes the table for `subnets` (`nft -j -f -`).
pub fn apply(subnets: &[Subnet]) -> anyhow::Result<()> {
    let nft =
        crate::userns::program("nft").context("--network bridge: `nft` is not installed (apt-get install nftables)")?;
    let mut child = Command::new(nft)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft")?;
    let text = commands(subnets).to_string();
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
        let cmds = commands(&[Subnet::parse("10.77.0.0/16").unwrap()]);
        let list = cmds["nftables"].as_array().unwrap();
        // Made, removed and made again in one transaction: idempotent.
        assert_eq!(list[0]["add"]["table"]["name"], TABLE);
        assert_eq!(list[1]["delete"]["table"]["name"], TABLE);
        assert!(list.iter().all(|c| c.to_string().contains(&format!("\"{TABLE}\""))));
        let rule = &list[4]["add"]["rule"]["expr"];
        assert_eq!(rule[0]["match"]["right"]["prefix"]["addr"], "10.77.0.0");
        assert_eq!(rule[2]["masquerade"], Value::Null);
    }
}
