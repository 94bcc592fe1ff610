//! End-to-end tests live in `tests/tests/`: they drive the real binaries and the `vessel`
//! script the way an operator does. This library holds what they share:
//!
//! * [`netns`]: several hosts on one machine, each in its own network namespace.

pub mod netns;
