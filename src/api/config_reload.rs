//! Reloading the configuration file, for every way a reload arrives
//! (SIGHUP, `POST /admin/config/reload`, `podium traffic reload`): the
//! serving core swaps the endpoint set ([`crate::serving::ConfigFile`]),
//! then the readouts of experiment endpoints whose weights changed are
//! told, as for any traffic change. Experiment loops read the endpoint's
//! arms on every tick, so they carry on against the new weights.

use std::sync::Arc;

use super::experiment_controls::traffic_changed;
use super::AppState;
use crate::error::Error;
use crate::serving::ReloadOutcome;

/// Reloads the file the server was started with, as `by` (the history's name).
pub async fn reload_config(state: &Arc<AppState>, by: String) -> Result<ReloadOutcome, Error> {
    let Some(file) = state.config_file.clone() else {
        return Err(Error::Refused(
            "this server was started without --config, so there is no configuration file to reload; restart it with --config FILE (PODIUM_CONFIG)".into(),
        ));
    };
    let before = Arc::clone(&*state.core.routes());
    let st = Arc::clone(state);
    let outcome = tokio::task::spawn_blocking(move || st.core.reload_config(&file, &by))
        .await
        .map_err(|e| Error::Internal(format!("configuration reload task failed: {e}")))??;
    let after = state.core.routes();
    for change in outcome.changed.iter().filter(|c| c.what.contains(&"arms")) {
        if let (Some(old), Some(new)) = (
            before.endpoints.get(&change.endpoint),
            after.endpoints.get(&change.endpoint),
        ) {
            traffic_changed(state, old, new);
        }
    }
    Ok(outcome)
}

/// Reloads the configuration on every SIGHUP until the task is aborted;
/// errors are logged and counted (the previous configuration stays).
#[cfg(unix)]
pub fn spawn_on_sighup(state: Arc<AppState>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reload_config(&state, crate::serving::BY_SIGNAL.into()).await {
                Ok(_) => {}
                // Logged and counted by the core; only "no file" comes here unlogged.
                Err(Error::Refused(why)) => tracing::warn!("SIGHUP: {why}"),
                Err(_) => {}
            }
        }
    }))
}
