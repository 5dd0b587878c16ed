// Package e2e holds end-to-end tests of the ferry binary under faults and
// hostile input: kills mid-run, failing and lying registries, tampered
// bundles, credentials and TLS. It has no code of its own; see
// docs/reliability.md for what each test holds ferry to.
package e2e
