//! Test helpers for tutti (filled in with the integration tests).
