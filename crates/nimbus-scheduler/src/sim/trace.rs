//! Invocation traces in CSV: a header line `function,arrival_ms,duration_ms,memory_mb`,
//! then one invocation per line. Fields are plain, without quotes. Blank lines are
//! skipped, and rows may come in any order: they are sorted by arrival when read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::sim::SimError;

pub const TRACE_HEADER: &str = "function,arrival_ms,duration_ms,memory_mb";
/// Largest function memory size accepted, as in AWS Lambda.
pub const MAX_MEMORY_MB: u64 = 10_240;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFunction {
    pub name: String,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceInvocation {
    /// Index into [`Trace::functions`].
    pub function: usize,
    pub arrival: Timestamp,
    pub duration: Duration,
}

/// A parsed trace. Invocations are sorted by arrival; equal arrivals keep file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub functions: Vec<TraceFunction>,
    pub invocations: Vec<TraceInvocation>,
}

impl Trace {
    /// Time from the first to the last arrival.
    pub fn span(&self) -> Duration {
        match (self.invocations.first(), self.invocations.last()) {
            (Some(first), Some(last)) => last.arrival.saturating_duration_since(first.arrival),
            _ => Duration::ZERO,
        }
    }

    pub fn last_arrival(&self) -> Timestamp {
        self.invocations.last().map_or(Timestamp::ZERO, |i| i.arrival)
    }
}

/// Reads and validates a trace file.
pub fn read_trace(path: &Path) -> Result<Trace, SimError> {
    let file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => SimError::TraceNotFound {
            path: path.to_path_buf(),
        },
        _ => SimError::ReadTrace {
            path: path.to_path_buf(),
            error,
        },
    })?;
    parse_trace(BufReader::new(file), path)
}

/// Parses a trace; `path` only names the source in errors.
pub fn parse_trace(reader: impl BufRead, path: &Path) -> Result<Trace, SimError> {
    let invalid = |line: usize, message: String| SimError::InvalidRow {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut trace = Trace::default();
    // Function name to (index in trace.functions, line of its first row).
    let mut known: HashMap<String, (usize, usize)> = HashMap::new();
    let mut header_seen = false;

    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| SimError::ReadTrace {
            path: path.to_path_buf(),
            error,
        })?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !header_seen {
            if line != TRACE_HEADER {
                return Err(invalid(
                    number,
                    format!("expected the header `{TRACE_HEADER}`, found `{line}`"),
                ));
            }
            header_seen = true;
            continue;
        }

        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, arrival, duration, memory] = fields[..] else {
            return Err(invalid(
                number,
                format!(
                    "expected 4 comma-separated fields ({TRACE_HEADER}), found {}",
                    fields.len()
                ),
            ));
        };
        if name.is_empty() {
            return Err(invalid(number, "function name is empty".to_string()));
        }
        let arrival_ms = parse_millis("arrival_ms", arrival).map_err(|m| invalid(number, m))?;
        let duration_ms = parse_millis("duration_ms", duration).map_err(|m| invalid(number, m))?;
        let memory_mb = parse_memory(memory).map_err(|m| invalid(number, m))?;

        let function = match known.get(name) {
            Some(&(function, first_line)) => {
                let expected = trace.functions[function].memory_mb;
                if expected != memory_mb {
                    return Err(invalid(
                        number,
                        format!(
                            "function `{name}` has memory_mb {memory_mb} here but {expected} on line {first_line}. \
                             Use one memory size per function."
                        ),
                    ));
                }
                function
            }
            None => {
                let function = trace.functions.len();
                trace.functions.push(TraceFunction {
                    name: name.to_string(),
                    memory_mb,
                });
                known.insert(name.to_string(), (function, number));
                function
            }
        };
        trace.invocations.push(TraceInvocation {
            function,
            arrival: Timestamp::from_millis(arrival_ms),
            duration: Duration::from_millis(duration_ms),
        });
    }

    if trace.invocations.is_empty() {
        return Err(SimError::EmptyTrace {
            path: path.to_path_buf(),
        });
    }
    trace.invocations.sort_by_key(|i| i.arrival);
    Ok(trace)
}

fn parse_millis(field: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("invalid {field} `{value}`: expected a whole number of milliseconds, 0 or more"))
}

fn parse_memory(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(memory) if (1..=MAX_MEMORY_MB).contains(&memory) => Ok(memory),
        _ => Err(format!(
            "invalid memory_mb `{value}`: expected a whole number of MB from 1 to {MAX_MEMORY_MB}"
        )),
    }
}

