//! `layers`: pull, import, store, mount, run and build OCI root filesystems.

// unsafe is allowed in one module, src/run/kernel.rs (fork, unshare, ioctl), each use justified.
#![deny(unsafe_code)]

/// `println!` that ends the process quietly when stdout is a closed pipe (`layers images | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            eprintln!("layers: write to stdout: {e}");
            std::process::exit(crate::EXIT_ERROR as i32);
        }
    }};
}

// `std::fs` on joined paths is refused in the binary as in the library (clippy.toml):
// paths beneath a root someone else controls go through `layers_store::fsroot`. The
// modules below opt out where they touch only paths of their own, each saying which.

// Files the user named on the command line (an env file, a seccomp profile).
#[allow(clippy::disallowed_methods)]
mod bounded;
mod builder;
// Host paths the user named (`-o`, `-i`, `--env-file`, `cp`'s host side) and the
// store's own dirs; a container's root is reached through `fsroot` (cp.rs).
#[allow(clippy::disallowed_methods)]
mod cli;
mod format;
// The store's own staging dir.
#[allow(clippy::disallowed_methods)]
mod interrupt;
// The store's own event log, beneath its root.
#[allow(clippy::disallowed_methods)]
mod events;
// Files of the store's own: container logs, the event log.
#[allow(clippy::disallowed_methods)]
mod json_lines;
// Host paths of its own: /proc, /run/layers/networks, the network settings files.
#[allow(clippy::disallowed_methods)]
mod network;
// The user's credential and registries files.
#[allow(clippy::disallowed_methods)]
mod registry;
mod run;
mod template;
mod transfer;
// Host paths of its own: the user's runtime dir, /proc, /etc/subuid, /etc/subgid, /etc/passwd.
#[allow(clippy::disallowed_methods)]
mod userns;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cli::{archive, containers, images, import, login, maintenance};
use layers_store::{Limits, Store};

/// Exit status for a usage error, and for `run` or `create` failing before the
/// container's command starts (Docker's 125).
const EXIT_FAILURE: u8 = 125;
/// Exit status for any other failed command, as Docker's CLI gives it.
const EXIT_ERROR: u8 = 1;

