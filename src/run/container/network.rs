//! A container's network, as `--network` spells it: `none`, `host`, and the user-mode
//! programs with Podman's options (`pasta[:OPTIONS,…]`, `slirp4netns[:OPTIONS,…]`).
//! Kept in `config.json` in the same spelling.

/// A container's network.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Network {
    /// A network namespace of its own with only `lo`.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A namespace of its own on a bridge network (`bridge`: the default one, `layers0`).
    Bridge(String),
    /// A namespace of its own served by `pasta` (rootless Podman's default).
    Pasta(PastaOptions),
    /// A namespace of its own served by `slirp4netns`.
    Slirp4netns(SlirpOptions),
    /// Another running container's (`container:NAME|ID`): the pod pattern, both on
    /// the same interfaces and reaching each other on localhost.
    Container(String),
}

/// `pasta:OPTIONS`: pasta's own arguments, passed on, as Podman does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PastaOptions {
    /// `--map-gw` (Podman's spelling, not pasta's): the gateway address reaches the
    /// host's loopback. Off by default (pasta is given `--no-map-gw`), as in Podman.
    pub map_gw: bool,
    /// Further pasta arguments, in order.
    pub args: Vec<String>,
}

/// `slirp4netns:OPTIONS`, Podman's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlirpOptions {
    /// `allow_host_loopback=true`: 10.0.2.2 reaches the host's loopback (default false).
    pub allow_host_loopback: bool,
    /// `mtu=N` (default 65520).
    pub mtu: Option<u32>,
}

/// pasta arguments that would take the namespace, the process or its PID file from us.
const PASTA_OURS: &[&str] =
    &["--netns", "--netns-only", "--userns", "--pid", "-P", "--foreground", "-f", "--config-net", "--runas"];

impl Network {
    /// As Docker's `--network` names it (without options).
    pub fn name(&self) -> &str {
        match self {
            Network::None => "none",
            Network::Host => "host",
            Network::Bridge(n) => n,
            Network::Pasta(_) => "pasta",
            Network::Slirp4netns(_) => "slirp4netns",
            Network::Container(_) => "container",
        }
    }

    /// The network of a container made without `--network`: `setting` (the default
    /// the settings name), else Docker's `bridge` as root; rootless, pasta where it is
    /// installed (Podman 5's choice), else slirp4netns, else `none` with a warning.
    pub fn default_for(setting: Option<&str>) -> anyhow::Result<Network> {
        if let Some(s) = setting {
            return Network::parse(s).map_err(|e| anyhow::anyhow!("default network (settings): {e}"));
        }
        if layers_store::layer::encoding::in_initial_user_namespace() {
            return Ok(Network::Bridge("bridge".into()));
        }
        if crate::userns::program("pasta").is_some() {
            return Ok(Network::Pasta(PastaOptions::default()));
        }
        if crate::userns::program("slirp4netns").is_some() {
            return Ok(Network::Slirp4netns(SlirpOptions::default()));
        }
        eprintln!(
            "layers: warning: no network but lo: a rootless container gets one from pasta or slirp4netns (apt-get install passt slirp4netns)"
        );
        Ok(Network::None)
    }

    /// Served by a user-mode network program (`run/user_net.rs`).
    pub fn user_mode(&self) -> bool {
        matches!(self, Network::Pasta(_) | Network::Slirp4netns(_))
    }

    /// `--network VALUE`; an error names the part at fault.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (mode, options) = match s.split_once(':') {
            Some((m, o)) => (m, Some(o)),
            None => (s, None),
        };
        match (mode, options) {
            ("none", None) => Ok(Network::None),
            ("host", None) => Ok(Network::Host),
            ("bridge" | "default", None) => Ok(Network::Bridge("bridge".into())),
            ("pasta", o) => pasta(o.unwrap_or("")).map(Network::Pasta),
            ("slirp4netns", o) => slirp(o.unwrap_or("")).map(Network::Slirp4netns),
            ("container", Some(c)) if !c.is_empty() => Ok(Network::Container(c.to_string())),
            ("container", _) => Err(format!("--network {s}: want container:NAME or container:ID")),
            // A user-defined network's name (looked up when the container is made).
            (name, None) if name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) =>
            {
                Ok(Network::Bridge(name.to_string()))
            }
            ("none" | "host" | "bridge" | "default", Some(_)) => {
                Err(format!("--network {s}: `{mode}` takes no options"))
            }
            _ => Err(format!(
                "--network {s}: want `bridge`, `none`, `host`, a network's name, `container:NAME`, `pasta` or `slirp4netns`"
            )),
        }
    }
}

