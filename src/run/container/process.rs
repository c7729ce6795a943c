//! One container run, described by a typed [`RunSpec`]: what `layers run` parses its
//! flags into and what a build's RUN step builds directly. The same code runs both.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use layers_store::images::oci::RuntimeConfig;
use layers_store::{ContainerRow, Store};

use super::config::Seccomp;
use super::dir::ContainerDir;
use super::monitor::Report;
use super::network::Network;
use super::{files, state};
use crate::network::bridge::Attachment;
use crate::run::log::{LogOptions, LogWriter};
use crate::run::phases::mark;
use crate::run::{cgroup, child, console, image_process, supervise, users, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND};
use crate::transfer::Quiesced;

/// Where the command's output goes.
pub enum Output {
    /// Our stdout and stderr.
    Inherit,
    /// stdout to /dev/null (stderr stays ours).
    Discard,
    /// Through pipes (or its pty) into the container's log, and to ours as well when
    /// `echo` (attached, not detached).
    Logged { log: LogOptions, echo: bool },
}

/// How the command was launched.
pub enum Launched {
    /// It ran and ended so.
    Ran(std::process::ExitStatus),
    /// It could not be run (126) or found (127): the code a shell gives, and why.
    NotRun { code: u8, message: String },
}

/// Everything a run needs besides the container and its image config.
pub struct RunSpec {
    /// Entrypoint, command, env, workdir, user and hostname over the image's.
    pub overrides: image_process::Overrides,
    /// Its network namespace.
    pub network: Network,
    /// Ports published on the host (a bridge network only).
    pub ports: Vec<crate::network::ports::PortMap>,
    /// The image's exposed ports published too.
    pub publish_all: bool,
    /// `--dns`, `--dns-search`, `--add-host`.
    pub resolver: super::config::Resolver,
    /// Host paths bind-mounted in (each host path exists).
    pub binds: Vec<child::Bind>,
    /// tmpfs mounts: target and mount options.
    pub tmpfs: Vec<(String, String)>,
    /// cgroup limits.
    pub limits: cgroup::Limits,
    /// The capabilities it keeps.
    pub caps: rustix::thread::CapabilitySet,
    /// Its seccomp profile.
    pub seccomp: Seccomp,
    /// Every capability, no /proc masks, no no_new_privs.
    pub privileged: bool,
    /// The root filesystem mounted read-only.
    pub read_only: bool,
    /// A small init as PID 1.
    pub init: bool,
    /// A pty of its own.
    pub tty: bool,
    /// Our stdin passed on.
    pub interactive: bool,
    /// Where its output goes.
    pub output: Output,
    /// Told once the command runs (a detached container's monitor tells its starter).
    pub report: Option<std::rc::Rc<Report>>,
    /// The container's events (`start`, `die`) are recorded as this one's actor's;
    /// `None`: none are (a build step).
    pub events: Option<crate::events::Actor>,
}

impl RunSpec {
    /// Docker's defaults: a network of its own, the default capabilities and seccomp
    /// profile, no limits, no mounts, nothing over the image's process.
    pub fn defaults(output: Output) -> anyhow::Result<RunSpec> {
        Ok(RunSpec {
            overrides: image_process::Overrides::default(),
            network: Network::None,
            ports: Vec::new(),
            publish_all: false,
            resolver: Default::default(),
            binds: Vec::new(),
            tmpfs: Vec::new(),
            limits: cgroup::Limits::default(),
            caps: crate::run::caps::effective(&[], &[]).map_err(anyhow::Error::msg)?,
            seccomp: Seccomp::Default,
            privileged: false,
            read_only: false,
            init: false,
            tty: false,
            interactive: false,
            output,
            report: None,
            events: None,
        })
    }
}

/// How a run ended.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Ended {
    /// The exit code as a shell reports it.
    pub code: u8,
    /// Killed by the OOM killer of its cgroup.
    pub oom_killed: bool,
    /// The memory limit it had, in bytes.
    pub memory_limit: Option<u64>,
    /// Why the command could not be run, when it could not (`code` is 126 or 127).
    pub not_run: Option<String>,
}

