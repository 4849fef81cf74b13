//! `connection_info` and `connect`: which engine the panel talks to, and switching it.

use tauri::State;

use crate::connection::ConnectionInfo;
use crate::error::{CommandError, PanelError};
use crate::panel::Panel;

/// The engine's URL, how the panel reached it, its environment label and whether it
/// serves a model (never the token).
#[tauri::command]
pub fn connection_info(panel: State<'_, Panel>) -> ConnectionInfo {
    panel.info()
}

/// Switches to the engine at `url` (http:// only), reading its admin token from
/// `token_file` on the Rust side; answers the new connection info.
#[tauri::command]
pub async fn connect(
    panel: State<'_, Panel>,
    url: String,
    token_file: Option<String>,
) -> Result<ConnectionInfo, CommandError> {
    let panel = panel.inner().clone();
    let token_file = token_file.filter(|f| !f.trim().is_empty());
    let info =
        tauri::async_runtime::spawn_blocking(move || panel.connect(&url, token_file.as_deref()))
            .await
            .map_err(|e| PanelError::Internal(format!("the connect thread was lost: {e}")))??;
    Ok(info)
}
