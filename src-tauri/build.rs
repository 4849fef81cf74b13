//! Generates Tauri's context (config, icons, capabilities) for `generate_context!`.
//!
//! The console (`../ui/dist`, built by `npm run build` in ui/) is embedded at compile
//! time, and Tauri refuses to compile without it. On a fresh clone it is not built yet:
//! a placeholder page saying so stands in (ui/dist is git-ignored), so the Rust side and
//! its tests build without node. Building the UI replaces it; Tauri then re-embeds.

use std::path::Path;

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
  <head><meta charset="utf-8" /><title>Attune control panel</title></head>
  <body>
    <h1>Attune control panel</h1>
    <p>Placeholder: the console (ui/) was not built when this app was compiled.
    Run <code>npm ci &amp;&amp; npm run build</code> in ui/, then rebuild the app.</p>
  </body>
</html>
"#;

fn main() {
    let dist = Path::new("../ui/dist");
    if !dist.exists() {
        std::fs::create_dir_all(dist).expect("creating ../ui/dist for the placeholder console");
        std::fs::write(dist.join("index.html"), PLACEHOLDER)
            .expect("writing the placeholder console");
        println!("cargo:warning=ui/dist is not built: embedding a placeholder page (npm run build in ui/)");
    }
    tauri_build::build();
}
