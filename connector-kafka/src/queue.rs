//! A consumer's message queue read many messages per call: `BaseConsumer::poll` takes one
//! message per call, each with its own queue lock, clock readings and event allocation — about
//! a fifth of a source's CPU at a few hundred thousand messages per second. librdkafka's batch
//! call hands over every message at hand at once.

use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

/// The consumer queue of one consumer; lives no longer than the consumer (`'c`).
pub(crate) struct Queue<'c> {
    ptr: NonNull<rd::rd_kafka_queue_t>,
    taken: Vec<*mut rd::rd_kafka_message_t>,
    _consumer: std::marker::PhantomData<&'c BaseConsumer>,
}

/// One message as librdkafka holds it, valid for the callback it is passed to.
pub(crate) struct Raw<'a>(&'a rd::rd_kafka_message_t);

impl Raw<'_> {
    /// The error the message carries instead of data (a position outside the log, say).
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        (self.0.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| self.0.err.into())
    }

    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// Milliseconds since the Unix epoch, when the message has a timestamp.
    pub fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live for `'_`; librdkafka only reads it.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && t != -1)
            .then_some(t)
    }

    pub fn key(&self) -> Option<&[u8]> {
        // SAFETY: librdkafka's key buffer of `key_len` bytes lives as long as the message.
        unsafe { bytes(self.0.key, self.0.key_len) }
    }

    pub fn payload(&self) -> Option<&[u8]> {
        // SAFETY: as for the key.
        unsafe { bytes(self.0.payload, self.0.len) }
    }
}

unsafe fn bytes<'a>(p: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    (!p.is_null()).then(|| std::slice::from_raw_parts(p as *const u8, len))
}

impl<'c> Queue<'c> {
    /// The queue `consumer`'s fetched messages arrive on.
    pub fn of(consumer: &'c BaseConsumer) -> Option<Queue<'c>> {
        // SAFETY: the client handle is valid while `consumer` is; the returned reference is
        // released in `drop`, before the consumer can be.
        let ptr = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        Some(Queue {
            ptr: NonNull::new(ptr)?,
            taken: Vec::new(),
            _consumer: std::marker::PhantomData,
        })
    }

    /// Waits up to `wait` for a first message, then takes every message at hand, at most
    /// `max` in all, passing each to `each`; returns how many it took.
    pub fn take(&mut self, wait: Duration, max: usize, mut each: impl FnMut(Raw<'_>)) -> usize {
        let mut n = 0;
        if !wait.is_zero() {
            n = self.call(wait, 1.min(max), &mut each);
            if n == 0 {
                return 0;
            }
        }
        n + self.call(Duration::ZERO, max - n, &mut each)
    }

    fn call(&mut self, wait: Duration, max: usize, each: &mut impl FnMut(Raw<'_>)) -> usize {
        if max == 0 {
            return 0;
        }
        self.taken.clear();
        self.taken.reserve(max);
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the array has room for `max` pointers; librdkafka fills the first `n` with
        // messages this call owns until they are destroyed below.
        let n = unsafe {
            let n = rd::rd_kafka_consume_batch_queue(
                self.ptr.as_ptr(),
                ms,
                self.taken.as_mut_ptr(),
                max,
            );
            let n = n.max(0) as usize;
            self.taken.set_len(n);
            n
        };
        for &m in &self.taken {
            // SAFETY: each pointer is a live message until destroyed right after.
            unsafe {
                each(Raw(&*m));
                rd::rd_kafka_message_destroy(m);
            }
        }
        self.taken.clear();
        n
    }
}

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `of`, released once.
        unsafe { rd::rd_kafka_queue_destroy(self.ptr.as_ptr()) }
    }
}