#[derive(Parser)]
#[command(name = "layers", version, about = "Content-addressed OCI layer store and image builder")]
struct Cli {
    /// Store directory [env: LAYERS_ROOT] (default: /var/lib/layers as root, else
    /// $XDG_DATA_HOME/layers).
    // Global flags are listed after each verb's own (display_order), in this order.
    #[arg(long, global = true, value_name = "DIR", display_order = 1000)]
    root: Option<PathBuf>,
    /// Largest uncompressed layer accepted, in bytes (stops gzip bombs) [env: LAYERS_MAX_LAYER_SIZE].
    #[arg(long, global = true, value_name = "BYTES", display_order = 1001)]
    max_layer_size: Option<u64>,
    /// Most tar entries accepted in one layer [env: LAYERS_MAX_LAYER_ENTRIES].
    #[arg(long, global = true, value_name = "N", display_order = 1002)]
    max_layer_entries: Option<u64>,
    /// Keep the store under this size (`20GB`), evicting what was used least recently;
    /// default: `max-size` in `<root>/store.toml`, else no budget [env: LAYERS_MAX_STORE_SIZE].
    #[arg(long, global = true, value_name = "SIZE", display_order = 1003)]
    max_store_size: Option<String>,
    /// Registry configuration (mirrors, plain-http registries); see the README
    /// [env: LAYERS_REGISTRIES_CONFIG].
    #[arg(long, global = true, value_name = "FILE", display_order = 1004)]
    registries_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Each verb's flags are built only when that verb runs (building them all took 0.5 ms
// of every command). Its description is the variant's: the Args structs carry plain
// comments, as a doc comment there would replace it when the flags are built.
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Pull an image from a registry.
    Pull(cli::pull::PullArgs),
    /// Save credentials for a registry (verified first).
    Login(login::LoginArgs),
    /// Forget a registry's saved credentials.
    Logout(login::LogoutArgs),
    /// Import a rootfs tarball (plain, gzip or zstd) as a single-layer image.
    Import(import::ImportArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Show images and containers as JSON (Docker's shape; --raw: the OCI manifest and config).
    Inspect(cli::inspect::InspectArgs),
    /// Show how an image was made, newest step first.
    History(cli::history::HistoryArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Remove image names, and images nothing names any more.
    Rmi(images::RmiArgs),
    /// Push an image to a registry.
    Push(cli::push::PushArgs),
    /// Build an image from a Dockerfile.
    Build(Box<cli::build::BuildArgs>),
    /// Run a command in a new container.
    Run(Box<cli::run::RunArgs>),
    /// Run a command in a running container.
    Exec(cli::run::ExecArgs),
    /// Stop running containers: the stop signal, then SIGKILL after a grace time.
    Stop(cli::control::StopArgs),
    /// Send a signal to running containers.
    Kill(cli::control::KillArgs),
    /// Pause every process of running containers (the cgroup freezer).
    Pause(cli::control::PauseArgs),
    /// Unpause paused containers.
    Unpause(cli::control::PauseArgs),
    /// Show containers' resource use (CPU, memory, network and block I/O, PIDs), live.
    Stats(cli::stats::StatsArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(cli::control::WaitArgs),
    /// Copy files between a container and the host (CONTAINER:PATH on one side).
    Cp(cli::cp::CpArgs),
    /// Show a running container's processes (the host's `ps`, its lines for the container).
    Top(cli::top::TopArgs),
    /// Print a container's output.
    Logs(cli::control::LogsArgs),
    /// List a container's published ports (`-p`).
    Port(cli::port::PortArgs),
    /// Attach our stdin, stdout and stderr to a running container.
    Attach(cli::attach::AttachArgs),
    /// Create a container (a writable layer) on an image, with `run`'s options.
    Create(Box<containers::CreateArgs>),
    /// Start created or stopped containers (under a monitor; -a: attached).
    Start(cli::lifecycle::StartArgs),
    /// Stop and start containers again.
    Restart(cli::lifecycle::RestartArgs),
    /// Rename a container.
    Rename(cli::lifecycle::RenameArgs),
    /// Mount a container (or a new one on an image) and print where.
    Mount(containers::MountArgs),
    /// Unmount containers.
    #[command(alias = "unmount")]
    Umount(containers::UmountArgs),
    /// List containers.
    Ps(cli::ps::PsArgs),
    /// Remove containers and their changes.
    Rm(containers::RmArgs),
    /// Show a container's changes to its image (A added, C changed, D deleted).
    Diff(containers::DiffArgs),
    /// Make a new image from a container's changes.
    Commit(containers::CommitArgs),
    /// Write a container's or image's flattened root filesystem as a tar.
    Export(archive::ExportArgs),
    /// Write images as a docker-archive tar or an OCI layout.
    Save(archive::SaveArgs),
    /// Load images from an OCI layout (directory or tar) or a docker-archive.
    Load(archive::LoadArgs),
    /// Manage the build cache (`builder prune`, `builder build`).
    #[command(subcommand)]
    Builder(maintenance::BuilderCommand),
    /// Keep an image out of eviction (the store's size budget).
    Pin(cli::budget::PinArgs),
    /// Let eviction take a pinned image again.
    Unpin(cli::budget::PinArgs),
    /// Remove layers and blobs no image references; evict by size or age.
    Gc(maintenance::GcArgs),
    /// Verify every blob, layer and image in the store.
    Fsck(maintenance::FsckArgs),
    /// Show disk usage of the store.
    Df(cli::df::DfArgs),
    /// Show what happened to the store's containers and images, as it happens (or between times).
    Events(cli::events::EventsArgs),
    /// Print a shell completion script (`layers completion bash > /etc/bash_completion.d/layers`).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run a shell (or CMD) in the user namespace rootless commands use, where
    /// `layers mount` paths work (as `podman unshare`).
    Unshare {
        /// The command and its arguments (default: $SHELL).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Write man pages (`layers.1`, `layers-run.1`, …) into a directory.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
    /// Show this build's version.
    Version(cli::system::FormatArgs),
    /// Show the store (path, format, counts) and the kernel features found.
    Info(cli::system::FormatArgs),
    /// Manage named volumes.
    #[command(subcommand)]
    Volume(cli::volume::VolumeCommand),
    /// List and inspect the networks a container can have (`none`, `host`).
    #[command(subcommand)]
    Network(cli::network::NetworkCommand),
    /// Manage containers: Docker's `container ls`, `container rm`, … and `container prune`.
    #[command(subcommand)]
    Container(cli::prune::ContainerCommand),
    /// Manage images: Docker's `image ls`, `image rm`, … and `image prune`.
    #[command(subcommand)]
    Image(cli::prune::ImageCommand),
    /// Manage the store as a whole (`system prune`, `system df`, `system info`).
    #[command(subcommand)]
    System(SystemCommand),
    /// A detached container's monitor (started by `run -d`, `start`, `restart`).
    #[command(hide = true, name = "container-monitor")]
    ContainerMonitor(cli::lifecycle::MonitorArgs),
}

/// `layers system …`.
#[derive(Subcommand)]
enum SystemCommand {
    /// Remove stopped containers, unnamed images (-a: unused ones) and the build cache.
    Prune(cli::prune::SystemPruneArgs),
    /// Show disk usage of the store (as `layers df`).
    Df(cli::df::DfArgs),
    /// Show the store and the kernel features found (as `layers info`).
    Info(cli::system::FormatArgs),
}

/// glibc gives each new thread an arena of its own, up to eight per core, and keeps
/// what is freed in one for that arena: every layer's pipeline threads left their
/// peak behind, so a pull's memory grew with its layer count. One arena per core
/// keeps it flat (the pull bench's peak RSS at 1x, 2x and 4x the image).
fn bound_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no thread has started yet.
    #[allow(unsafe_code)]
    unsafe {
        // The affinity mask, not available_parallelism: that reads cgroup files, 0.1 ms
        // of every command's start.
        let cores = rustix::thread::sched_getaffinity(None).map_or(2, |set| set.count());
        libc::mallopt(libc::M_ARENA_MAX, cores.clamp(1, 8) as libc::c_int);
    }
}

fn main() -> ExitCode {
    run::phases::mark("main");
    bound_malloc_arenas();
    // The rootless namespace's pause process: no CLI, nothing else runs first.
    if std::env::args_os().nth(1).is_some_and(|a| a == "userns-pause") {
        return userns::pause_main();
    }
    let cli = match parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            match cli::unknown_flag::message(&e) {
                Some(m) => eprintln!("layers: {m}"),
                None => drop(e.print()),
            }
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let cli = match cli.with_env_defaults() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("layers: {}", one_line(&e));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    run::phases::mark("arguments parsed");
    let failed = cli.command.failure_status();
    let result = run(cli);
    run::phases::mark("store closed, returning");
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("layers: {}", one_line(&e));
            ExitCode::from(failed)
        }
    }
}

/// The command line, with Docker's management-command forms (`image ls`) parsed as
/// the verbs they are. Only a line that uses one builds the full command tree.
fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    // One tree built for the common line: the management check reads its globals only.
    let top = Cli::command();
    if !cli::management::uses_management(&top, &args) {
        return Cli::from_arg_matches_mut(&mut top.try_get_matches_from(args)?);
    }
    // The augmented tree checks the line and gives its help and errors as typed.
    let mut matches = cli::management::augment(top.clone()).try_get_matches_from(&args)?;
    match cli::management::rewrite(&top, &args) {
        Some(verb) => Cli::from_arg_matches_mut(&mut top.try_get_matches_from(verb)?),
        None => Cli::from_arg_matches_mut(&mut matches),
    }
}

/// The whole command tree, management-command aliases included (completions, man).
fn full_command() -> clap::Command {
    use clap::CommandFactory;
    cli::management::augment(Cli::command())
}

impl Command {
    /// Docker's exit status when this command fails: 125 for `run` and `create` (their
    /// own failure, told apart from the command's status), 1 for every other command.
    /// (`exec`'s command that cannot start is 126, the command's status, as dockerd
    /// sets it.)
    fn failure_status(&self) -> u8 {
        match self {
            Command::Run(_) | Command::Create(_) => EXIT_FAILURE,
            _ => EXIT_ERROR,
        }
    }
}

impl Cli {
    /// The global options a flag did not give, from the environment. Read here rather
    /// than by clap's `env`: clap shows an option set that way in every usage line, as
    /// if it were required (`Usage: layers run --root <DIR> <IMAGE>`).
    fn with_env_defaults(mut self) -> anyhow::Result<Cli> {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        }
        fn number(name: &str) -> anyhow::Result<Option<u64>> {
            var(name).map(|v| v.parse().with_context(|| format!("${name}={v}: not a number"))).transpose()
        }
        self.root = self.root.or_else(|| var("LAYERS_ROOT").map(PathBuf::from));
        self.max_layer_size = match self.max_layer_size {
            Some(n) => Some(n),
            None => number("LAYERS_MAX_LAYER_SIZE")?,
        };
        self.max_layer_entries = match self.max_layer_entries {
            Some(n) => Some(n),
            None => number("LAYERS_MAX_LAYER_ENTRIES")?,
        };
        self.max_store_size = self.max_store_size.or_else(|| var("LAYERS_MAX_STORE_SIZE"));
        self.registries_config = self.registries_config.or_else(|| var("LAYERS_REGISTRIES_CONFIG").map(PathBuf::from));
        Ok(self)
    }
}

