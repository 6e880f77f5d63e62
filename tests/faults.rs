//! Fault injection and bad input (issue 8): tampering and rot, substitution and rollback,
//! signing, crashes (`kill -9` at random and at every rename/unlink), files changing while
//! read, full disks and missing stores, concurrent runs, hostile archives, keys, malformed
//! policies, fuzzing of the parsers, and secrets. Each class prints one line with its
//! figures; when every class has run, the table is printed (see it with `--nocapture`) and
//! written to `target/faults-summary.txt`.
//!
//! `LIFEBOAT_FAULTS_SCALE=N` multiplies every case count (default 1, a few minutes);
//! `LIFEBOAT_FAULTS_SEED` changes the random fault points; `LIFEBOAT_FUZZ_CASES` sets the
//! number of fuzz cases per target. Missing tools (strace) fail the tests, never skip them.

mod common;

#[path = "faults/support.rs"]
mod support;
#[path = "faults/tamper.rs"]
mod tamper;

#[test]
fn tamper() {
    support::class("tamper", tamper::run);
}
