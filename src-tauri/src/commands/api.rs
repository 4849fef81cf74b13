//! `api_call`: the UI's one way to reach the engine's REST API.

use serde_json::Value;
use tauri::State;

use crate::api::{ApiRequest, ApiResponse};
use crate::error::{CommandError, PanelError};
use crate::panel::Panel;

/// Forwards `method path` (with `body` as JSON) to the engine, adding the admin token;
/// answers `{status, body}`. Only `/v1/...`, `/healthz` and `/metrics` are reachable. The
/// blocking HTTP runs off the main thread.
#[tauri::command]
pub async fn api_call(
    panel: State<'_, Panel>,
    method: String,
    path: String,
    body: Option<Value>,
) -> Result<ApiResponse, CommandError> {
    let request = ApiRequest::new(&method, &path, body.as_ref())?;
    let panel = panel.inner().clone();
    let answer = tauri::async_runtime::spawn_blocking(move || panel.api_call(&request))
        .await
        .map_err(|e| PanelError::Internal(format!("the call's thread was lost: {e}")))??;
    Ok(answer)
}