/// One man page for `layers` and one per verb (`layers-run.1`, `layers-system-prune.1`).
// The directory the user named for the pages.
#[allow(clippy::disallowed_methods)]
fn man_pages(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    fn write(cmd: clap::Command, name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone().name(name.to_string())).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    write(full_command(), "layers", dir)?;
    outln!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `layers unshare`: runs the command in the namespace `enter` joined.
fn unshare(command: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    if layers_store::layer::encoding::in_initial_user_namespace() {
        anyhow::bail!("unshare: only a rootless user has a namespace to enter (root works in the host's)");
    }
    let (program, args) = match command.split_first() {
        Some((p, a)) => (p.clone(), a),
        None => (std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into()), &[][..]),
    };
    let err = std::process::Command::new(&program).args(args).exec();
    Err(anyhow::Error::new(err).context(format!("unshare: run {}", program.to_string_lossy())))
}

fn registries(cli: &Cli) -> anyhow::Result<registry::config::RegistriesConfig> {
    registry::config::RegistriesConfig::load(cli.registries_config.as_deref())
}

/// `context: cause: cause`, on one line, control characters (from a registry's
/// answer, a file, a tar entry) escaped.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
    if let Some(a) = advice(e) {
        text.push_str("; ");
        text.push_str(a);
    }
    format::printable(&text).into_owned()
}

