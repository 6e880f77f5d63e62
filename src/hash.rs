//! SHA-256 computed while bytes stream past, on the write side (backup) and the read side
//! (restore, verify).

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// A writer that hashes and counts what passes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Returns the inner writer, the hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The running digest of a [`HashReader`], readable after the reader was moved into a
/// decoder chain (or another thread).
#[derive(Clone, Default)]
pub struct HashHandle(Arc<Mutex<(Sha256, u64)>>);

impl HashHandle {
    /// The hex sha256 and byte count of everything read so far.
    pub fn result(&self) -> (String, u64) {
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (hex::encode(state.0.clone().finalize()), state.1)
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashReader<R> {
    inner: R,
    state: HashHandle,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> (Self, HashHandle) {
        let state = HashHandle::default();
        (
            HashReader {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        state.0.update(&buf[..n]);
        state.1 += n as u64;
        Ok(n)
    }
}

/// The sha256 (hex) and length of a whole stream.
pub fn sha256_of(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut w = HashWriter::new(io::sink());
    io::copy(&mut r, &mut w)?;
    let (_, digest, len) = w.finish();
    Ok((digest, len))
}
