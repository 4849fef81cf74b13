//! The commands the web view invokes, one module per concern. Each is thin: it parses its
//! arguments, calls the [`Panel`](crate::panel::Panel), and maps a failure to the
//! serialisable `{code, message}` error. None returns the admin token.

pub mod api;
pub mod connection;
pub mod stream;
