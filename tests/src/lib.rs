//! Test support lives in tests/tests.
