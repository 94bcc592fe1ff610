//! End-to-end tests live in `tests/tests/`: they drive the real binaries and the `vessel`
//! script the way an operator does. This library holds what they share:
//!
//! * [`netns`]: several hosts on one machine, each in its own network namespace.
//! * [`e2e`]: a panel and hosts joined to it, to drive from order to running VPS.
//! * [`browser`]: headless Chromium for the tests a browser must drive.
//! * [`console`]: a console's WebSocket, read until a text appears or it closes.
//! * [`services`]: the mail catcher and the local Stripe server a customer's path meets.

pub mod browser;
pub mod console;
pub mod e2e;
pub mod netns;
pub mod services;
