//! `layers login` and `layers logout`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use crate::credentials::{self, normalize_host, Credentials};
use crate::registry::{self, ACCEPTED};
use crate::registry_config::RegistriesConfig;

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
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("read password from stdin")?;
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

/// Asks for a manifest that need not exist: 401 means bad credentials, anything
/// else (usually 404) means the registry accepted them.
async fn verify(host: &str, creds: &Credentials, plain_http: bool, tls_verify: bool) -> anyhow::Result<()> {
    let client = registry::client(plain_http, tls_verify);
    let probe = oci_client::Reference::with_tag(host.to_string(), "layers/login-check".into(), "latest".into());
    let auth = RegistryAuth::Basic(creds.user.clone(), creds.password.clone());
    match client.pull_manifest_raw(&probe, &auth, ACCEPTED).await {
        Ok(_) => Ok(()),
        Err(e) if is_unauthorized(&e) => bail!("login {host}: unauthorized: wrong user name or password"),
        Err(OciDistributionError::RequestError(e)) => bail!("login {host}: {e}"),
        Err(_) => Ok(()),
    }
}

/// Whether a registry refused our credentials.
pub fn is_unauthorized(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 401,
        other => other.to_string().contains("UNAUTHORIZED"),
    }
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
