//! The panel's one error type, and the `{code, message}` form the web view receives: a
//! command never fails with something the UI cannot read, and never with the token.

use serde::Serialize;

/// Why a panel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    /// A request the panel refuses before sending it: a path outside the engine's API, a
    /// method it does not forward, a URL it cannot use.
    #[error("{0}")]
    BadRequest(String),
    /// The engine could not be reached, or it broke off its answer.
    #[error("cannot reach the engine at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The engine answered, but not as an Attune engine would.
    #[error("{url}: {message}")]
    BadAnswer { url: String, message: String },
    /// A token file that cannot be read or parsed (the message names the file and line).
    #[error("{0}")]
    TokenFile(String),
    /// The in-process engine failed to start.
    #[error("local engine: {0}")]
    LocalEngine(String),
    /// Background work was lost (a thread panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(String),
}

impl PanelError {
    /// A stable, machine-readable code for the UI.
    pub fn code(&self) -> &'static str {
        match self {
            PanelError::BadRequest(_) => "bad_request",
            PanelError::Unreachable { .. } => "unreachable",
            PanelError::BadAnswer { .. } => "bad_answer",
            PanelError::TokenFile(_) => "token_file",
            PanelError::LocalEngine(_) => "local_engine",
            PanelError::Internal(_) => "internal",
        }
    }
}

/// What a command's caller receives when it fails: `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandError {
    pub code: &'static str,
    pub message: String,
}

impl From<PanelError> for CommandError {
    fn from(e: PanelError) -> Self {
        CommandError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<tauri::Error> for CommandError {
    fn from(e: tauri::Error) -> Self {
        PanelError::Internal(e.to_string()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_errors_serialise_as_code_and_message() {
        let e: CommandError =
            PanelError::BadRequest("path \"/ui/\" is outside the API".into()).into();
        let json = serde_json::to_value(&e).expect("a plain struct serialises");
        assert_eq!(
            json,
            serde_json::json!({"code": "bad_request", "message": "path \"/ui/\" is outside the API"})
        );
    }
}
