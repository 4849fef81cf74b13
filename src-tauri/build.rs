//! Generates Tauri's context (config, icons, capabilities) for `generate_context!`.

fn main() {
    tauri_build::build();
}
