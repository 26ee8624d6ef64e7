//! Capturing an instance's output line by line, attributed to the right invocation.
//!
//! stdout and stderr share one pipe (Lambda merges them into one stream too). The
//! runtime writes its output before it posts the result, so everything that belongs
//! to an invocation is in the pipe when the result arrives. [`LogPipe::finish`]
//! drains the pipe right there, on the invoking task, before the invocation is
//! closed: lines are never attributed to the wrong request, the tail returned to the
//! caller is complete, and the warm path pays one `read` returning `EAGAIN` rather
//! than a round trip through another task. A background reader handles output
//! between invocations; both sides read under one lock.
//!
//! Lines leave in the order they were cut: whoever cuts lines holds the pipe's
//! send turn (an async lock) until they are in the channel. Without it the reader
//! could cut an invocation's last lines, lose the CPU before sending them, and
//! let `finish` return, so that the invoker's END line overtook them.
//!
//! Output is bounded: lines are cut at [`MAX_LINE`], and past [`MAX_BYTES_PER_INVOCATION`]
//! the rest of an invocation's output is dropped with one notice, so endless output
//! cannot exhaust memory or disk. Lines waiting for the store are bounded in bytes
//! by the [`LogGate`]: a line the gate refuses is dropped and counted against its
//! function rather than blocking the reader, because a blocked reader behind a
//! shared queue would make every other function's `print` block too (a flood must
//! cost its own function only). START lines and the truncation notice are never
//! refused: they frame an invocation's lines (one each per invocation).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

pub const MAX_LINE: usize = 256 * 1024;
pub const MAX_BYTES_PER_INVOCATION: usize = 8 * 1024 * 1024;
/// Function output kept for the caller's log tail.
const CAPTURE_BYTES: usize = 8 * 1024;

/// One line of function output, on its way to the log store.
#[derive(Debug)]
pub struct LogLine {
    pub function: Arc<str>,
    pub instance: Arc<str>,
    pub request_id: Option<Arc<str>>,
    pub ts_ms: i64,
    pub text: String,
    /// The line's place in the [`LogGate`], given back when the line is
    /// dropped (by the writer, once stored). `None` for the platform's own
    /// lines, which are bounded by the invocations running.
    pub charge: Option<LogCharge>,
}

/// Bytes charged per line besides its text: the line's own bookkeeping, so that
/// a flood of empty lines is bounded by memory too.
pub const LINE_OVERHEAD: usize = 64;

/// Bounds the bytes of function output cut from pipes and not yet stored, in
/// total and per function.
///
/// A function may hold at most `per_function` bytes of the queue: past that its
/// new lines are dropped (and counted), so one function flooding faster than the
/// store writes loses its own lines while every other function keeps room. The
/// total bound holds when many functions flood at once.
pub struct LogGate {
    capacity: usize,
    per_function: usize,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    in_flight: usize,
    functions: HashMap<Arc<str>, FunctionGate>,
}

#[derive(Default, Clone, Copy)]
struct FunctionGate {
    in_flight: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

/// Lines and bytes of one function's output the gate dropped since startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDrops {
    pub function: String,
    pub lines: u64,
    pub bytes: u64,
}

/// A line's bytes held in the [`LogGate`]; dropping it gives them back.
pub struct LogCharge {
    gate: Arc<LogGate>,
    function: Arc<str>,
    bytes: usize,
}

impl std::fmt::Debug for LogCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogCharge({} bytes)", self.bytes)
    }
}

impl Drop for LogCharge {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock().unwrap();
        s.in_flight -= self.bytes;
        if let Some(f) = s.functions.get_mut(&self.function) {
            f.in_flight -= self.bytes;
        }
    }
}

impl LogGate {
    pub fn new(capacity: usize, per_function: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            per_function: per_function.min(capacity),
            state: Mutex::default(),
        })
    }

    /// Takes room for a line of `bytes`, or counts it dropped.
    fn try_charge(self: &Arc<Self>, function: &Arc<str>, bytes: usize) -> Option<LogCharge> {
        let mut s = self.state.lock().unwrap();
        let total = s.in_flight;
        let f = s.functions.entry(function.clone()).or_default();
        if f.in_flight + bytes > self.per_function || total + bytes > self.capacity {
            f.dropped_lines += 1;
            f.dropped_bytes += bytes as u64;
            return None;
        }
        f.in_flight += bytes;
        s.in_flight += bytes;
        Some(LogCharge {
            gate: self.clone(),
            function: function.clone(),
            bytes,
        })
    }

    /// Takes room for a line that must not be dropped (a START line), even
    /// past the bounds; such lines are one per invocation.
    fn charge(self: &Arc<Self>, function: &Arc<str>, bytes: usize) -> LogCharge {
        let mut s = self.state.lock().unwrap();
        s.in_flight += bytes;
        s.functions.entry(function.clone()).or_default().in_flight += bytes;
        LogCharge {
            gate: self.clone(),
            function: function.clone(),
            bytes,
        }
    }

    /// Most bytes held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// What was dropped, per function that lost anything.
    pub fn drops(&self) -> Vec<LogDrops> {
        let s = self.state.lock().unwrap();
        let mut out: Vec<LogDrops> = s
            .functions
            .iter()
            .filter(|(_, f)| f.dropped_lines > 0)
            .map(|(name, f)| LogDrops {
                function: name.to_string(),
                lines: f.dropped_lines,
                bytes: f.dropped_bytes,
            })
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
    }
}

