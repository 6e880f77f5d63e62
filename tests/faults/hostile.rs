//! Hostile archives for `restore --archive`, built here header by header: `..` paths,
//! absolute paths, symlinks pointing outside then written through, hard links to outside,
//! device nodes and fifos, sparse and oversized size claims, long-name records hiding `..`,
//! duplicate names, and decompression bombs. Each is rejected (exit 1) or contained: nothing
//! is ever written outside the target, and a rejected restore leaves nothing behind.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::common::*;
use crate::support::*;

/// One raw tar entry: a ustar header (name and link written byte for byte, no checks) and
/// the data padded to 512 bytes. `size` overrides the header's size field.
fn entry(name: &[u8], kind: u8, data: &[u8], link: &[u8], size: Option<u64>) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    {
        let raw = h.as_old_mut();
        raw.name = [0; 100];
        raw.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        raw.linkname = [0; 100];
        raw.linkname[..link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    }
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size.unwrap_or(data.len() as u64));
    h.as_mut_bytes()[156] = kind;
    if kind == b'3' || kind == b'4' {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    entry(name.as_bytes(), b'0', data, b"", None)
}

fn symlink(name: &str, to: &str) -> Vec<u8> {
    entry(name.as_bytes(), b'2', b"", to.as_bytes(), None)
}

/// A PAX extended header (`x`) carrying `key=value`.
fn pax(key: &str, value: &str) -> Vec<u8> {
    let body = format!("{key}={value}\n");
    let mut len = body.len() + 3;
    loop {
        let rec = format!("{len} {body}");
        if rec.len() == len {
            return entry(b"././@PaxHeader", b'x', rec.as_bytes(), b"", None);
        }
        len = rec.len();
    }
}

/// A GNU long-name record (`L`) for the next entry.
fn gnu_longname(name: &str) -> Vec<u8> {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    entry(b"././@LongLink", b'L', &data, b"", None)
}

fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Everything under `dir` (paths and bytes), to prove nothing changed there.
fn state(dir: &Path) -> Vec<(String, Entry)> {
    read_tree(dir)
}

