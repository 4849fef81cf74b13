//! `stream_subscribe`: the engine's live stream, pushed through a channel.

use tauri::ipc::Channel;
use tauri::State;

use crate::panel::Panel;
use crate::stream::StreamMessage;

/// Sends each server-sent event of the engine's `/v1/stream` as `{event, data}` through
/// `on_event`, plus `{event: "connection", data: {state, url}}` when the stream drops
/// and comes back. A new subscription replaces the previous one.
#[tauri::command]
pub fn stream_subscribe(panel: State<'_, Panel>, on_event: Channel<StreamMessage>) {
    panel.subscribe(move |message: StreamMessage| on_event.send(message).is_ok());
}
