//! Capturing an instance's output line by line, attributed to the right invocation.
//!
//! stdout and stderr share one pipe (Lambda merges them into one stream too). The
//! runtime writes its output before it posts the result, so everything that belongs
//! to an invocation is in the pipe when the result arrives. [`LogPipe::sync`] drains
//! the pipe at that moment, before the invocation is closed, so lines are never
//! attributed to the wrong request and the tail returned to the caller is complete.
//!
//! Output is bounded: lines are cut at [`MAX_LINE`], and past [`MAX_BYTES_PER_INVOCATION`]
//! the rest of an invocation's output is dropped with one notice, so endless output
//! cannot exhaust memory or disk. The log channel is bounded too: a slow store slows
//! the writer (the pipe fills and the function blocks), it never grows a queue.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

pub const MAX_LINE: usize = 256 * 1024;
pub const MAX_BYTES_PER_INVOCATION: usize = 8 * 1024 * 1024;
/// Function output kept for the caller's log tail.
const CAPTURE_BYTES: usize = 8 * 1024;

/// One line of function output, on its way to the log store.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub function: Arc<str>,
    pub instance: Arc<str>,
    pub request_id: Option<Arc<str>>,
    pub ts_ms: i64,
    pub text: String,
}

#[derive(Default)]
struct Attribution {
    request_id: Option<Arc<str>>,
    bytes: usize,
    truncated: bool,
    capture: Option<String>,
}

/// The reading side of an instance's output pipe.
pub(crate) struct LogPipe {
    attribution: Arc<Mutex<Attribution>>,
    sync_tx: mpsc::Sender<oneshot::Sender<()>>,
}

impl LogPipe {
    /// Creates the pipe; returns the reader handle and the write end for the child.
    pub(crate) fn new(
        function: Arc<str>,
        instance: Arc<str>,
        sink: mpsc::Sender<LogLine>,
    ) -> io::Result<(Self, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let flags = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(read.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: we own `read` exclusively and move it into the AsyncFd; no other
        // handle to this fd exists, so it cannot be closed behind tokio's back.
        let fd = unsafe { AsyncFd::register(read) }.map_err(|e| e.into_parts().1)?;
        let attribution = Arc::new(Mutex::new(Attribution::default()));
        let (sync_tx, sync_rx) = mpsc::channel(4);
        let reader = Reader {
            function,
            instance,
            sink,
            attribution: attribution.clone(),
            partial: Vec::new(),
        };
        tokio::spawn(reader.run(fd, sync_rx));
        Ok((
            Self {
                attribution,
                sync_tx,
            },
            write,
        ))
    }

    /// Attributes output from now on to `request_id`.
    pub(crate) fn begin(&self, request_id: Arc<str>, capture: bool) {
        let mut a = self.attribution.lock().unwrap();
        *a = Attribution {
            request_id: Some(request_id),
            capture: capture.then(String::new),
            ..Default::default()
        };
    }

    /// Drains everything written so far, then ends the attribution and returns the
    /// captured output.
    pub(crate) async fn finish(&self) -> String {
        let (tx, rx) = oneshot::channel();
        if self.sync_tx.send(tx).await.is_ok() {
            let _ = rx.await;
        }
        let mut a = self.attribution.lock().unwrap();
        let captured = a.capture.take().unwrap_or_default();
        *a = Attribution::default();
        captured
    }
}

struct Reader {
    function: Arc<str>,
    instance: Arc<str>,
    sink: mpsc::Sender<LogLine>,
    attribution: Arc<Mutex<Attribution>>,
    partial: Vec<u8>,
}

impl Reader {
    async fn run(mut self, fd: AsyncFd<OwnedFd>, mut sync_rx: mpsc::Receiver<oneshot::Sender<()>>) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut open = true;
        while open {
            tokio::select! {
                ready = fd.readable() => {
                    let Ok(mut guard) = ready else { break };
                    match guard.try_io(|inner| read(inner.get_ref(), &mut buf)) {
                        Ok(Ok(0)) | Ok(Err(_)) => open = false,
                        Ok(Ok(n)) => self.consume(&buf[..n]).await,
                        Err(_would_block) => {}
                    }
                }
                Some(ack) = sync_rx.recv() => {
                    // Drain what is in the pipe right now; it holds everything the
                    // runtime wrote before posting its result.
                    loop {
                        match read(fd.get_ref(), &mut buf) {
                            Ok(0) => { open = false; break }
                            Ok(n) => self.consume(&buf[..n]).await,
                            Err(_) => break,
                        }
                    }
                    self.flush_partial().await;
                    let _ = ack.send(());
                }
            }
        }
        self.flush_partial().await;
        // The process is gone: answer any later sync at once.
        while let Some(ack) = sync_rx.recv().await {
            let _ = ack.send(());
        }
    }

    async fn consume(&mut self, mut data: &[u8]) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..pos]);
            data = &data[pos + 1..];
            self.flush_partial().await;
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            self.flush_partial().await;
            self.partial = rest;
        }
    }

    async fn flush_partial(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        let mut text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if text.ends_with('\r') {
            text.pop();
        }
        let request_id = {
            let mut a = self.attribution.lock().unwrap();
            if a.truncated {
                return;
            }
            a.bytes += text.len() + 1;
            if a.bytes > MAX_BYTES_PER_INVOCATION {
                a.truncated = true;
                text = format!(
                    "[nimbus] output exceeded {} MB for this invocation; the rest is dropped",
                    MAX_BYTES_PER_INVOCATION >> 20
                );
            }
            if let Some(c) = a.capture.as_mut() {
                c.push_str(&text);
                c.push('\n');
                if c.len() > CAPTURE_BYTES * 2 {
                    let cut = c.len() - CAPTURE_BYTES;
                    let cut = (cut..c.len())
                        .find(|&i| c.is_char_boundary(i))
                        .unwrap_or(c.len());
                    c.drain(..cut);
                }
            }
            a.request_id.clone()
        };
        let line = LogLine {
            function: self.function.clone(),
            instance: self.instance.clone(),
            request_id,
            ts_ms: chrono::Utc::now().timestamp_millis(),
            text,
        };
        let _ = self.sink.send(line).await;
    }
}

fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