fn pasta(options: &str) -> Result<PastaOptions, String> {
    let mut o = PastaOptions::default();
    for arg in options.split(',').filter(|a| !a.is_empty()) {
        let flag = arg.split_once('=').map_or(arg, |(f, _)| f);
        if PASTA_OURS.contains(&flag) {
            return Err(format!("--network pasta:{options}: `{flag}` is set by layers"));
        }
        match arg {
            "--map-gw" => o.map_gw = true,
            _ => o.args.push(arg.to_string()),
        }
    }
    Ok(o)
}

fn slirp(options: &str) -> Result<SlirpOptions, String> {
    let mut o = SlirpOptions::default();
    for kv in options.split(',').filter(|a| !a.is_empty()) {
        let bad = || format!("--network slirp4netns:{options}: `{kv}`");
        match kv.split_once('=') {
            Some(("allow_host_loopback", v)) => {
                o.allow_host_loopback = v.parse().map_err(|_| format!("{}: true or false", bad()))?
            }
            Some(("mtu", v)) => {
                o.mtu = Some(
                    v.parse()
                        .ok()
                        .filter(|m| (1280..=65521).contains(m))
                        .ok_or_else(|| format!("{}: an MTU from 1280 to 65521", bad()))?,
                )
            }
            _ => return Err(format!("{} is not supported (allow_host_loopback=, mtu=)", bad())),
        }
    }
    Ok(o)
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        let mut options = Vec::new();
        match &n {
            Network::Pasta(p) => {
                options.extend(p.map_gw.then(|| "--map-gw".to_string()));
                options.extend(p.args.iter().cloned());
            }
            Network::Slirp4netns(s) => {
                options.extend(s.allow_host_loopback.then(|| "allow_host_loopback=true".to_string()));
                options.extend(s.mtu.map(|m| format!("mtu={m}")));
            }
            Network::Container(c) => return format!("container:{c}"),
            Network::None | Network::Host | Network::Bridge(_) => {}
        }
        if options.is_empty() {
            n.name().to_string()
        } else {
            format!("{}:{}", n.name(), options.join(","))
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(s: String) -> Result<Network, String> {
        // Configs written before options existed name the variant.
        match s.as_str() {
            "None" => Ok(Network::None),
            "Host" => Ok(Network::Host),
            "Pasta" => Ok(Network::Pasta(PastaOptions::default())),
            "Slirp4netns" => Ok(Network::Slirp4netns(SlirpOptions::default())),
            _ => Network::parse(&s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_podmans_and_round_trip_through_the_config_spelling() {
        for s in [
            "none",
            "host",
            "bridge",
            "pasta",
            "pasta:--map-gw,-t,8080",
            "slirp4netns:allow_host_loopback=true,mtu=1500",
        ] {
            let n = Network::parse(s).unwrap();
            assert_eq!(String::from(n.clone()), s);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<Network>(&json).unwrap(), n);
        }
        let p = Network::parse("pasta:--map-gw,-t,8080").unwrap();
        assert_eq!(p, Network::Pasta(PastaOptions { map_gw: true, args: vec!["-t".into(), "8080".into()] }));
        assert_eq!(
            serde_json::from_str::<Network>("\"Slirp4netns\"").unwrap(),
            Network::Slirp4netns(SlirpOptions::default())
        );
    }

    #[test]
    fn options_we_do_not_carry_out_are_refused_by_name() {
        for (s, named) in [
            ("no such", "want `bridge`, `none`"),
            ("container:", "want container:NAME"),
            ("bridge:x", "`bridge` takes no options"),
            ("host:x", "`host` takes no options"),
            ("pasta:--netns,/x", "`--netns` is set by layers"),
            ("pasta:--pid=/tmp/p", "`--pid` is set by layers"),
            ("slirp4netns:cidr=10.1.0.0/24", "`cidr=10.1.0.0/24` is not supported"),
            ("slirp4netns:allow_host_loopback=yes", "true or false"),
            ("slirp4netns:mtu=10", "an MTU from 1280"),
        ] {
            let err = Network::parse(s).unwrap_err();
            assert!(err.contains(named), "{s}: {err}");
        }
    }
}
