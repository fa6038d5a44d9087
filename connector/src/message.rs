//! What every transport hands to a format: messages at positions (a partition and an offset
//! in it), and what comes back for those that do not decode.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;

/// Bytes of a bad message's payload kept in the error relation.
pub const BAD_PAYLOAD_PREFIX: usize = 256;

/// One message, detached from the transport that read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the message has a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
}

impl Message {
    /// The payload's bytes (empty when there is none).
    pub fn bytes(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    /// The first [`BAD_PAYLOAD_PREFIX`] bytes of the payload.
    pub payload: Vec<u8>,
}

impl BadMessage {
    pub fn new(m: &Message, error: String) -> Self {
        let payload = m.bytes();
        BadMessage {
            partition: m.partition,
            offset: m.offset,
            error,
            payload: payload[..payload.len().min(BAD_PAYLOAD_PREFIX)].to_vec(),
        }
    }
}

/// Each decoded row's message: (partition, offset).
pub type Origins = Vec<(i32, i64)>;

/// Decoded rows (in message order), the messages that could not be decoded, and each row's
/// message.
pub type Decoded = (Option<RecordBatch>, Vec<BadMessage>, Origins);