/// Runs `s` in `container` (made on an image whose runtime defaults are `config`),
/// waits for it and records how it ended. `image` names the image in messages. The
/// process is forked from this one, which no transfer thread may share (`Quiesced`).
pub fn run_container(
    store: &Store,
    container: &ContainerRow,
    config: &RuntimeConfig,
    image: &str,
    s: &RunSpec,
    _single_threaded: &Quiesced,
) -> anyhow::Result<Ended> {
    if let Network::Bridge(name) = &s.network {
        let settings = crate::network::settings::Settings::load(store.root())?;
        let net = crate::network::defs::find(&settings, name)?
            .with_context(|| format!("--network {name}: network {name} not found"))?;
        let holder = crate::network::ipam::Holder::this_process()?;
        let who = crate::network::ipam::Joined {
            container: container.id.clone(),
            name: container.name.clone(),
            hostname: s.overrides.hostname.clone(),
            hosts: Some(ContainerDir::of(store, &container.id).file(super::dir::File::Hosts)),
            extra_hosts: s.resolver.hosts.clone(),
        };
        let attached = crate::network::bridge::attach(&settings, &net, &who, &holder, &published(s, config)?)
            .with_context(|| format!("--network {name}"))?;
        let ports = attached.ports();
        return run_here(store, container, config, image, s, Some(&attached), ports);
    }
    if s.network.user_mode() {
        // The fork joins the network namespace the program serves (it cannot leave it).
        let dir = ContainerDir::of(store, &container.id);
        return crate::run::kernel::in_fork(|| {
            let (_net, ports) = crate::run::user_net::attach(&s.network, dir.path(), &published(s, config)?)?;
            run_here(store, container, config, image, s, None, ports)
        });
    }
    if layers_store::layer::encoding::in_initial_user_namespace() {
        return run_here(store, container, config, image, s, None, Vec::new());
    }
    // Rootless: a process that unshared a PID namespace for its children cannot take
    // it back, and a second one is refused; each container starts from a fork.
    crate::run::kernel::in_fork(|| run_here(store, container, config, image, s, None, Vec::new()))
}

/// The network namespace of the running container `other` (`--network container:`).
fn network_of(store: &Store, other: &str) -> anyhow::Result<OwnedFd> {
    let c = store.snapshots().resolve(other).with_context(|| format!("--network container:{other}"))?;
    let Some(running) = state::running(store, &c) else {
        bail!("--network container:{other}: container {} is not running", c.name);
    };
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", running.pid))
        .with_context(|| format!("--network container:{other}: open its network namespace"))?;
    Ok(OwnedFd::from(ns))
}

/// What a container gets from around it: its `/etc` files and its network namespace.
struct Surroundings {
    etc: Vec<(PathBuf, String)>,
    network: child::ChildNetwork,
    /// Its published ports, host ports resolved.
    ports: Vec<crate::network::ports::PortMap>,
    /// Its address on a bridge.
    address: Option<std::net::Ipv4Addr>,
}

/// `-p` and, with `-P`, the image's exposed ports.
fn published(s: &RunSpec, config: &RuntimeConfig) -> anyhow::Result<Vec<crate::network::ports::PortMap>> {
    let mut ports = s.ports.clone();
    if s.publish_all {
        let exposed = config.exposed_ports.iter().flat_map(|m| m.keys());
        ports.extend(crate::network::ports::exposed(exposed)?);
    }
    Ok(ports)
}