/// The gate of this process. Global because every instance's pipe shares it
/// and the pipes are created deep inside the instance factories; without one
/// (unit tests, tools) pipes are bounded only by the channel, as before.
static GATE: OnceLock<Arc<LogGate>> = OnceLock::new();

/// Installs the process's log gate; the first call wins.
pub fn install_log_gate(gate: Arc<LogGate>) {
    let _ = GATE.set(gate);
}

/// Everything the reader and the invoking task share, behind one lock.
struct State {
    /// Whose output this is (a spare instance learns it when assigned).
    function: Arc<str>,
    partial: Vec<u8>,
    request_id: Option<Arc<str>>,
    bytes: usize,
    truncated: bool,
    capture: Option<String>,
    /// The invocation's START line and its time, logged ahead of its first
    /// line of output (a silent invocation never writes it here).
    start: Option<(String, i64)>,
    /// Lines cut but not yet handed to the sink (sent outside the lock).
    ready: Vec<LogLine>,
    eof: bool,
}

struct Shared {
    fd: AsyncFd<OwnedFd>,
    state: Mutex<State>,
    /// Held from cutting lines until they are sent, so they reach the sink in order.
    send_turn: tokio::sync::Mutex<()>,
    instance: Arc<str>,
    sink: mpsc::Sender<LogLine>,
}

/// The reading side of an instance's output pipe.
pub(crate) struct LogPipe {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LogPipe {
    fn drop(&mut self) {
        self.reader.abort();
    }
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
        let shared = Arc::new(Shared {
            fd,
            state: Mutex::new(State {
                function,
                partial: Vec::new(),
                request_id: None,
                bytes: 0,
                truncated: false,
                capture: None,
                start: None,
                ready: Vec::new(),
                eof: false,
            }),
            send_turn: tokio::sync::Mutex::new(()),
            instance,
            sink,
        });
        let reader = tokio::spawn(read_loop(shared.clone()));
        Ok((Self { shared, reader }, write))
    }

    /// Attributes output from now on to `function` (a spare's assignment).
    pub(crate) fn set_function(&self, function: Arc<str>) {
        self.shared.state.lock().unwrap().function = function;
    }

    /// Attributes output from now on to `request_id`; `start` (its START line,
    /// stamped `start_ms`) goes out just ahead of its first line.
    pub(crate) fn begin(&self, request_id: Arc<str>, capture: bool, start: String, start_ms: i64) {
        let mut s = self.shared.state.lock().unwrap();
        s.start = Some((start, start_ms));
        s.request_id = Some(request_id);
        s.bytes = 0;
        s.truncated = false;
        s.capture = capture.then(String::new);
    }

    /// Drains everything written so far, ends the attribution and returns the
    /// captured output and whether the START line was logged.
    pub(crate) async fn finish(&self) -> (String, bool) {
        // Waits for lines the reader has cut but not yet sent.
        let _turn = self.shared.send_turn.lock().await;
        let (captured, lines, start_logged) = {
            let mut s = self.shared.state.lock().unwrap();
            // Only what is in the pipe now: that holds everything written before
            // the result was posted. A writer that keeps going does not hold us here.
            let pending = pending_bytes(self.shared.fd.get_ref());
            let _ = self.shared.drain(&mut s, pending);
            self.shared.flush_partial(&mut s);
            s.request_id = None;
            (
                s.capture.take().unwrap_or_default(),
                std::mem::take(&mut s.ready),
                s.start.take().is_none(),
            )
        };
        self.shared.send(lines).await;
        (captured, start_logged)
    }
}

async fn read_loop(shared: Arc<Shared>) {
    loop {
        let Ok(mut guard) = shared.fd.readable().await else {
            break;
        };
        let turn = shared.send_turn.lock().await;
        let (lines, eof, emptied) = {
            let mut s = shared.state.lock().unwrap();
            let emptied = shared.drain(&mut s, READ_SLICE);
            if s.eof {
                shared.flush_partial(&mut s);
            }
            (std::mem::take(&mut s.ready), s.eof, emptied)
        };
        if emptied {
            guard.clear_ready();
        }
        shared.send(lines).await;
        drop(turn);
        if !emptied {
            // Lets `finish` take its turn between slices of a flood.
            drop(guard);
            tokio::task::yield_now().await;
        }
        if eof {
            break;
        }
    }
}

