//! Helpers for the integration tests: start the real `sluice` binary on a free loopback port.
