//! Reconcile tests against a mocked API server.
