//! `layers login` and `layers logout`.

use std::process::ExitCode;

use crate::registry::config::RegistriesConfig;
use crate::registry::credentials::{self, normalize_host, Credentials};
use crate::registry::Repository;
use anyhow::{bail, Context};
use clap::Args;

/// Arguments of `layers login`.
#[derive(Args)]
pub struct LoginArgs {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    registry: String,
    /// User name.
    #[arg(short, long)]
    username: String,
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

/// Arguments of `layers logout`.
#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host[:port].
    registry: String,
}

pub fn login(a: &LoginArgs, registries: &RegistriesConfig) -> anyhow::Result<ExitCode> {
    let host = normalize_host(&a.registry);
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
        (None, false) => bail!("login {host}: give the password with --password-stdin (or --password)"),
    };
    if password.is_empty() {
        bail!("login {host}: empty password");
    }
    let creds = Credentials { user: a.username.clone(), password };
    let plain_http = registries.endpoints(&host).last().is_some_and(|e| e.plain_http);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start runtime")?;
    rt.block_on(verify(&host, &creds, plain_http, a.tls_verify))?;
    let file = credentials::save(&host, &creds)?;
    eprintln!("credentials saved in {}", file.display());
    outln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Asks the registry's `/v2/` with the credentials, answering its challenge with them.
async fn verify(host: &str, creds: &Credentials, plain_http: bool, tls_verify: bool) -> anyhow::Result<()> {
    let repo = Repository::new(host, plain_http, tls_verify, "layers/login-check", Some(creds.clone()))?;
    repo.check_login().await.with_context(|| format!("login {host}"))
}

pub fn logout(a: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let host = normalize_host(&a.registry);
    if credentials::remove(&host)? {
        outln!("Removing login credentials for {host}");
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("logout {host}: not logged in (no credentials in {})", credentials::own_file().display())
    }
}
