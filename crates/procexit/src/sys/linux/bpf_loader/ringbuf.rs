//! The consumer side of a BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`), as
//! Documentation/bpf/ringbuf.rst and kernel/bpf/ringbuf.c define it:
//!
//! - page 0 (read-write) holds the consumer position, which only we write;
//! - page 1 (read-only) holds the producer position; the data pages follow
//!   and are mapped twice in a row, so a record that wraps around the end
//!   is still contiguous;
//! - each record starts with an 8-byte header whose first 32 bits are its
//!   length plus two flags: BUSY (reserved, not yet submitted) and DISCARD;
//!   records are 8-byte aligned.
//!
//! Ordering: the positions and the header are read with acquire loads
//! (pairing with the kernel's release stores on submit), and the consumer
//! position is published with a release store once a record has been read,
//! which hands its space back to the kernel.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::syscall::Map;
use super::LoadError;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_SIZE: usize = 8;

/// A mapped ring buffer. Dropping it unmaps the pages (the map itself
/// stays alive as long as the program that writes to it).
#[derive(Debug)]
pub(crate) struct RingBuffer {
    map: Map,
    /// The consumer page (read-write, `page` bytes).
    consumer: *mut libc::c_void,
    /// The producer page and the data pages twice (read-only).
    producer: *mut libc::c_void,
    page: usize,
    /// Data size (`max_entries`, a power of two).
    size: usize,
}

// SAFETY: the two mappings belong to this value alone (nothing else knows
// their addresses) and stay valid until `drop`; records are only read in
// `drain`, through `&mut self`. The type is not `Sync`, so the `&self`
// position accessors are never used from two threads at once. Moving it to
// another thread is as safe as moving a Vec.
unsafe impl Send for RingBuffer {}

fn mmap_error(code: i32, name: &str) -> LoadError {
    LoadError::Os {
        call: "mmap of the ring buffer",
        name: name.to_owned(),
        code,
        log: String::new(),
    }
}

impl RingBuffer {
    /// Maps the ring buffer map `map`.
    pub(crate) fn new(map: Map) -> Result<RingBuffer, LoadError> {
        let page = rustix::param::page_size();
        let size = usize::try_from(map.def.max_entries).unwrap_or(0);
        if !size.is_power_of_two() || size < page {
            return Err(LoadError::Unsupported(format!(
                "ring buffer size {size} (the kernel wants a power-of-two number of pages)"
            )));
        }
        let fd = map.as_fd().as_raw_fd();
        let producer_len = size
            .checked_mul(2)
            .and_then(|s| s.checked_add(page))
            .ok_or(LoadError::Unsupported("ring buffer too large".into()))?;
        // SAFETY: a new shared mapping of the map's consumer page; the
        // kernel checks the length and protection against the map. The
        // result is checked before use.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(mmap_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                &map.def.name,
            ));
        }
        let offset = libc::off_t::try_from(page).unwrap_or(libc::off_t::MAX);
        // SAFETY: as above, read-only, for the producer page and the data
        // pages (mapped twice by the kernel).
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                producer_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                offset,
            )
        };
        if producer == libc::MAP_FAILED {
            let code = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // SAFETY: `consumer` was mapped above with length `page` and is
            // not used after this.
            unsafe { libc::munmap(consumer, page) };
            return Err(mmap_error(code, &map.def.name));
        }
        Ok(RingBuffer {
            map,
            consumer,
            producer,
            page,
            size,
        })
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page is mapped, page-aligned (so aligned for
        // a usize) and lives as long as `self`; the kernel's `unsigned long
        // consumer_pos` is at its start. Only this process writes it, and
        // only through this atomic.
        unsafe { &*self.consumer.cast::<AtomicUsize>() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: the producer page is mapped, page-aligned and lives as
        // long as `self`; the kernel writes `producer_pos` at its start with
        // release stores, which an atomic load observes correctly.
        unsafe { &*self.producer.cast::<AtomicUsize>() }
    }

    /// Calls `each` with every record submitted so far, in order, handing
    /// each record's space back to the kernel after its call. Stops at the
    /// first record still being written, and at the producer position read
    /// on entry, so a producer faster than the reader cannot keep it here
    /// (what comes later keeps the descriptor readable). Returns the number
    /// of records, or an error for a length the kernel cannot have written
    /// (reading on would spin on it forever).
    pub(crate) fn drain(&mut self, mut each: impl FnMut(&[u8])) -> Result<usize, RingCorrupt> {
        let mask = self.size - 1;
        // SAFETY: the data pages start one page after the producer page,
        // inside the mapping of `page + 2 * size` bytes.
        let data = unsafe { self.producer.cast::<u8>().add(self.page) };
        let mut count = 0;
        let mut consumer = self.consumer_pos().load(Ordering::Acquire);
        let producer = self.producer_pos().load(Ordering::Acquire);
        while consumer < producer {
            let offset = consumer & mask;
            // SAFETY: offset < size, so the header (8-byte aligned, as
            // every record is) lies in the first copy of the data pages;
            // the kernel publishes it with a release store.
            let header = unsafe { &*data.add(offset).cast::<AtomicU32>() };
            let len = header.load(Ordering::Acquire);
            if len & BUSY_BIT != 0 {
                break;
            }
            let sample_len = (len & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if sample_len > self.size - HEADER_SIZE {
                return Err(RingCorrupt { len });
            }
            if len & DISCARD_BIT == 0 {
                // SAFETY: the record is committed (BUSY clear, seen with
                // acquire) and the kernel does not touch it until the
                // consumer position passes it below; it lies within
                // `offset + 8 + sample_len <= 2 * size` bytes of the
                // double mapping.
                let sample = unsafe {
                    std::slice::from_raw_parts(data.add(offset + HEADER_SIZE), sample_len)
                };
                each(sample);
                count += 1;
            }
            consumer = consumer.wrapping_add((sample_len + HEADER_SIZE).next_multiple_of(8));
            self.consumer_pos().store(consumer, Ordering::Release);
        }
        Ok(count)
    }
}

/// A record header whose length does not fit the ring: the ring cannot be
/// read past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingCorrupt {
    /// The header's length word.
    pub(crate) len: u32,
}

impl AsFd for RingBuffer {
    /// The map's descriptor: readable (poll/epoll) when records wait.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths and
        // no reference into them outlives `&mut self`.
        unsafe {
            libc::munmap(self.consumer, self.page);
            libc::munmap(self.producer, self.page + 2 * self.size);
        }
    }
}
