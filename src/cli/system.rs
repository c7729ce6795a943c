//! `layers version` and `layers info`: what this build is, and what the store and
//! the kernel under it offer (the features `run` and the store rely on, found by
//! asking the kernel, not by reading its version).

use std::process::ExitCode;

use clap::Args;
use layers_store::Store;

use crate::run::cgroup::Hierarchy;
use crate::template::{self, Format};

// Arguments of `layers version` and `layers info`.
#[derive(Args)]
pub struct FormatArgs {
    /// A Go template (`{{.Version}}`, `{{json .}}`), or `json`.
    #[arg(short, long)]
    format: Option<String>,
}

fn print(
    v: serde_json::Value,
    format: Option<&str>,
    text: impl FnOnce(&serde_json::Value) -> String,
) -> anyhow::Result<ExitCode> {
    // Docker takes these formats as written (no `\t`/`\n` replaced).
    match Format::parse_raw(format) {
        Format::Table => outln!("{}", text(&v)),
        f => outln!("{}", template::render(&f, &[], &[v])?.trim_end_matches('\n')),
    }
    Ok(ExitCode::SUCCESS)
}

fn os_arch() -> String {
    format!("linux/{}", crate::transfer::platform::Platform::host().architecture)
}

/// `layers version`.
pub fn version(a: &FormatArgs) -> anyhow::Result<ExitCode> {
    // Docker's version object has a Client and a Server; with no daemon, both are
    // this build (as `podman version` shows them), the Server with the kernel.
    let client = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "StoreFormat": layers_store::meta::FORMAT_VERSION,
        "Os": "linux",
        "Arch": crate::transfer::platform::Platform::host().architecture,
    });
    let mut server = client.clone();
    server["KernelVersion"] = kernel_release().into();
    let v = serde_json::json!({"Client": client, "Server": server});
    print(v, a.format.as_deref(), |v| {
        let s = &v["Server"];
        format!(
            "layers:\n Version:        {}\n Store format:   {}\n OS/Arch:        {}\n Kernel:         {}",
            s["Version"].as_str().unwrap_or_default(),
            s["StoreFormat"],
            os_arch(),
            s["KernelVersion"].as_str().unwrap_or_default()
        )
    })
}

fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// `layers info`.
pub fn info(store: &Store, a: &FormatArgs) -> anyhow::Result<ExitCode> {
    let containers = store.snapshots().list()?;
    let running = containers.iter().filter(|c| crate::run::state::running(store, c).is_some()).count();
    let images = store.images().list()?.len();
    let (cgroup_version, controllers) = cgroups();
    let seccomp = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").is_ok();
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    let backing = rustix::fs::statfs(store.root()).map(|s| fs_name(s.f_type)).unwrap_or("unknown");
    let v = serde_json::json!({
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersStopped": containers.len() - running,
        "Images": images,
        "StoreRoot": store.root(),
        "StoreFormat": layers_store::meta::FORMAT_VERSION,
        "StoreEncoding": store.encoding().name(),
        "Driver": "overlay",
        "BackingFilesystem": backing,
        "Metadata": "sqlite (WAL)",
        "OverlayLowerdirPlus": layers_store::snapshots::mount::lowerdir_plus_supported(),
        "CgroupVersion": cgroup_version,
        "CgroupControllers": controllers,
        "Seccomp": seccomp,
        "UserNamespaces": userns,
        "KernelVersion": kernel_release(),
        "OSType": "linux",
        "Architecture": crate::transfer::platform::Platform::host().architecture,
    });
    print(v, a.format.as_deref(), |v| {
        let yes = |k: &str| if v[k] == true { "yes" } else { "no" };
        format!(
            "Containers: {}\n Running: {}\n Stopped: {}\nImages: {}\nStore:\n Root: {}\n Format: {}\n Encoding: {}\n Driver: overlay ({} lowerdir+)\n Backing Filesystem: {}\n Metadata: sqlite (WAL)\nKernel:\n Version: {}\n Cgroup: {} ({})\n Seccomp: {}\n User namespaces: {}\nArchitecture: {}",
            v["Containers"],
            v["ContainersRunning"],
            v["ContainersStopped"],
            v["Images"],
            store.root().display(),
            v["StoreFormat"],
            v["StoreEncoding"].as_str().unwrap_or_default(),
            if v["OverlayLowerdirPlus"] == true { "fsconfig" } else { "no" },
            v["BackingFilesystem"].as_str().unwrap_or_default(),
            v["KernelVersion"].as_str().unwrap_or_default(),
            v["CgroupVersion"].as_str().unwrap_or_default(),
            v["CgroupControllers"].as_array().map(|c| c.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
            yes("Seccomp"),
            yes("UserNamespaces"),
            v["Architecture"].as_str().unwrap_or_default(),
        )
    })
}

/// The cgroup hierarchy `run` uses and the controllers it has.
fn cgroups() -> (&'static str, Vec<String>) {
    match Hierarchy::detect() {
        Ok(Hierarchy::V2(root)) => {
            let c = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            ("2", c.split_whitespace().map(str::to_string).collect())
        }
        Ok(Hierarchy::V1(root)) => {
            let mut found: Vec<String> = std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join("tasks").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            found.sort();
            ("1", found)
        }
        Err(_) | Ok(Hierarchy::Unavailable(_)) => ("none usable", Vec::new()),
    }
}

/// A filesystem's name by its `statfs` magic.
fn fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        _ => "other",
    }
}
