//! The server's stderr log (its own messages and the gateway's access log, a
//! line per request), written by a thread of its own in batches.
//!
//! Why not `tracing_appender::non_blocking`: its writer thread is woken for every
//! line. With the access log on, that is one thread wake-up per request, and on a
//! virtual machine a wake-up of an idle vCPU costs tens of microseconds: it was a
//! sixth of the server's context switches at concurrency 1. Here a request only
//! appends its line to a shared buffer; the writer is woken when the buffer stops
//! being empty, then lingers a few milliseconds so that everything logged in the
//! meantime goes out in one `write`. An idle server's writer sleeps.
//!
//! Nothing is dropped: when the buffer is full the logging thread waits for the
//! writer (as the lossless appender does), and dropping the guard flushes.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer waits after the first line of a batch.
const LINGER: Duration = Duration::from_millis(5);
/// Bytes queued before a logging thread has to wait for the writer.
const CAPACITY: usize = 1024 * 1024;

#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits here for a first line; loggers wait here for room.
    changed: Condvar,
}

/// Cloned into the `tracing` subscriber; each event's text is one `write`.
#[derive(Clone)]
pub struct BatchedWriter(Arc<Shared>);

/// Flushes what is queued and stops the writer thread when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`.
pub fn start(out: impl Write + Send + 'static) -> (BatchedWriter, Guard) {
    let shared = Arc::new(Shared::default());
    let writer_side = shared.clone();
    let thread = std::thread::Builder::new()
        .name("nimbus-log-stderr".into())
        .spawn(move || write_loop(&writer_side, out))
        .expect("can spawn the stderr log thread");
    (
        BatchedWriter(shared.clone()),
        Guard {
            shared,
            thread: Some(thread),
        },
    )
}

fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let closed = {
            let mut q = lock(&shared.queue);
            while q.buf.is_empty() && !q.closed {
                q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if !q.closed {
                drop(q);
                std::thread::sleep(LINGER);
                q = lock(&shared.queue);
            }
            std::mem::swap(&mut batch, &mut q.buf);
            q.closed
        };
        // Loggers waiting for room may go on.
        shared.changed.notify_all();
        // A closed or broken stderr is not a reason to stop serving.
        let _ = out.write_all(&batch);
        let _ = out.flush();
        batch.clear();
        if closed {
            return;
        }
    }
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Write for BatchedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut q = lock(&shared.queue);
        while !q.buf.is_empty() && q.buf.len() + data.len() > CAPACITY && !q.closed {
            q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        let was_empty = q.buf.is_empty();
        q.buf.extend_from_slice(data);
        drop(q);
        // Only the first line of a batch wakes the writer.
        if was_empty {
            shared.changed.notify_all();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `out` the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(data);
            s.1 += 1;
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_written_together_leave_in_one_write_and_in_order() {
        let sink = Sink::default();
        let (mut w, guard) = start(sink.clone());
        for i in 0..100 {
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        std::thread::sleep(LINGER * 10);
        let (text, writes) = sink.0.lock().unwrap().clone();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(text).unwrap(), expected);
        assert!(writes <= 2, "100 lines took {writes} writes");
        drop(guard);
    }

    #[test]
    fn dropping_the_guard_flushes_and_a_full_queue_waits_instead_of_dropping() {
        let sink = Sink::default();
        let (w, guard) = start(sink.clone());
        let line = vec![b'x'; 4095];
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mut w = w.clone();
                let line = line.clone();
                std::thread::spawn(move || {
                    for _ in 0..1024 {
                        w.write_all(&line).unwrap();
                        w.write_all(b"\n").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (text, _) = sink.0.lock().unwrap().clone();
        // 16 MB went through a 1 MB queue, all of it.
        assert_eq!(text.len(), 4 * 1024 * 4096);
    }
}