impl Shared {
    /// Reads until the pipe is empty (or closed) or `limit` bytes were read, cutting
    /// lines. The limit bounds how long the lock is held: a process writing faster
    /// than lines are cut would otherwise keep the pipe from ever emptying.
    /// Returns whether the pipe was emptied (or closed).
    fn drain(&self, s: &mut State, limit: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while !s.eof && taken < limit {
            match read(self.fd.get_ref(), &mut buf) {
                Ok(0) => s.eof = true,
                Ok(n) => {
                    taken += n;
                    self.consume(s, &buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => s.eof = true,
            }
        }
        s.eof
    }

    fn consume(&self, s: &mut State, mut data: &[u8]) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            s.partial.extend_from_slice(&data[..pos]);
            data = &data[pos + 1..];
            self.flush_partial(s);
        }
        s.partial.extend_from_slice(data);
        while s.partial.len() >= MAX_LINE {
            let rest = s.partial.split_off(MAX_LINE);
            self.flush_partial(s);
            s.partial = rest;
        }
    }

    fn flush_partial(&self, s: &mut State) {
        if s.partial.is_empty() || s.truncated {
            s.partial.clear();
            return;
        }
        let mut text = String::from_utf8_lossy(&s.partial).into_owned();
        s.partial.clear();
        if text.ends_with('\r') {
            text.pop();
        }
        s.bytes += text.len() + LINE_OVERHEAD;
        let notice = s.bytes > MAX_BYTES_PER_INVOCATION;
        if notice {
            s.truncated = true;
            text = format!(
                "[nimbus] output exceeded {} MB for this invocation; the rest is dropped",
                MAX_BYTES_PER_INVOCATION >> 20
            );
        }
        if let Some(c) = s.capture.as_mut() {
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
        let gate = GATE.get();
        if let Some((start, ts_ms)) = s.start.take() {
            let charge = gate.map(|g| g.charge(&s.function, start.len() + LINE_OVERHEAD));
            s.ready.push(LogLine {
                function: s.function.clone(),
                instance: self.instance.clone(),
                request_id: s.request_id.clone(),
                ts_ms,
                text: start,
                charge,
            });
        }
        // The truncation notice, like START, is one line per invocation and
        // must not go missing.
        let charge = match gate {
            Some(g) if notice => Some(g.charge(&s.function, text.len() + LINE_OVERHEAD)),
            Some(g) => match g.try_charge(&s.function, text.len() + LINE_OVERHEAD) {
                Some(c) => Some(c),
                None => return,
            },
            None => None,
        };
        s.ready.push(LogLine {
            function: s.function.clone(),
            instance: self.instance.clone(),
            request_id: s.request_id.clone(),
            ts_ms: chrono::Utc::now().timestamp_millis(),
            text,
            charge,
        });
    }

    async fn send(&self, lines: Vec<LogLine>) {
        for line in lines {
            let _ = self.sink.send(line).await;
        }
    }
}

/// Bytes the reader task takes per turn before letting others at the lock.
const READ_SLICE: usize = 256 * 1024;

fn pending_bytes(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } == 0 {
        n.max(0) as usize
    } else {
        READ_SLICE
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    /// The reader cuts an invocation's lines but cannot send them all (the sink is
    /// full); `finish` must not return before they are sent, or the invoker's END,
    /// sent right after it, overtakes them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_cut_by_the_reader_reach_the_sink_before_finish_returns() {
        let (sink, mut rx) = mpsc::channel(1);
        let (pipe, write) = LogPipe::new("f".into(), "i".into(), sink.clone()).unwrap();
        pipe.begin("r1".into(), false, "START RequestId: r1".into(), 1);
        let mut w = std::fs::File::from(write);
        w.write_all(b"a\nb\nc\n").unwrap();
        // The reader takes all four lines and blocks sending the second one.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ended = tokio::spawn(async move {
            pipe.finish().await;
            sink.send(LogLine {
                function: "f".into(),
                instance: "i".into(),
                request_id: Some("r1".into()),
                ts_ms: 2,
                text: "END RequestId: r1".into(),
                charge: None,
            })
            .await
            .unwrap();
            pipe
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = Vec::new();
        while got.len() < 5 {
            let line = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a line within 5 s")
                .expect("the sink is open");
            got.push(line);
            // Give whoever waits for the freed slot the chance to take it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _pipe = ended.await.unwrap();
        assert_eq!(
            texts(&got),
            ["START RequestId: r1", "a", "b", "c", "END RequestId: r1"]
        );
        assert!(
            got[..4]
                .iter()
                .all(|l| l.request_id.as_deref() == Some("r1"))
        );
    }
}
