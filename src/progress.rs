//! Progress of a streaming pipeline: the bytes it moved, reported to whoever asked (the CLI
//! draws a bar on a TTY, never in cron logs). Silent by default.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

/// Receives progress events.
pub trait ProgressSink: Send + Sync {
    /// The total number of bytes, once known.
    fn total(&self, bytes: u64);
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
}

/// A handle passed into pipelines; cheap to clone.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(on)"
        } else {
            "Progress(off)"
        })
    }
}

impl Progress {
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Progress(Some(sink))
    }

    pub fn total(&self, bytes: u64) {
        if let Some(s) = &self.0 {
            s.total(bytes);
        }
    }

    /// Wraps a reader so every byte read through it is reported.
    pub fn reader<R: Read>(&self, inner: R) -> ProgressReader<R> {
        ProgressReader {
            inner,
            sink: self.0.clone(),
        }
    }
}

pub struct ProgressReader<R> {
    inner: R,
    sink: Option<Arc<dyn ProgressSink>>,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(s) = &self.sink {
            s.advance(n as u64);
        }
        Ok(n)
    }
}
