//! The AWS Lambda Runtime API server of one execution environment (slot).
//!
//! The runtime inside the slot long-polls `GET /2018-06-01/runtime/invocation/next` for an
//! event and posts the result to `POST .../invocation/{id}/response` or `.../error`. A
//! runtime that fails to start posts `/2018-06-01/runtime/init/error` instead. Nimbus's own
//! bootstraps also post `/2018-06-01/runtime/nimbus/runtime-ready` just before they load
//! the function, which splits init into runtime start-up and the function's own init.
//! [`RuntimeApi`] is the worker's side of that exchange: [`RuntimeApi::wait_ready`] reports
//! the end of init, and [`RuntimeApi::invoke`] hands over one event and returns the
//! runtime's response or error.

mod body;
mod routes;
mod slot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt;
use bytes::Bytes;

use slot::Slot;

/// One event for the runtime, with the metadata that the Runtime API sends as headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Sent as `Lambda-Runtime-Aws-Request-Id`. The runtime posts its response or error
    /// under this id.
    pub request_id: String,
    /// Event body, sent to the runtime unchanged. Lambda payloads are JSON.
    pub payload: Bytes,
    /// Sent as `Lambda-Runtime-Deadline-Ms`, in Unix epoch milliseconds.
    pub deadline_ms: u64,
    /// Sent as `Lambda-Runtime-Invoked-Function-Arn`.
    pub invoked_function_arn: String,
    /// Sent as `Lambda-Runtime-Trace-Id`.
    pub trace_id: String,
    /// Sent as `Lambda-Runtime-Client-Context` when present: the client context JSON,
    /// already decoded from the base64 form of the Invoke API.
    pub client_context: Option<String>,
    /// Sent as `Lambda-Runtime-Cognito-Identity` when present (JSON).
    pub cognito_identity: Option<String>,
}

/// Outcome of the runtime's initialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The runtime called `/invocation/next`, so it has loaded the function.
    Ready,
    /// The runtime posted `/runtime/init/error`. `error_type` is its
    /// `Lambda-Runtime-Function-Error-Type` header and `body` the error document as posted.
    Failed { error_type: Option<String>, body: Bytes },
}

/// Outcome of one event: the runtime's response or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The body of `/invocation/{id}/response`, byte for byte as posted.
    Response(Bytes),
    /// The body of `/invocation/{id}/error`. `error_type` is its
    /// `Lambda-Runtime-Function-Error-Type` header.
    FunctionError { error_type: Option<String>, body: Bytes },
    /// The runtime posted a response or error body of more than `limit` bytes. The runtime
    /// got 413 and the body was discarded.
    ResponseTooLarge { limit: usize },
}

/// Default maximum response size: 6 MiB, Lambda's limit for synchronous invocations.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Limits that the Runtime API enforces on the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeApiLimits {
    /// Maximum size in bytes of a response or error body, and of an init error body.
    pub max_response_bytes: usize,
}

impl Default for RuntimeApiLimits {
    fn default() -> Self {
        RuntimeApiLimits {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The Runtime API of one slot. Clones share the same server; the server stops on
/// [`RuntimeApi::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct RuntimeApi {
    handle: Arc<ServerHandle>,
}

/// Owns the server: dropping the last [`RuntimeApi`] drops this and stops serving.
struct ServerHandle {
    slot: Arc<Slot>,
    local_addr: SocketAddr,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.slot.shut_down();
    }
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("local_addr", &self.handle.local_addr)
            .finish_non_exhaustive()
    }
}

impl RuntimeApi {
    /// Serves the Runtime API on an already-listening socket.
    ///
    /// Must be called inside a Tokio runtime, which runs the server. Outside one it
    /// returns an error.
    ///
    /// Every accepted connection gets `TCP_NODELAY`. Without it, a response that leaves
    /// in two writes (headers, then body) holds its second write until the runtime's
    /// delayed ACK arrives, which takes 40 ms or more on Linux.
    pub fn serve(listener: std::net::TcpListener, limits: RuntimeApiLimits) -> std::io::Result<RuntimeApi> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|error| {
            std::io::Error::other(format!(
                "RuntimeApi::serve must be called inside a Tokio runtime: {error}"
            ))
        })?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::warn!(%error, "failed to set TCP_NODELAY on a Runtime API connection");
            }
        });

        let slot = Arc::new(Slot::new(limits));
        let app = routes::router(slot.clone());
        let shutdown = slot.shutdown_signal();
        runtime.spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
            match served {
                Ok(()) => tracing::debug!(%local_addr, "Runtime API stopped"),
                Err(error) => tracing::error!(%local_addr, %error, "Runtime API server failed"),
            }
        });
        tracing::debug!(%local_addr, "Runtime API listening");

        Ok(RuntimeApi {
            handle: Arc::new(ServerHandle { slot, local_addr }),
        })
    }

    /// Returns the address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr
    }

    /// Waits until the runtime first calls `/invocation/next` or posts
    /// `/runtime/init/error`, whichever comes first, and returns that outcome. Returns at
    /// once when init has already ended.
    ///
    /// NOTE: a runtime that exits or hangs during init never resolves this; the caller
    /// races it against process exit and its init timeout.
    pub async fn wait_ready(&self) -> InitOutcome {
        self.handle.slot.wait_ready().await
    }

    /// Returns when the runtime posted `/runtime/nimbus/runtime-ready`, or `None` if it did
    /// not post it before init ended. Only Nimbus's own bootstraps post it.
    pub fn runtime_ready_at(&self) -> Option<Instant> {
        self.handle.slot.runtime_ready_at()
    }

    /// Hands one event to the runtime and returns its response or error.
    ///
    /// The slot contains at most one event: a second call waits, in call order, until the
    /// first is resolved or abandoned. Dropping the future abandons the event: a runtime
    /// that has not fetched it never gets it, and a later response or error for it gets 400.
    ///
    /// NOTE: this never resolves if the runtime never posts a response or error, which
    /// includes every call after [`RuntimeApi::shutdown`]. The caller bounds it with its
    /// own timeout and races it against process exit.
    pub async fn invoke(&self, invocation: Invocation) -> InvokeOutcome {
        self.handle.slot.invoke(invocation).await
    }

    /// Stops accepting connections and closes the open ones.
    ///
    /// A pending `/invocation/next` poll gets 503 at once. Idle keep-alive connections
    /// close at once; a connection in the middle of a request closes when that request
    /// is done.
    pub fn shutdown(&self) {
        self.handle.slot.shut_down();
    }
}
