//! Synthetic data: a catalogue and users with drifting tastes and sequential habits.