/// Writes a trace in the CSV format that [`read_trace`] reads.
pub fn write_trace(path: &Path, trace: &Trace) -> Result<(), SimError> {
    let write_error = |error| SimError::WriteTrace {
        path: path.to_path_buf(),
        error,
    };
    let file = File::create(path).map_err(write_error)?;
    let mut out = BufWriter::new(file);
    writeln!(out, "{TRACE_HEADER}").map_err(write_error)?;
    for invocation in &trace.invocations {
        let function = &trace.functions[invocation.function];
        writeln!(
            out,
            "{},{},{},{}",
            function.name,
            invocation.arrival.as_millis(),
            invocation.duration.as_millis(),
            function.memory_mb
        )
        .map_err(write_error)?;
    }
    out.flush().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Trace, SimError> {
        parse_trace(text.as_bytes(), Path::new("t.csv"))
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("trace must be rejected").to_string()
    }

    #[test]
    fn parses_and_sorts_rows() {
        let trace =
            parse("function,arrival_ms,duration_ms,memory_mb\nb,2000,10,256\na,1000,5,128\n\nb,1500,7,256\n").unwrap();
        assert_eq!(
            trace.functions,
            vec![
                TraceFunction {
                    name: "b".to_string(),
                    memory_mb: 256
                },
                TraceFunction {
                    name: "a".to_string(),
                    memory_mb: 128
                },
            ]
        );
        let arrivals: Vec<u64> = trace.invocations.iter().map(|i| i.arrival.as_millis()).collect();
        assert_eq!(arrivals, vec![1000, 1500, 2000]);
        assert_eq!(trace.invocations[0].function, 1);
        assert_eq!(trace.invocations[0].duration, Duration::from_millis(5));
        assert_eq!(trace.span(), Duration::from_secs(1));
    }

    #[test]
    fn accepts_windows_line_endings() {
        let trace = parse("function,arrival_ms,duration_ms,memory_mb\r\nf,0,1,128\r\n").unwrap();
        assert_eq!(trace.invocations.len(), 1);
    }

    #[test]
    fn rejects_wrong_header() {
        assert_eq!(
            error("name,arrival,duration,memory\nf,0,1,128\n"),
            "t.csv:1: expected the header `function,arrival_ms,duration_ms,memory_mb`, found `name,arrival,duration,memory`"
        );
    }

    #[test]
    fn rejects_wrong_field_count() {
        assert_eq!(
            error("function,arrival_ms,duration_ms,memory_mb\nf,0,1,128\nf,0,1\n"),
            "t.csv:3: expected 4 comma-separated fields (function,arrival_ms,duration_ms,memory_mb), found 3"
        );
    }

    #[test]
    fn rejects_bad_numbers() {
        let header = "function,arrival_ms,duration_ms,memory_mb\n";
        assert_eq!(
            error(&format!("{header}f,soon,1,128\n")),
            "t.csv:2: invalid arrival_ms `soon`: expected a whole number of milliseconds, 0 or more"
        );
        assert_eq!(
            error(&format!("{header}f,0,-5,128\n")),
            "t.csv:2: invalid duration_ms `-5`: expected a whole number of milliseconds, 0 or more"
        );
        assert_eq!(
            error(&format!("{header}f,0,1,0\n")),
            "t.csv:2: invalid memory_mb `0`: expected a whole number of MB from 1 to 10240"
        );
        assert_eq!(
            error(&format!("{header}f,0,1,1.5\n")),
            "t.csv:2: invalid memory_mb `1.5`: expected a whole number of MB from 1 to 10240"
        );
    }

    #[test]
    fn rejects_empty_function_name() {
        assert_eq!(
            error("function,arrival_ms,duration_ms,memory_mb\n,0,1,128\n"),
            "t.csv:2: function name is empty"
        );
    }

    #[test]
    fn rejects_changing_memory() {
        assert_eq!(
            error("function,arrival_ms,duration_ms,memory_mb\nf,0,1,128\ng,0,1,128\nf,5,1,256\n"),
            "t.csv:4: function `f` has memory_mb 256 here but 128 on line 2. Use one memory size per function."
        );
    }

    #[test]
    fn rejects_trace_without_rows() {
        assert_eq!(
            error("function,arrival_ms,duration_ms,memory_mb\n"),
            "trace t.csv has no invocations. Add rows after the header `function,arrival_ms,duration_ms,memory_mb`."
        );
        assert!(matches!(parse(""), Err(SimError::EmptyTrace { .. })));
    }

    #[test]
    fn missing_file_is_reported() {
        let error = read_trace(Path::new("/nonexistent/trace.csv")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "trace file /nonexistent/trace.csv not found. Generate one with `nimbus sim generate --out FILE`."
        );
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.csv");
        let trace = parse("function,arrival_ms,duration_ms,memory_mb\na,0,5,128\nb,10,7,512\na,20,9,128\n").unwrap();
        write_trace(&path, &trace).unwrap();
        assert_eq!(read_trace(&path).unwrap(), trace);
    }
}
