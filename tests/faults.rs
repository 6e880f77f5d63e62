//! Fault injection and bad input (issue 8): tampering and rot, substitution and rollback,
//! signed manifests, crashes (`kill -9` at random points and at chosen syscalls), files
//! changing while read, full disks and broken store directories, concurrent runs, hostile
//! archives, keys, malformed policies, fuzzing of the parsers, and secrets.
//!
//! Each class is one test printing one line of figures; when every class has run, the whole
//! table is printed (see it with `cargo test --test faults -- --nocapture`) and written to
//! `target/faults-summary.txt`.
//!
//! Knobs: `LIFEBOAT_FAULTS_SCALE=N` multiplies every case count (default 1: a few minutes);
//! `LIFEBOAT_FAULTS_SEED` changes the random fault points (the summary prints it);
//! `LIFEBOAT_FUZZ_CASES` sets the fuzz cases per target. Missing tools (strace, age, gpg)
//! fail the tests, never skip them. The disk-full class mounts a tmpfs when run as root and
//! says so in its line when it cannot.

mod common;

#[path = "faults/changing.rs"]
mod changing;
#[path = "faults/concurrency.rs"]
mod concurrency;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/fuzz.rs"]
mod fuzz;
#[path = "faults/hostile.rs"]
mod hostile;
#[path = "faults/keys.rs"]
mod keys_cases;
#[path = "faults/policies.rs"]
mod policies;
#[path = "faults/resources.rs"]
mod resources;
#[path = "faults/secrets.rs"]
mod secrets;
#[path = "faults/signing.rs"]
mod signing;
#[path = "faults/substitution.rs"]
mod substitution;
#[path = "faults/support.rs"]
mod support;
#[path = "faults/tamper.rs"]
mod tamper;

use support::class;

#[test]
fn tamper() {
    class("tamper", tamper::run);
}

#[test]
fn substitution() {
    class("substitution", substitution::run);
}

#[test]
fn signing() {
    class("signing", signing::run);
}

#[test]
fn crash() {
    class("crash", crash::run);
}

#[test]
fn changing_files() {
    class("changing-files", changing::run);
}

#[test]
fn disk_full() {
    class("disk-full", resources::disk_full);
}

#[test]
fn store_dir() {
    class("store-dir", resources::store_dir);
}

#[test]
fn concurrency() {
    class("concurrency", concurrency::run);
}

#[test]
fn hostile_archives() {
    class("hostile-archives", hostile::run);
}

#[test]
fn keys() {
    class("keys", keys_cases::run);
}

#[test]
fn bad_policies() {
    class("bad-policies", policies::run);
}

#[test]
fn fuzz() {
    class("fuzz", fuzz::run);
}

#[test]
fn secrets() {
    class("secrets", secrets::run);
}
