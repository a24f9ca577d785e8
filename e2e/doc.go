// Package e2e holds the end-to-end tests of lorakit: they build the
// binaries with internal/testbin and run them as a user does — the example
// Makefile and pipeline script, every example command of the README, and the
// failure behaviour the README promises (signals, full disks, bad inputs,
// dead pipes). The package has no code of its own.
package e2e
