//! The signals that stop a gpucost binary: SIGTERM (Kubernetes, ECS) or Ctrl-C.

/// Resolves at SIGTERM or Ctrl-C, whichever comes first.
pub async fn signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