/// Runs `s` from this process; `bridge` is its place on a bridge network, if any, and
/// `ports` what it publishes (host ports resolved).
fn run_here(
    store: &Store,
    container: &ContainerRow,
    config: &RuntimeConfig,
    image: &str,
    s: &RunSpec,
    bridge: Option<&Attachment>,
    ports: Vec<crate::network::ports::PortMap>,
) -> anyhow::Result<Ended> {
    let process =
        image_process::process(config, &s.overrides, |k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let mut cg = cgroup::Cgroup::create(&cgroup::Hierarchy::detect()?, &container.id, &s.limits)?;
    mark("cgroup made");
    let address = bridge.and_then(Attachment::address);
    let etc = files::etc_files(&ContainerDir::of(store, &container.id), &s.overrides.hostname, address, &s.resolver)?;
    mark("/etc files written");
    if let Some(b) = bridge {
        b.announce();
    }
    let network = match (bridge, &s.network) {
        (Some(b), _) => child::ChildNetwork::Join(b.netns.try_clone().context("pass on the network namespace")?),
        (None, Network::None) => child::ChildNetwork::Own,
        (None, Network::Container(other)) => child::ChildNetwork::Join(network_of(store, other)?),
        (None, _) => child::ChildNetwork::Inherited,
    };
    let began = std::time::Instant::now();
    let launched =
        spawn_and_wait(store, container, &process, &cg, Surroundings { etc, network, ports, address }, image, s);
    // Later children of this process (a build's next step) are born in our own PID
    // namespace again (rootless, this process is a fork that ends here instead).
    if layers_store::layer::encoding::in_initial_user_namespace() {
        crate::run::kernel::restore_pid_namespace_for_children()?;
    }
    let (code, oom_killed, not_run) = match launched? {
        // Killed by SIGKILL: directly, or as the command under --init (128 + 9).
        Launched::Ran(status) => {
            let oom = (status.signal() == Some(9) || status.code() == Some(137)) && cg.oom_killed();
            (crate::run::exit_code(status), oom, None)
        }
        Launched::NotRun { code, message } => (code, false, Some(message)),
    };
    let memory_limit = cg.memory_limit();
    cg.remove();
    mark("cgroup removed");
    state::set_exited(
        store,
        &container.id,
        &state::Exited { code, finished: layers_store::meta::now(), oom_killed, error: None },
    );
    // Docker's `die` says how it ended and how long it ran (whole seconds).
    if let Some(e) = &s.events {
        // Renamed while it ran: Docker names it as it is now.
        let name = store.snapshots().resolve(&container.id).map_or_else(|_| container.name.clone(), |c| c.name);
        let ran = began.elapsed().as_secs().to_string();
        e.clone().with("exitCode", code.to_string()).with("execDuration", ran).with("name", name).record(store, "die");
    }
    mark("recorded exited");
    Ok(Ended { code, oom_killed, memory_limit, not_run })
}

fn spawn_and_wait(
    store: &Store,
    container: &ContainerRow,
    process: &image_process::Process,
    cg: &cgroup::Cgroup,
    around: Surroundings,
    image: &str,
    s: &RunSpec,
) -> anyhow::Result<Launched> {
    let Surroundings { etc, network, ports, address } = around;
    let dir = ContainerDir::of(store, &container.id);
    let mut mount = store.snapshots().mount_spec(container)?;
    let view = mount.view();
    let init = files::init_layer(&dir, &view.lowers)?;
    mount.lowers.insert(0, init);
    mark("mount planned, init layer made");
    let user = users::resolve(&process.user, &view.lowers).map_err(anyhow::Error::msg)?;
    let user_spec = user.clone();
    let mut env = process.env.clone();
    if let Some(home) = env.iter_mut().find(|e| *e == "HOME=") {
        *home = format!("HOME={}", user.home);
    }
    mark("user resolved");
    let seccomp = crate::run::seccomp_filters(&s.seccomp, s.caps)?;
    mark("seccomp compiled");
    let (console, console_child) = console::ends(s.tty, s.interactive)?;
    if s.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    let setup = child::ChildSetup {
        cgroup_procs: cg.procs_files(),
        mount,
        rootfs: store.snapshots().merged_dir(container),
        hostname: process.env.iter().find_map(|e| e.strip_prefix("HOSTNAME=")).unwrap_or_default().to_string(),
        network,
        files: etc,
        user,
        cwd: process.cwd.clone(),
        caps: s.caps,
        privileged: s.privileged,
        seccomp,
        binds: s.binds.clone(),
        tmpfs: s.tmpfs.clone(),
        read_only: s.read_only,
        console: console_child,
        init: s.init,
        devices: child::Devices::of_process(),
    };
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make error pipe")?;
    // The command becomes PID 1 of a new PID namespace: the next child we fork enters it.
    crate::run::kernel::unshare_pid_for_children()?;
    let mut cmd = command(process, &env, s.interactive);
    crate::run::kernel::pre_exec(&mut cmd, move || child::run_in_child(&setup, &err_w));
    let mut outputs = supervise::Outputs::default();
    match &s.output {
        Output::Inherit => {}
        Output::Discard => {
            cmd.stdout(Stdio::null());
        }
        Output::Logged { log, echo } => {
            outputs.log = Some(LogWriter::open(dir.path(), *log)?);
            outputs.echo = *echo;
            outputs.attach = match crate::run::attach::Server::bind(dir.path()) {
                Ok(a) => Some(a),
                Err(e) => {
                    eprintln!("layers: warning: {e:#}: `layers attach` cannot reach {}", container.name);
                    None
                }
            };
            // Detached with -i: its stdin stays open, fed by whoever attaches (`docker run -di`).
            if s.interactive && !s.tty && !*echo {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make stdin pipe")?;
                cmd.stdin(Stdio::from(r));
                outputs.stdin_pipe = Some(w);
            }
            // A pty carries both streams; without one, a pipe each keeps them apart.
            if !s.tty {
                let flags = rustix::pipe::PipeFlags::CLOEXEC;
                let (out_r, out_w) = rustix::pipe::pipe_with(flags).context("make output pipe")?;
                let (err_r, err_w) = rustix::pipe::pipe_with(flags).context("make output pipe")?;
                cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
                outputs.pipes = Some([out_r, err_r]);
            }
        }
    }
    outputs.console = console;
    launch(cmd, err_r, &container.name, process, image, outputs, |pid| {
        let running = state::Running {
            pid,
            pid_start: state::start_time(pid),
            monitor: std::process::id(),
            monitor_start: state::start_time(std::process::id()).unwrap_or_default(),
            user: user_spec.clone(),
            env: env.clone(),
            cwd: process.cwd.clone(),
            caps: s.caps.bits(),
            privileged: s.privileged,
            seccomp: s.seccomp.clone(),
            started: layers_store::meta::now(),
            address: address.map(|a| a.to_string()),
            ports: ports.clone(),
        };
        state::set_running(store, &container.id, &running);
        if let Some(e) = &s.events {
            e.record(store, "start");
        }
        if let Some(report) = &s.report {
            report.running();
        }
    })
}

pub(crate) fn command(process: &image_process::Process, env: &[String], interactive: bool) -> Command {
    let mut cmd = Command::new(&process.argv[0]);
    cmd.args(&process.argv[1..]).env_clear();
    for kv in env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if !interactive {
        cmd.stdin(Stdio::null());
    }
    cmd
}

/// Spawns `cmd` (whose pre_exec reports failures on `err_r`'s pipe), calls `started`
/// with the PID, waits forwarding signals. A failed setup is our error (125); a
/// failed exec is the command's status (126, 127), as Docker reports them.
pub(crate) fn launch(
    mut cmd: Command,
    err_r: OwnedFd,
    name: &str,
    process: &image_process::Process,
    image: &str,
    mut outputs: supervise::Outputs,
    started: impl FnOnce(u32),
) -> anyhow::Result<Launched> {
    let signals = supervise::Signals::install()?;
    mark("fork");
    let spawned = cmd.spawn();
    mark("exec'd (spawn returned)");
    drop(cmd);
    let mut msg = String::new();
    if spawned.is_err() {
        use std::io::Read;
        let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    }
    match spawned {
        Ok(mut child) => {
            started(child.id());
            mark("recorded running");
            let relay =
                match outputs.console.take().map(|c| console::receive(&c.sock).map(|m| (m, c.stdin))).transpose() {
                    Ok(r) => r.map(|(master, stdin)| supervise::Relay { master, stdin }),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(e);
                    }
                };
            let ran = supervise::wait(&mut child, signals, relay, outputs).map(Launched::Ran);
            mark("command exited, reaped");
            ran
        }
        Err(_) if !msg.is_empty() => bail!("start container {name}: {msg}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Launched::NotRun {
            code: EXIT_NOT_FOUND,
            message: format!(
                "exec {:?}: no such file or directory in image {image} (PATH {})",
                process.argv[0],
                process.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or_default()
            ),
        }),
        Err(e) => Ok(Launched::NotRun {
            code: EXIT_CANNOT_EXEC,
            message: format!("exec {:?} in image {image}: {e}", process.argv[0]),
        }),
    }
}
