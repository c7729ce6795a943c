//! `layers login` and `layers logout`.

use std::process::ExitCode;

use crate::registry::config::RegistriesConfig;
use crate::registry::credentials::{self, normalize_host, Credentials};
use crate::registry::Repository;
use anyhow::{bail, Context};
use clap::Args;

// Arguments of `layers login`.
#[derive(Args)]
pub struct LoginArgs {
    /// Registry host[:port]; Docker Hub when not given.
    registry: Option<String>,
    /// User name (asked for on a terminal when not given).
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible in the process list; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Verify TLS certificates.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

// Arguments of `layers logout`.
#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host[:port]; Docker Hub when not given.
    registry: Option<String>,
}

/// The registry a `login`/`logout` names: Docker Hub when none is given, as Docker.
fn registry_host(given: Option<&str>) -> String {
    normalize_host(given.unwrap_or(layers_store::images::reference::DEFAULT_REGISTRY))
}

pub fn login(
    a: &LoginArgs,
    registries: &RegistriesConfig,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let host = registry_host(a.registry.as_deref());
    // Asked in Docker's order: the user name, then the password.
    let user = match &a.username {
        Some(u) => u.clone(),
        None if !a.password_stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) => prompt("Username: ", true)?,
        None => bail!("login {host}: give the user name with -u"),
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(p), _) => {
            eprintln!("layers: warning: --password is visible to other users; use --password-stdin");
            p.clone()
        }
        (None, true) => {
            let bytes =
                crate::bounded::read_capped(std::io::stdin(), crate::bounded::MAX_PASSWORD, "password from stdin")?;
            let s = String::from_utf8(bytes).context("password from stdin: not UTF-8")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                bail!("login {host}: give the password with --password-stdin (or run on a terminal to be asked)");
            }
            prompt("Password: ", false)?
        }
    };
    if password.is_empty() {
        bail!("login {host}: empty password");
    }
    let creds = Credentials { user, password };
    // Checked where pulls of this registry go: Docker Hub's mirror, where one is set.
    let endpoint = registries.endpoints(&host).into_iter().next();
    let (check, plain_http) = endpoint.map_or((host.clone(), false), |e| (e.host, e.plain_http));
    transfers.block_on(verify(&check, &creds, plain_http, a.tls_verify))??;
    let place = credentials::save(&host, &creds)?;
    eprintln!("credentials saved in {place}");
    outln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal for a line; without echo unless `echo` (a password).
fn prompt(question: &str, echo: bool) -> anyhow::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("read the terminal's mode")?;
    if !echo {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turn off echo")?;
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::Read::take(stdin.lock(), crate::bounded::MAX_PASSWORD).read_line(&mut line);
    if !echo {
        let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
        eprintln!();
    }
    read.context("read the answer")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Asks the registry's `/v2/` with the credentials, answering its challenge with them.
async fn verify(host: &str, creds: &Credentials, plain_http: bool, tls_verify: bool) -> anyhow::Result<()> {
    let repo = Repository::new(host, plain_http, tls_verify, "layers/login-check", Some(creds.clone()))?;
    repo.check_login().await.with_context(|| format!("login {host}"))
}

pub fn logout(a: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let host = registry_host(a.registry.as_deref());
    if credentials::remove(&host)? {
        outln!("Removing login credentials for {host}");
    } else {
        // Docker says so and succeeds: nothing to remove is not a failure.
        outln!("Not logged in to {host}");
    }
    Ok(ExitCode::SUCCESS)
}