pub fn run() -> String {
    let sb = Sandbox::new();
    // `outside` holds a sentinel the archives aim at; `jail` is where targets go.
    let outside = sb.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"untouched\n").unwrap();
    let jail = sb.path("jail");
    fs::create_dir_all(&jail).unwrap();
    let abs_outside = s(&outside).to_string();
    let sentinel = format!("{abs_outside}/sentinel");
    let rel_outside = "../../outside"; // from jail/<target>/ to outside/

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "symlink pointing outside, never written through",
            archive(&[symlink("ptr", &sentinel)]),
        ),
        ("../ path", archive(&[file("../../outside/escape", b"x")])),
        (
            "a/../../ path",
            archive(&[file("a/../../../outside/escape", b"x")]),
        ),
        (
            "absolute path",
            archive(&[file(&format!("{abs_outside}/abs-escape"), b"x")]),
        ),
        (
            "symlink to an absolute dir, then a file through it",
            archive(&[symlink("link", &abs_outside), file("link/escape", b"x")]),
        ),
        (
            "symlink to a relative dir outside, then a file through it",
            archive(&[symlink("link", rel_outside), file("link/escape", b"x")]),
        ),
        (
            "symlink to a file outside, then the same name as a file",
            archive(&[symlink("evil", &sentinel), file("evil", b"overwritten")]),
        ),
        (
            "symlink to .., then a directory and a file through it",
            archive(&[
                symlink("up", ".."),
                entry(b"up/made/", b'5', b"", b"", None),
                file("up/made/escape", b"x"),
            ]),
        ),
        (
            "hard link to an absolute file outside",
            archive(&[entry(b"hl", b'1', b"", sentinel.as_bytes(), None)]),
        ),
        (
            "hard link to a relative file outside",
            archive(&[entry(b"hl", b'1', b"", b"../../outside/sentinel", None)]),
        ),
        (
            "character device",
            archive(&[entry(b"null", b'3', b"", b"", None)]),
        ),
        (
            "block device",
            archive(&[entry(b"disk", b'4', b"", b"", None)]),
        ),
        ("fifo", archive(&[entry(b"pipe", b'6', b"", b"", None)])),
        (
            "GNU sparse entry claiming 1 TiB",
            archive(&[entry(b"sparse", b'S', &[0; 512], b"", Some(1 << 40))]),
        ),
        (
            "regular file claiming 1 TiB with 1 KiB of data",
            archive(&[entry(b"huge", b'0', &[7; 1024], b"", Some(1 << 40))])
                .into_iter()
                .take(2048)
                .collect(),
        ),
        (
            "PAX path record with ../ over a harmless name",
            archive(&[
                pax("path", "../../outside/pax-escape"),
                file("harmless", b"x"),
            ]),
        ),
        (
            "PAX linkpath record pointing outside, then written through",
            archive(&[
                pax("linkpath", &abs_outside),
                symlink("plink", "harmless"),
                file("plink/escape", b"x"),
            ]),
        ),
        (
            "GNU long name with ../",
            archive(&[
                gnu_longname(&format!("{}../../outside/long-escape", "d/".repeat(60))),
                file("short", b"x"),
            ]),
        ),
        (
            "GNU long name of 1 MiB",
            archive(&[gnu_longname(&"n".repeat(1 << 20)), file("short", b"x")]),
        ),
        (
            "same name twice",
            archive(&[file("dup", b"first"), file("dup", b"second")]),
        ),
        (
            "unknown entry type",
            archive(&[entry(b"odd", b'Z', b"data", b"", None)]),
        ),
    ];

    let before = state(&outside);
    let mut rejected = 0;
    let mut contained = 0;
    let mut codes = Codes::default();
    for (i, (label, bytes)) in cases.iter().enumerate() {
        for (form, data) in [("tar", bytes.clone()), ("tar.gz", gzip(bytes))] {
            let path = sb.path(&format!("work/case{i}.{form}"));
            fs::write(&path, &data).unwrap();
            let target = jail.join(format!("t{i}-{}", form.replace('.', "")));
            let out = lb(&sb, &["restore", "--archive", s(&path), "--to", s(&target)]);
            let case = format!("{label} ({form})");
            assert_eq!(
                state(&outside),
                before,
                "{case}: something was written outside the target"
            );
            codes.add(code(&out) as u8);
            match code(&out) {
                0 => {
                    // Contained: whatever was written is inside the target.
                    contained += 1;
                }
                1 => {
                    let line = assert_one_line_error(&out, 1, &case);
                    assert!(
                        line.len() < 2000,
                        "{case}: a {}-byte error line",
                        line.len()
                    );
                    assert!(
                        fs::symlink_metadata(&target).is_err(),
                        "{case}: a refused restore wrote its target"
                    );
                    rejected += 1;
                }
                c => panic!("{case}: exit {c}: {}", stderr_line(&out)),
            }
        }
    }
    // Nothing beside the targets in the jail but the targets of contained archives.
    for n in names(&jail) {
        assert!(!n.starts_with('.'), "leftover {n} in the jail");
    }
    // The absolute-path archive, if accepted, landed inside its target.
    assert!(!Path::new(&format!("{abs_outside}/abs-escape")).exists());

    let bomb = bomb(&sb);
    format!(
        "{} hostile archives (tar and tar.gz): {rejected} rejected with exit 1, {contained} \
         contained (e.g. absolute paths made relative), none wrote outside the target, no \
         leftovers ({codes}); {bomb}",
        cases.len() * 2
    )
}

/// A decompression bomb: 256 MiB of zeros in a few KiB, restored onto a 4 MiB tmpfs (as
/// root): it stops at the full disk and cleans up.
fn bomb(sb: &Sandbox) -> String {
    let size: u64 = 256 << 20;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.write_all(&entry(b"bomb", b'0', b"", b"", Some(size))[..512])
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(size >> 20) {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0; 1024]).unwrap();
    let packed = enc.finish().unwrap();
    let ratio = size / packed.len() as u64;
    let path = sb.path("work/bomb.tar.zst");
    fs::write(&path, &packed).unwrap();

    let disk = if is_root() {
        let small = SmallFs::mount(&sb.path("bombfs"), "4m").expect("mount tmpfs");
        let target = small.path().join("t");
        let out = lb(sb, &["restore", "--archive", s(&path), "--to", s(&target)]);
        let line = assert_one_line_error(&out, 3, "bomb onto a 4 MiB disk");
        assert!(line.contains("No space left"), "{line}");
        assert_eq!(
            names(small.path()),
            Vec::<String>::new(),
            "the bomb left files behind"
        );
        "stopped by the full 4 MiB disk with exit 3, nothing left"
    } else {
        let target = sb.path("jail/bomb");
        let out = lb(sb, &["restore", "--archive", s(&path), "--to", s(&target)]);
        assert_exit(&out, 0, "bomb restored to disk");
        fs::remove_dir_all(&target).unwrap();
        "restored to the target (not root: no small disk to fill)"
    };
    format!(
        "a {}-byte archive expanding to {} MiB (ratio {ratio}:1): {disk}",
        packed.len(),
        size >> 20
    )
}
