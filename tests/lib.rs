//! End-to-end tests of posthorn live in this package's test targets (one scenario per file).
