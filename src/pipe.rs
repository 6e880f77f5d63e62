//! A bounded in-memory pipe between two threads, so pipeline stages run concurrently with
//! memory bounded by `CHUNK * DEPTH`.
//!
//! The stream ends cleanly only when the producer calls [`PipeWriter::finish`]; a producer
//! that fails or stops early makes the reader fail, so a consumer never takes a short
//! stream for a complete one.
//!
//! The reader hands every chunk it has read back to the writer, which fills it again: no
//! allocation per chunk, and no memory allocated on one thread and freed on another (which
//! makes glibc's per-thread arenas grow).

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel as unbounded, sync_channel};
use std::thread::JoinHandle;

const CHUNK: usize = 256 * 1024;
const DEPTH: usize = 8;

/// A connected writer/reader pair.
pub fn channel() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let (back_tx, back_rx) = unbounded();
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            done: false,
            empty: back_rx,
        },
        PipeReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            empty: back_tx,
        },
    )
}

/// The producing end.
pub struct PipeWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    done: bool,
    /// Chunks the reader is done with.
    empty: Receiver<Vec<u8>>,
}

impl PipeWriter {
    /// Ends the stream cleanly.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        self.done = true;
        Ok(())
    }

    /// Ends the stream with an error the reader will see.
    pub fn fail(mut self, message: String) {
        self.done = true;
        let _ = self.tx.send(Err(io::Error::other(message)));
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        next.clear();
        let chunk = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "pipeline reader stopped"))
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Err(io::Error::other(
                "the stream ended before it was complete",
            )));
        }
    }
}

/// The consuming end.
pub struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    /// Where read chunks go back to the writer.
    empty: Sender<Vec<u8>>,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let read = std::mem::replace(&mut self.chunk, chunk);
                    if read.capacity() > 0 {
                        // The writer may be gone; the chunk is then freed here.
                        let _ = self.empty.send(read);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `produce` on its own thread writing into a pipe; returns the reading end and the
/// thread's handle, which gives the producer's own (typed) result.
pub fn spawn<T, F>(produce: F) -> (PipeReader, JoinHandle<crate::Result<T>>)
where
    F: FnOnce(&mut PipeWriter) -> crate::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (mut w, r) = channel();
    let handle = std::thread::spawn(move || {
        let result = produce(&mut w);
        finish_with(result, w)
    });
    (r, handle)
}

/// Ends `w` according to `result`: finished on success, failed with the error's message.
pub fn finish_with<T>(result: crate::Result<T>, w: PipeWriter) -> crate::Result<T> {
    match result {
        Ok(v) => match w.finish() {
            Ok(()) => Ok(v),
            Err(e) => Err(crate::Error::Runtime(format!("pipeline stopped: {e}"))),
        },
        Err(e) => {
            w.fail(e.to_string());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_bytes_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let (mut r, h) = spawn(move |w: &mut PipeWriter| {
            w.write_all(&data)
                .map_err(|e| crate::Error::Runtime(e.to_string()))
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        h.join().unwrap().unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn producer_error_reaches_reader() {
        let (mut r, h) = spawn(|w: &mut PipeWriter| -> crate::Result<()> {
            w.write_all(b"partial").unwrap();
            Err(crate::Error::Runtime("source vanished".into()))
        });
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert!(err.to_string().contains("source vanished"));
        assert!(h.join().unwrap().is_err());
    }

    #[test]
    fn dropped_writer_is_not_a_clean_end() {
        let (mut w, mut r) = channel();
        w.write_all(b"abc").unwrap();
        w.flush().unwrap();
        drop(w);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
    }
}
