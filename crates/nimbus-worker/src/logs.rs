//! Collection of a slot's stdout and stderr, and the START, END and REPORT lines that
//! frame each invocation's output as Lambda prints them.

use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

/// Output kept per invocation; the rest is replaced by a truncation notice so one
/// chatty function cannot fill the log store.
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 256 * 1024;

/// One line of function output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unix epoch milliseconds when the worker read the line.
    pub timestamp_ms: i64,
    pub message: String,
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[derive(Default)]
struct Buffer {
    lines: Vec<LogLine>,
    bytes: usize,
    truncated: bool,
    /// Bytes after the last newline, completed by a later read.
    partial: Vec<u8>,
    /// The unfinished line grew past [`MAX_LOG_BYTES_PER_INVOCATION`], so it will be
    /// dropped and its further bytes are not kept.
    partial_too_long: bool,
}

impl Buffer {
    /// Splits a chunk into lines. Only the chunk is searched for newlines, so a long
    /// line that arrives in many chunks costs time in proportion to its length.
    fn push_chunk(&mut self, chunk: &[u8]) {
        let now = now_ms();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.extend_partial(&rest[..end]);
            self.finish_partial(now);
            rest = &rest[end + 1..];
        }
        self.extend_partial(rest);
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        if self.partial_too_long {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_LOG_BYTES_PER_INVOCATION {
            self.partial_too_long = true;
            self.partial = Vec::new();
            return;
        }
        self.partial.extend_from_slice(bytes);
    }

    fn finish_partial(&mut self, timestamp_ms: i64) {
        let line = std::mem::take(&mut self.partial);
        if std::mem::take(&mut self.partial_too_long) {
            self.note_dropped(timestamp_ms);
        } else {
            self.push_line(timestamp_ms, &line);
        }
    }

    fn push_line(&mut self, timestamp_ms: i64, line: &[u8]) {
        if self.bytes + line.len() > MAX_LOG_BYTES_PER_INVOCATION {
            self.note_dropped(timestamp_ms);
            return;
        }
        self.bytes += line.len();
        self.lines.push(LogLine {
            timestamp_ms,
            message: String::from_utf8_lossy(line).into_owned(),
        });
    }

    fn note_dropped(&mut self, timestamp_ms: i64) {
        if !self.truncated {
            self.truncated = true;
            self.lines.push(LogLine {
                timestamp_ms,
                message: format!("[nimbus] output over {MAX_LOG_BYTES_PER_INVOCATION} bytes was dropped"),
            });
        }
    }

    fn take(&mut self) -> Vec<LogLine> {
        if !self.partial.is_empty() || self.partial_too_long {
            self.finish_partial(now_ms());
        }
        self.bytes = 0;
        self.truncated = false;
        std::mem::take(&mut self.lines)
    }
}

/// Reads a slot's output pipes in the background. [`LogCollector::take`] first
/// drains everything already written to the pipes, so output a runtime wrote before
/// posting its response is never attributed to the next invocation.
pub struct LogCollector {
    buffer: Arc<Mutex<Buffer>>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
}

fn drain(receiver: &pipe::Receiver, buffer: &Mutex<Buffer>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match receiver.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buffer.lock().expect("log buffer lock").push_chunk(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

impl LogCollector {
    pub fn start(stdout: std::fs::File, stderr: std::fs::File) -> std::io::Result<LogCollector> {
        let stdout = pipe::Receiver::from_file(stdout)?;
        let stderr = pipe::Receiver::from_file(stderr)?;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let (flush, mut flush_requests) = mpsc::channel::<oneshot::Sender<()>>(4);
        let task_buffer = buffer.clone();
        tokio::spawn(async move {
            let (mut stdout_open, mut stderr_open) = (true, true);
            while stdout_open || stderr_open {
                tokio::select! {
                    ready = stdout.ready(Interest::READABLE), if stdout_open => {
                        stdout_open = ready.is_ok() && drain(&stdout, &task_buffer);
                    }
                    ready = stderr.ready(Interest::READABLE), if stderr_open => {
                        stderr_open = ready.is_ok() && drain(&stderr, &task_buffer);
                    }
                    request = flush_requests.recv() => {
                        let Some(done) = request else { break };
                        if stdout_open { stdout_open = drain(&stdout, &task_buffer); }
                        if stderr_open { stderr_open = drain(&stderr, &task_buffer); }
                        let _ = done.send(());
                    }
                }
            }
            // Both pipes are closed, so flushes complete at once until the collector is dropped.
            while let Some(done) = flush_requests.recv().await {
                let _ = done.send(());
            }
        });
        Ok(LogCollector { buffer, flush })
    }

    /// Returns the output read so far, after draining what is in the pipes.
    pub async fn take(&self) -> Vec<LogLine> {
        let (done, flushed) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = flushed.await;
        }
        self.buffer.lock().expect("log buffer lock").take()
    }
}

/// Figures of one invocation for its REPORT line.
pub struct Report<'a> {
    pub request_id: &'a str,
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    pub init_duration_ms: Option<f64>,
}

