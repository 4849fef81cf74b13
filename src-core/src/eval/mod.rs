//! The evaluation harness: the protocol of `../shared/DESIGN.md`, shared by every model.
