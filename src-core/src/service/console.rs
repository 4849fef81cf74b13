//! The web console: the control panel's built front end (`ui/dist`, made by
//! `npm --prefix ui run build`), carried inside the `attune` binary and served at `/ui/`
//! (`GET /` redirects there), so `attune serve` shows it wherever the binary runs. A
//! release build embeds the files at compile time; a debug build reads them from
//! `ui/dist` on disk. A build made before the front end was built answers with a page
//! that says how to build it.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};

/// The built front end.
#[derive(rust_embed::RustEmbed)]
#[folder = "../ui/dist/"]
#[allow_missing = true]
struct Console;

/// Served when the front end was not built before this binary.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Attune console not built</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>The console is not built into this binary</h1><p>The engine is running; its API is at <a href=\"/v1/openapi.json\">/v1/openapi.json</a>. To get the console, build the front end, then rebuild <code>attune</code>:</p><pre>npm --prefix ui ci\nnpm --prefix ui run build\ncargo build --release -p attune</pre></body></html>";

/// The media type of a file, by its extension.
fn media_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Only the console's own files, scripts and connections back to this server.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn file(path: &str) -> HttpResponse {
    let plain = !path.contains("..") && !path.contains(['\\', '\0']) && !path.starts_with('/');
    match Console::get(path).filter(|_| plain) {
        Some(f) => {
            // Vite names assets by content hash: they never change under one name.
            let cache = if path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            HttpResponse::Ok()
                .content_type(media_type(path))
                .insert_header((header::CACHE_CONTROL, cache))
                .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .body(f.data.into_owned())
        }
        None if path == "index.html" => HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .content_type("text/html; charset=utf-8")
            .body(NOT_BUILT),
        None => super::ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the console has no file {path:?}"),
        )
        .error_response(),
    }
}

/// `GET /` and `GET /ui`: to the console.
pub async fn to_console() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// `GET /ui/`: the console's page.
pub async fn index() -> HttpResponse {
    file("index.html")
}

/// `GET /ui/{file}`: a file at the console's top level.
pub async fn top_file(path: web::Path<String>) -> HttpResponse {
    file(&path.into_inner())
}

/// `GET /ui/assets/{file}`: a built asset.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    file(&format!("assets/{}", path.into_inner()))
}

/// Whether this binary carries a built console.
pub fn is_built() -> bool {
    Console::get("index.html").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_by_extension() {
        assert_eq!(media_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            media_type("assets/a-1b2c.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(media_type("weird"), "application/octet-stream");
    }
}
