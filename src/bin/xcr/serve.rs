//! `xcr serve`: the api function's very Router on this machine.

use crate::exit::{Exit, Failure};
use xcr::config::Config;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind. The API has no authentication of its own (API Gateway's IAM auth
    /// guards it in the cloud): keep it on loopback unless something else guards it.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
}

/// Runs the API until Ctrl-C or SIGTERM, then lets requests in flight finish. Needs what the
/// api function needs ([`xcr::entry::api::Api::NEEDS`]).
pub async fn serve(args: ServeArgs) -> Result<Exit, Failure> {
    let ServeArgs { port, bind } = args;
    let cfg = Config::from_env(xcr::entry::api::Api::NEEDS)?;
    let settings = Config::api_settings_from_env()
        .map_err(|why| Failure::new(Exit::Usage, "config", format!("invalid configuration: {why}")))?;
    let sdk = xcr::adapters::aws::sdk_config().await;
    let api = xcr::entry::api::Api::new(&sdk, &cfg, settings).map_err(|e| Failure::from(e).exit(Exit::Usage))?;
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {bind}:{port}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Failure::usage(format!("local address: {e}")))?;
    // On stdout, alone on its line: scripts and tests read the address from it.
    println!("listening on http://{addr}");
    tracing::info!(target: xcr::telemetry::NOTE, %addr, "serving the xcr API (Ctrl-C stops it)");
    axum::serve(listener, xcr::entry::api::router(std::sync::Arc::new(api)))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| Failure::new(Exit::Failed, "failed", format!("serve: {e}")))?;
    Ok(Exit::Ok)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
