//! The subcommands' bodies.
//!
//! By command group: `data` (import, generate), `models` (eval, train), `serving` (serve,
//! demo), `replay` (replay, simulate), `crash` (crash-test and its child, append-loop), `backup` (backup, restore, compact).

mod backup;
mod crash;
mod data;
mod models;
mod replay;
mod serving;

pub use backup::{backup, compact, restore};
pub use crash::{append_loop, crash_test};
pub use data::{generate, import};
pub use models::{eval, train};
pub use replay::{replay, simulate};
pub use serving::{demo, serve};
