//! Turning SIGTERM and SIGINT into a graceful stop of `serve`.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` when the process receives SIGTERM or SIGINT.
pub async fn cancel_on_signal(token: CancellationToken) {
    let name = wait_for_signal().await;
    info!("received {name}, shutting down");
    token.cancel();
}

async fn wait_for_signal() -> &'static str {
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        },
        (Err(error), _) | (_, Err(error)) => {
            // Without handlers the default action still kills the process; only the
            // graceful part is lost.
            warn!("cannot install signal handlers: {error}");
            std::future::pending().await
        }
    }
}