pub fn start_line(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

pub fn end_line(request_id: &str) -> String {
    format!("END RequestId: {request_id}")
}

pub fn report_line(report: &Report<'_>) -> String {
    let mut line = format!(
        "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        report.request_id,
        report.duration_ms,
        report.billed_duration_ms,
        report.memory_size_mb,
        report.max_memory_used_mb
    );
    if let Some(init) = report.init_duration_ms {
        line.push_str(&format!("\tInit Duration: {init:.2} ms"));
    }
    line
}

/// The last `max_bytes` of the log text, cut at a character boundary, as Lambda
/// returns with `X-Log-Type: Tail`.
pub fn tail(lines: &[LogLine], max_bytes: usize) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.message);
        text.push('\n');
    }
    if text.len() <= max_bytes {
        return text;
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_splits_lines_across_chunks() {
        let mut buffer = Buffer::default();
        buffer.push_chunk(b"hel");
        buffer.push_chunk(b"lo\nwor");
        buffer.push_chunk(b"ld\n");
        let lines: Vec<String> = buffer.take().into_iter().map(|l| l.message).collect();
        assert_eq!(lines, ["hello", "world"]);
    }

    #[test]
    fn buffer_keeps_partial_line_on_take() {
        let mut buffer = Buffer::default();
        buffer.push_chunk(b"no newline");
        let lines = buffer.take();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "no newline");
    }

    #[test]
    fn buffer_truncates_large_output() {
        let mut buffer = Buffer::default();
        let line = vec![b'x'; 1000];
        for _ in 0..300 {
            buffer.push_chunk(&line);
            buffer.push_chunk(b"\n");
        }
        let lines = buffer.take();
        assert_eq!(lines.len(), MAX_LOG_BYTES_PER_INVOCATION / 1000 + 1);
        assert!(lines.last().unwrap().message.contains("was dropped"));
    }

    #[test]
    fn buffer_drops_overlong_line_and_keeps_next() {
        let mut buffer = Buffer::default();
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..(MAX_LOG_BYTES_PER_INVOCATION / chunk.len() + 2) {
            buffer.push_chunk(&chunk);
        }
        assert!(
            buffer.partial.is_empty(),
            "the bytes of a line that will be dropped are not kept"
        );
        buffer.push_chunk(b"\nafter\n");
        let lines: Vec<String> = buffer.take().into_iter().map(|l| l.message).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("was dropped"), "{lines:?}");
        assert_eq!(lines[1], "after");
    }

    #[test]
    fn report_line_with_init() {
        let report = Report {
            request_id: "r1",
            duration_ms: 1.234,
            billed_duration_ms: 2,
            memory_size_mb: 128,
            max_memory_used_mb: 40,
            init_duration_ms: Some(99.5),
        };
        assert_eq!(
            report_line(&report),
            "REPORT RequestId: r1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 99.50 ms"
        );
    }

    #[test]
    fn tail_cuts_at_char_boundary() {
        let lines = vec![LogLine {
            timestamp_ms: 0,
            message: "aé".repeat(10),
        }];
        let text = tail(&lines, 5);
        assert!(text.len() <= 5);
        assert!(text.ends_with('\n'));
    }
}
