//! `layers stats`: Docker's live table of running containers' resource use (CPU %,
//! memory usage / limit, network and block I/O, PIDs), read from their cgroups;
//! `--no-stream` prints one table, from two readings a second apart.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use layers_store::{ContainerRow, Store};

use crate::format;
use crate::run::cgroup::Hierarchy;
use crate::run::cgroup_stats::{sample, Sample};
use crate::run::state;
use crate::template;

// Arguments of `layers stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Every container, not only running ones.
    #[arg(short, long)]
    all: bool,
    /// One table, then exit.
    #[arg(long)]
    no_stream: bool,
    /// Full container IDs.
    #[arg(long)]
    no_trunc: bool,
    /// `table`, `json` or a Go template (`.Container`, `.Name`, `.ID`, `.CPUPerc`,
    /// `.MemUsage`, `.MemPerc`, `.NetIO`, `.BlockIO`, `.PIDs`).
    #[arg(long)]
    format: Option<String>,
    /// Containers (default: the running ones).
    containers: Vec<String>,
}

/// The header of each field in a `table` template, as Docker's.
const HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("ID", "CONTAINER ID"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const COLUMNS: &str =
    "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// How often the live table is drawn, and how far apart the readings a CPU % is from.
const INTERVAL: Duration = Duration::from_secs(1);

pub fn stats(store: &Store, a: &StatsArgs) -> anyhow::Result<ExitCode> {
    let hierarchy = Hierarchy::detect()?;
    let chosen: Vec<(String, ContainerRow)> = if a.containers.is_empty() {
        let mut all = store.snapshots().list()?;
        all.sort_by_key(|c| std::cmp::Reverse(c.created));
        all.into_iter().filter(|c| a.all || state::running(store, c).is_some()).map(|c| (c.name.clone(), c)).collect()
    } else {
        a.containers.iter().map(|n| Ok((n.clone(), store.snapshots().resolve(n)?))).collect::<anyhow::Result<_>>()?
    };
    // (when, its reading while it runs: running or paused)
    let read = |c: &ContainerRow| -> (Instant, Option<Sample>) {
        let pid = state::running(store, c).map(|r| r.pid);
        (Instant::now(), pid.map(|p| sample(&hierarchy, &c.id, Some(p))))
    };
    let mut before: Vec<_> = chosen.iter().map(|(_, c)| read(c)).collect();
    loop {
        std::thread::sleep(INTERVAL);
        let now: Vec<_> = chosen.iter().map(|(_, c)| read(c)).collect();
        let rows: Vec<serde_json::Value> = chosen
            .iter()
            .zip(before.iter().zip(&now))
            .map(|((given, c), (b, n))| row(given, c, b, n, !a.no_trunc))
            .collect();
        let table = template::listing(a.format.as_deref(), COLUMNS, HEADERS, &rows)?;
        if a.no_stream {
            outln!("{table}");
            return Ok(ExitCode::SUCCESS);
        }
        // Docker's live view: the screen cleared, the table drawn from its top.
        outln!("\x1b[2J\x1b[H{table}");
        before = now;
    }
}

/// One container's fields, CPU % from the two readings (none: it was not running).
fn row(
    given: &str,
    c: &ContainerRow,
    (t0, s0): &(Instant, Option<Sample>),
    (t1, s1): &(Instant, Option<Sample>),
    trunc: bool,
) -> serde_json::Value {
    let up = s1.is_some();
    let (s0, s1) = (s0.unwrap_or_default(), s1.unwrap_or_default());
    let dash = || "--".to_string();
    let cpu = match (s0.cpu_ns, s1.cpu_ns) {
        (Some(a), Some(b)) if up => {
            let wall = t1.duration_since(*t0).as_nanos().max(1) as f64;
            format!("{:.2}%", b.saturating_sub(a) as f64 / wall * 100.0)
        }
        _ if !up => "0.00%".to_string(),
        _ => dash(),
    };
    let (mem, mem_perc) = match (s1.memory, s1.memory_limit) {
        (Some(m), Some(l)) => (
            format!("{} / {}", format::binary_size(m), format::binary_size(l)),
            format!("{:.2}%", m as f64 / l.max(1) as f64 * 100.0),
        ),
        _ if !up => ("0B / 0B".to_string(), "0.00%".to_string()),
        _ => (dash(), dash()),
    };
    let pair = |p: Option<(u64, u64)>| match p {
        Some((i, o)) => format!("{} / {}", format::size(i), format::size(o)),
        None if !up => "0B / 0B".to_string(),
        None => dash(),
    };
    serde_json::json!({
        "Container": given,
        "Name": c.name,
        "ID": if trunc { c.short_id().to_string() } else { c.id.clone() },
        "CPUPerc": cpu,
        "MemUsage": mem,
        "MemPerc": mem_perc,
        "NetIO": pair(s1.net),
        "BlockIO": pair(s1.block),
        "PIDs": s1.pids.map_or_else(|| if up { dash() } else { "0".into() }, |p| p.to_string()),
    })
}
