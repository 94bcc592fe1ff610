//! End-to-end tests live in `tests/tests/`: they drive the real binaries and the `vessel`
//! script the way an operator does. This library is intentionally empty.
