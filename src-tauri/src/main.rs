//! The `attune-panel` executable: everything lives in the library, so the tests drive
//! the same code.

fn main() {
    attune_panel::run();
}
