//! A workaround for WebKitGTK under the `C.UTF-8` locale (containers, CI, minimal
//! installs): WebKit turns `LC_CTYPE=C.UTF-8` into the page language `C`, which
//! JavaScriptCore's `Intl` rejects (`RangeError: invalid language tag: C`). Any script
//! that formats with the default locale then fails while loading (the console's charts
//! do), and the window stays blank. WebKit maps the plain `C` locale to `en-US`, so the
//! panel narrows a `C.*` or `POSIX.*` character-type locale to `C` before GTK starts.

/// The locale variable to set, and its value, when the environment's character-type
/// locale is a `C.*` / `POSIX.*` variant. `var` reads the environment.
pub fn webview_locale_fix(
    var: impl Fn(&str) -> Option<String>,
) -> Option<(&'static str, &'static str)> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    // The variable that decides LC_CTYPE, in the C library's order.
    let (name, value) = if let Some(v) = set("LC_ALL") {
        ("LC_ALL", v)
    } else if let Some(v) = set("LC_CTYPE") {
        ("LC_CTYPE", v)
    } else {
        ("LANG", set("LANG")?)
    };
    let base = value.split(['.', '@']).next().unwrap_or_default();
    let is_c = matches!(base, "C" | "POSIX");
    if !is_c || value == base {
        return None;
    }
    // LC_ALL wins over everything, so it is the one to narrow; otherwise LC_CTYPE alone.
    Some(if name == "LC_ALL" {
        ("LC_ALL", "C")
    } else {
        ("LC_CTYPE", "C")
    })
}

/// Applies [`webview_locale_fix`] to this process (and so to the web view's processes).
/// Call before any thread starts.
pub fn apply_webview_locale_fix() {
    if let Some((name, value)) = webview_locale_fix(|n| std::env::var(n).ok()) {
        std::env::set_var(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(env: &[(&str, &str)]) -> Option<(&'static str, &'static str)> {
        webview_locale_fix(|name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn narrows_c_utf8_only() {
        assert_eq!(fix(&[("LANG", "C.UTF-8")]), Some(("LC_CTYPE", "C")));
        assert_eq!(
            fix(&[("LANG", "en_GB.UTF-8"), ("LC_ALL", "C.utf8")]),
            Some(("LC_ALL", "C"))
        );
        assert_eq!(
            fix(&[("LANG", "C.UTF-8"), ("LC_CTYPE", "de_DE.UTF-8")]),
            None
        );
        assert_eq!(fix(&[("LANG", "C")]), None);
        assert_eq!(fix(&[("LANG", "en_US.UTF-8")]), None);
        assert_eq!(fix(&[]), None);
    }
}
