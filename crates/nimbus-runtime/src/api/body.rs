//! Reading request bodies with a size limit, without copying single-frame bodies.

use std::future::poll_fn;
use std::pin::Pin;

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};

pub(crate) enum BodyRead {
    Complete(Bytes),
    /// The body is longer than the limit. The rest of it is still unread.
    TooLarge(Body),
    /// The connection failed before the body ended.
    Failed(axum::Error),
}

/// Reads `body` up to `limit` bytes. A `Content-Length` above the limit is rejected
/// before anything is read.
pub(crate) async fn read_limited(headers: &HeaderMap, mut body: Body, limit: usize) -> BodyRead {
    let declared_length = content_length(headers);
    if declared_length.is_some_and(|length| length > limit as u64) {
        return BodyRead::TooLarge(body);
    }

    // Most bodies arrive as one frame, which is returned as is. Only a body in several
    // frames is copied into one buffer.
    let mut first: Option<Bytes> = None;
    let mut buffer: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let frame = match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return BodyRead::Failed(error),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the Runtime API uses
        };
        total += data.len();
        if total > limit {
            return BodyRead::TooLarge(body);
        }
        if let Some(buffer) = buffer.as_mut() {
            buffer.extend_from_slice(&data);
        } else if let Some(first_frame) = first.take() {
            let capacity = declared_length.map_or(total, |length| length as usize).max(total);
            let mut joined = BytesMut::with_capacity(capacity);
            joined.extend_from_slice(&first_frame);
            joined.extend_from_slice(&data);
            buffer = Some(joined);
        } else {
            first = Some(data);
        }
    }

    match (buffer, first) {
        (Some(buffer), _) => BodyRead::Complete(buffer.freeze()),
        (None, Some(first)) => BodyRead::Complete(first),
        (None, None) => BodyRead::Complete(Bytes::new()),
    }
}

/// Reads and discards up to `max_bytes` of `body`, so that the connection can be kept
/// alive after an early reply. A longer body is left unread and hyper closes the
/// connection after the reply.
pub(crate) async fn discard(mut body: Body, max_bytes: usize) {
    let mut discarded = 0usize;
    while discarded <= max_bytes {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => discarded += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) | None => return,
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
