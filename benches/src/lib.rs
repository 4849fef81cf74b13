//! Benchmark support code shared by the criterion benches and the load generators.