/// What the user can do about a store error of this kind, in this CLI's verbs (the
/// library says what happened, not which command to type).
fn advice(e: &anyhow::Error) -> Option<&'static str> {
    let kind = e.chain().find_map(|c| c.downcast_ref::<layers_store::Error>())?.kind();
    match kind {
        layers_store::ErrorKind::TooManyLayers => Some("squash the image (`layers export`, then `layers import`)"),
        layers_store::ErrorKind::Interrupted => Some("`layers gc` recovers it"),
        layers_store::ErrorKind::Remote => {
            Some("`layers pull` it by its registry name (or `run`, `save` it) to fetch them")
        }
        _ => None,
    }
}

fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    let mut store = Store::open(&root).with_context(|| format!("open store {}", root.display()))?;
    let mut limits = Limits::default();
    if let Some(n) = cli.max_layer_size {
        limits.max_bytes = n;
    }
    if let Some(n) = cli.max_layer_entries {
        limits.max_entries = n;
    }
    store.set_limits(limits);
    Ok(store)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Credentials are not the store's business: no store is opened for them.
    match &cli.command {
        Command::Login(a) => {
            return login::login(a, &registries(&cli)?, &transfer::Transfers::new());
        }
        Command::Logout(a) => return login::logout(a),
        Command::Version(a) => return cli::system::version(a),
        Command::Network(c) => return cli::network::network(c, &cli.root.clone().unwrap_or_else(Store::default_root)),
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut full_command(), "layers", &mut script);
            outln!("{}", String::from_utf8_lossy(&script).trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => return man_pages(dir),
        Command::Unshare { command } => {
            userns::enter()?;
            return unshare(command);
        }
        _ => {}
    }
    // Rootless: every command on a store works in the user's namespace (no-op for root).
    userns::enter()?;
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let store = open_store(&cli)?;
    cli::options::convert_legacy(&store);
    let stages = matches!(
        cli.command,
        Command::Pull(_) | Command::Import(_) | Command::Load(_) | Command::Build(_) | Command::Commit(_)
    );
    if stages {
        interrupt::clean_staging_when_gone(store.root())?;
    }
    let budget = cli::budget::budget(&store, cli.max_store_size.as_deref())?;
    let adds_content = matches!(
        cli.command,
        Command::Pull(_)
            | Command::Import(_)
            | Command::Load(_)
            | Command::Build(_)
            | Command::Commit(_)
            // They pull what is missing.
            | Command::Run(_)
            | Command::Create(_)
            // They fetch a remote image's layers.
            | Command::Mount(_)
            | Command::Export(_)
            | Command::Save(_)
            | Command::Push(_)
    );
    // Within the budget while content comes in, each commit followed by what eviction it needs.
    let evicted = (adds_content && budget != Default::default()).then(|| store.gc().keep_within(budget, started));
    // One runtime for every transfer of this process, quiesced before a container starts.
    let transfers = transfer::Transfers::new();
    let code = match &cli.command {
        Command::Pull(a) => cli::pull::run(&store, a, &registries(&cli)?, &transfers),
        Command::Push(a) => cli::push::run(&store, a, &registries(&cli)?, &transfers),
        Command::Import(a) => import::run(&store, a),
        Command::Images(a) => images::images(&store, a),
        Command::Inspect(a) => cli::inspect::inspect(&store, a),
        Command::History(a) => cli::history::history(&store, a),
        Command::Tag(a) => images::tag(&store, a),
        Command::Rmi(a) => images::rmi(&store, a),
        Command::Login(_) | Command::Logout(_) => unreachable!("handled before the store is opened"),
        Command::Build(a) => cli::build::build(&store, a, &registries(&cli)?, &transfers),
        Command::Run(a) => cli::run::run(&store, a, &registries(&cli)?, &transfers),
        Command::Exec(a) => cli::run::exec(&store, a, &transfers),
        Command::Stop(a) => cli::control::stop(&store, a),
        Command::Kill(a) => cli::control::kill(&store, a),
        Command::Wait(a) => cli::control::wait(&store, a),
        Command::Pause(a) => cli::control::pause(&store, a, true),
        Command::Unpause(a) => cli::control::pause(&store, a, false),
        Command::Stats(a) => cli::stats::stats(&store, a),
        Command::Events(a) => cli::events::events(&store, a),
        Command::Logs(a) => cli::control::logs(&store, a),
        Command::Top(a) => cli::top::top(&store, a),
        Command::Port(a) => cli::port::port(&store, a),
        Command::Attach(a) => cli::attach::attach(&store, a),
        Command::Cp(a) => cli::cp::cp(&store, a),
        Command::Create(a) => containers::create(&store, a, &registries(&cli)?, &transfers),
        Command::Start(a) => cli::lifecycle::start(&store, a, &transfers),
        Command::ContainerMonitor(a) => cli::lifecycle::monitor(&store, a, &transfers),
        Command::Restart(a) => cli::lifecycle::restart(&store, a),
        Command::Rename(a) => cli::lifecycle::rename(&store, a),
        Command::Mount(a) => containers::mount(&store, a, &|| registries(&cli), &transfers),
        Command::Umount(a) => containers::umount(&store, a),
        Command::Ps(a) => cli::ps::ps(&store, a),
        Command::Rm(a) => containers::rm(&store, a),
        Command::Diff(a) => containers::diff(&store, a),
        Command::Commit(a) => containers::commit(&store, a),
        Command::Export(a) => archive::export(&store, a, &|| registries(&cli), &transfers),
        Command::Save(a) => archive::save(&store, a, &|| registries(&cli), &transfers),
        Command::Load(a) => archive::load(&store, a),
        Command::Gc(a) => maintenance::gc_with(&store, a),
        Command::Pin(a) => cli::budget::pin(&store, a, true),
        Command::Unpin(a) => cli::budget::pin(&store, a, false),
        Command::Builder(c) => maintenance::builder(&store, c),
        Command::Fsck(a) => maintenance::fsck(&store, a.quick),
        Command::Df(a) | Command::System(SystemCommand::Df(a)) => cli::df::df(&store, a),
        Command::Container(c) => cli::prune::container(&store, c),
        Command::Volume(c) => cli::volume::volume(&store, c),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => cli::system::info(&store, a),
        Command::Version(_)
        | Command::Completion { .. }
        | Command::Man { .. }
        | Command::Network(_)
        | Command::Unshare { .. } => {
            unreachable!("handled before the store is opened")
        }
        Command::Image(c) => cli::prune::image(&store, c),
        Command::System(SystemCommand::Prune(a)) => cli::prune::system(&store, a),
    };
    // After a command that added content, the store is brought back within its budget.
    if adds_content {
        cli::budget::enforce(&store, &budget, started, evicted.as_ref())?;
    }
    code
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        super::full_command().debug_assert();
    }
}
