//! What a statement really allocates. DataFusion's memory pool counts what operators say they
//! reserve, which lags what they hold (batches in flight, slices that keep a whole buffer
//! alive, a string's doubled capacity): under a 64 MiB limit an `array_agg` held ~9× the
//! limit before its pool refused. [`Tracking`] wraps the process's allocator and charges
//! every allocation of [`TRACKED_FROM`] bytes or more to the [`Account`] entered on the
//! allocating thread (if any); the account is written in a header before the block, so the
//! free is charged back to it on whatever thread it happens. Small allocations are neither
//! headed nor charged: they are the per-row churn of view maintenance, and DataFusion's own
//! accounting covers the structures built of them.
//!
//! Statements enter their session's account while they are polled, and DataFusion's spawned
//! tasks inherit the account of the thread that spawned them ([`install_tracer`]). The
//! session's memory pool refuses to grow past the account's limit (`session::memory`), and
//! the stream of rows checks the account after every batch.
//!
//! Accounts are slots of a static table, so a block freed after its account is gone (or
//! given to another session) finds a generation that no longer matches and is not charged.

use std::alloc::{GlobalAlloc, Layout};
use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};

/// Allocations this large or larger carry a header and are charged.
pub const TRACKED_FROM: usize = 512;

/// How many accounts may exist at once; sessions beyond it run uncharged (DataFusion's
/// accounting still applies).
const SLOTS: usize = 4096;

struct Slot {
    /// Bytes allocated under this account and not yet freed.
    live: AtomicIsize,
    /// The most `live` has been.
    peak: AtomicIsize,
    /// Bumped whenever the slot is taken; headers hold the generation they were charged to.
    generation: AtomicU32,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        live: AtomicIsize::new(0),
        peak: AtomicIsize::new(0),
        generation: AtomicU32::new(0),
    }
}; SLOTS];
/// Slots handed out: 1 = taken. A slot's index is its account number.
static TAKEN: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
/// Bytes live under all accounts together.
static ALL: AtomicIsize = AtomicIsize::new(0);
/// Where the search for a free slot starts (spreads sessions over the table).
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The account this thread charges: `generation << 32 | slot + 1`, 0 for none.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// Bytes live under every account (all running statements), as allocated.
pub fn all_live() -> usize {
    ALL.load(Ordering::Relaxed).max(0) as usize
}

/// Bytes live in blocks of [`TRACKED_FROM`] bytes or more, charged to an account or not.
static LARGE: AtomicIsize = AtomicIsize::new(0);

/// Bytes the process holds in blocks of [`TRACKED_FROM`] bytes or more (what it holds in
/// smaller ones is not counted).
pub fn large_live() -> usize {
    LARGE.load(Ordering::Relaxed).max(0) as usize
}

fn charge(tag: u64, bytes: isize) {
    LARGE.fetch_add(bytes, Ordering::Relaxed);
    if tag == 0 {
        return;
    }
    let slot = &TABLE[(tag as u32 - 1) as usize];
    if slot.generation.load(Ordering::Relaxed) == (tag >> 32) as u32 {
        let live = slot.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if bytes > 0 && live > slot.peak.load(Ordering::Relaxed) {
            slot.peak.fetch_max(live, Ordering::Relaxed);
        }
        ALL.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A statement-memory account: what the threads that entered it allocate and have not freed.
#[derive(Debug)]
pub struct Account {
    tag: u64,
}

impl Account {
    /// A new account at zero, or `None` when every slot is taken.
    pub fn open() -> Option<Account> {
        let start = NEXT.fetch_add(1, Ordering::Relaxed);
        (0..SLOTS).map(|i| (start + i) % SLOTS).find_map(|i| {
            TAKEN[i]
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                .ok()?;
            let slot = &TABLE[i];
            let generation = slot.generation.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
            let stale = slot.live.swap(0, Ordering::AcqRel);
            slot.peak.store(0, Ordering::Relaxed);
            ALL.fetch_sub(stale, Ordering::Relaxed);
            Some(Account {
                tag: (u64::from(generation) << 32) | (i as u64 + 1),
            })
        })
    }

    fn slot(&self) -> &'static Slot {
        &TABLE[(self.tag as u32 - 1) as usize]
    }

    /// Bytes allocated under this account and not yet freed.
    pub fn live(&self) -> usize {
        self.slot().live.load(Ordering::Relaxed).max(0) as usize
    }

    /// The most this account has had allocated at once.
    pub fn peak(&self) -> usize {
        self.slot().peak.load(Ordering::Relaxed).max(0) as usize
    }

    /// Charges this thread's allocations to the account until the guard is dropped.
    pub fn enter(&self) -> Entered {
        Entered(CURRENT.with(|c| c.replace(self.tag)))
    }

    /// `future`, charged to this account whenever it is polled.
    pub fn charged<F: Future>(&self, future: F) -> Charged<F> {
        Charged {
            tag: self.tag,
            inner: future,
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let slot = self.slot();
        // Blocks still live are no longer charged to anyone: bump the generation first.
        slot.generation.fetch_add(1, Ordering::AcqRel);
        let stale = slot.live.swap(0, Ordering::AcqRel);
        ALL.fetch_sub(stale, Ordering::Relaxed);
        TAKEN[(self.tag as u32 - 1) as usize].store(0, Ordering::Release);
    }
}

/// Restores the thread's previous account when dropped.
pub struct Entered(u64);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// A future (or stream) whose polls are charged to an account.
pub struct Charged<F> {
    tag: u64,
    inner: F,
}

impl<F> Charged<F> {
    /// `inner`, charged to the account this thread charges now (none when it charges none).
    pub fn current(inner: F) -> Charged<F> {
        Charged {
            tag: CURRENT.with(Cell::get),
            inner,
        }
    }
}

impl<F: Future + Unpin> Future for Charged<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = Entered(CURRENT.with(|c| c.replace(this.tag)));
        Pin::new(&mut this.inner).poll(cx)
    }
}

impl<S: futures::Stream + Unpin> futures::Stream for Charged<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        let _entered = Entered(CURRENT.with(|c| c.replace(this.tag)));
        Pin::new(&mut this.inner).poll_next(cx)
    }
}

/// DataFusion's spawned tasks (repartitioning, spill reading, …) charge the account of the
/// thread that spawned them.
struct InheritAccount;

type Erased = Box<dyn Any + Send>;

impl datafusion::common::runtime::JoinSetTracer for InheritAccount {
    fn trace_future(
        &self,
        fut: futures::future::BoxFuture<'static, Erased>,
    ) -> futures::future::BoxFuture<'static, Erased> {
        Box::pin(Charged::current(fut))
    }

    fn trace_block(
        &self,
        f: Box<dyn FnOnce() -> Erased + Send>,
    ) -> Box<dyn FnOnce() -> Erased + Send> {
        let tag = CURRENT.with(Cell::get);
        Box::new(move || {
            let _entered = Entered(CURRENT.with(|c| c.replace(tag)));
            f()
        })
    }
}

/// Makes DataFusion's spawned tasks inherit their spawner's account (once per process).
pub fn install_tracer() {
    static TRACER: InheritAccount = InheritAccount;
    let _ = datafusion::common::runtime::set_join_set_tracer(&TRACER);
}

/// The global allocator `A`, with allocations of [`TRACKED_FROM`] bytes or more charged to
/// the current thread's account. A statement's blocks of [`MAPPED_FROM`] bytes or more are
/// mapped from the kernel directly: given back the moment they are freed, and grown by
/// `mremap` without a second copy alive meanwhile (a doubling buffer would otherwise hold
/// 1.5× its size while it moves, and the allocator keeps freed huge blocks for a while).
pub struct Tracking<A>(pub A);

/// A statement's blocks this large are mapped (glibc's malloc maps from 128 KiB on; no
/// difference in query speed was measurable at this size).
pub const MAPPED_FROM: usize = 256 << 10;
const PAGE: usize = 4096;
/// In a tag: the block is mapped (slot numbers stay far below this bit).
const MAPPED: u64 = 1 << 31;

/// Bytes in front of a tracked block: a multiple of its alignment with room for the tag.
fn header(align: usize) -> usize {
    align.max(16)
}

/// The layout of a tracked block with its header.
unsafe fn headed(layout: Layout) -> Layout {
    let h = header(layout.align());
    // Callers guarantee size rounded up to align fits isize; adding one more alignment
    // unit of header may not, in which case the allocation fails like any oversized one.
    Layout::from_size_align_unchecked(layout.size().saturating_add(h), h)
}

/// Bytes mapped for a block of `size`: a page of header, then the block.
fn mapped_len(size: usize) -> usize {
    size.saturating_add(2 * PAGE - 1) & !(PAGE - 1)
}

unsafe fn map(size: usize) -> *mut u8 {
    let block = libc::mmap(
        std::ptr::null_mut(),
        mapped_len(size),
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if block == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    block as *mut u8
}

unsafe fn tag_of(ptr: *mut u8) -> u64 {
    (ptr.sub(8) as *const u64).read()
}

unsafe fn set_tag(ptr: *mut u8, tag: u64) {
    (ptr.sub(8) as *mut u64).write(tag);
}

impl<A: GlobalAlloc> Tracking<A> {
    /// A headed block of `layout` charged to `tag`.
    unsafe fn alloc_tracked(&self, layout: Layout, zeroed: bool, tag: u64) -> *mut u8 {
        if tag != 0 && layout.size() >= MAPPED_FROM && layout.align() <= PAGE {
            let block = map(layout.size());
            if block.is_null() {
                return block;
            }
            let p = block.add(PAGE);
            set_tag(p, tag | MAPPED);
            charge(tag, layout.size() as isize);
            return p;
        }
        let block = if zeroed {
            self.0.alloc_zeroed(headed(layout))
        } else {
            self.0.alloc(headed(layout))
        };
        if block.is_null() {
            return block;
        }
        let p = block.add(header(layout.align()));
        set_tag(p, tag);
        charge(tag, layout.size() as isize);
        p
    }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for Tracking<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < TRACKED_FROM {
            return self.0.alloc(layout);
        }
        self.alloc_tracked(layout, false, CURRENT.with(Cell::get))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < TRACKED_FROM {
            return self.0.alloc_zeroed(layout);
        }
        self.alloc_tracked(layout, true, CURRENT.with(Cell::get))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < TRACKED_FROM {
            return self.0.dealloc(ptr, layout);
        }
        let tag = tag_of(ptr);
        charge(tag & !MAPPED, -(layout.size() as isize));
        if tag & MAPPED != 0 {
            libc::munmap(ptr.sub(PAGE) as *mut libc::c_void, mapped_len(layout.size()));
        } else {
            self.0.dealloc(ptr.sub(header(layout.align())), headed(layout));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_tracked = layout.size() >= TRACKED_FROM;
        let new_tracked = new_size >= TRACKED_FROM;
        if !old_tracked && !new_tracked {
            return self.0.realloc(ptr, layout, new_size);
        }
        // A tracked block keeps the account it was charged to.
        let tag = if old_tracked {
            tag_of(ptr) & !MAPPED
        } else {
            CURRENT.with(Cell::get)
        };
        if old_tracked && new_tracked {
            if tag_of(ptr) & MAPPED != 0 {
                let block = libc::mremap(
                    ptr.sub(PAGE) as *mut libc::c_void,
                    mapped_len(layout.size()),
                    mapped_len(new_size),
                    libc::MREMAP_MAYMOVE,
                );
                if block == libc::MAP_FAILED {
                    return std::ptr::null_mut();
                }
                charge(tag, new_size as isize - layout.size() as isize);
                return (block as *mut u8).add(PAGE);
            }
            if tag == 0 || new_size < MAPPED_FROM {
                let h = header(layout.align());
                let block = self.0.realloc(ptr.sub(h), headed(layout), new_size.saturating_add(h));
                if block.is_null() {
                    return block;
                }
                charge(tag, new_size as isize - layout.size() as isize);
                return block.add(h);
            }
            // A statement's block grows past MAPPED_FROM: moved below into a mapped one.
        }
        // A block of another kind: allocated anew, copied, the old one freed.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let p = if new_tracked {
            self.alloc_tracked(new_layout, false, tag)
        } else {
            self.0.alloc(new_layout)
        };
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_alignment_and_accounts_see_their_blocks() {
        static A: Tracking<std::alloc::System> = Tracking(std::alloc::System);
        let account = Account::open().expect("a slot");
        unsafe {
            let entered = account.enter();
            let big = Layout::from_size_align(4096, 128).unwrap();
            let p = A.alloc(big);
            assert_eq!(p as usize % 128, 0);
            let small = Layout::from_size_align(64, 8).unwrap();
            let q = A.alloc(small);
            drop(entered);
            assert_eq!(account.live(), 4096);
            // Grown elsewhere: still this account's block.
            let p = A.realloc(p, big, 10_000);
            assert_eq!(p as usize % 128, 0);
            assert_eq!(account.live(), 10_000);
            // Shrunk below the threshold: a new, untracked block with the same bytes.
            p.write(7);
            let grown = Layout::from_size_align(10_000, 128).unwrap();
            let r = A.realloc(p, grown, 100);
            assert_eq!(r.read(), 7);
            assert_eq!(account.live(), 0);
            A.dealloc(r, Layout::from_size_align(100, 128).unwrap());
            A.dealloc(q, small);
            // A statement's large block is mapped, grows in place or moves, keeps its bytes.
            let entered = account.enter();
            let huge = Layout::from_size_align(MAPPED_FROM, 64).unwrap();
            let m = A.alloc(huge);
            drop(entered);
            assert_eq!(m as usize % 64, 0);
            assert_ne!(tag_of(m) & MAPPED, 0);
            m.add(MAPPED_FROM - 1).write(9);
            let m = A.realloc(m, huge, 3 * MAPPED_FROM);
            assert_eq!(m.add(MAPPED_FROM - 1).read(), 9);
            assert_eq!(account.live(), 3 * MAPPED_FROM);
            A.dealloc(m, Layout::from_size_align(3 * MAPPED_FROM, 64).unwrap());
            assert_eq!(account.live(), 0);
            // Outside a statement, a large block comes from the wrapped allocator and grows
            // into a charged, mapped one only under an account.
            let plain = A.alloc(Layout::from_size_align(1024, 8).unwrap());
            assert_eq!(tag_of(plain), 0);
            let entered = account.enter();
            let plain = A.realloc(plain, Layout::from_size_align(1024, 8).unwrap(), MAPPED_FROM);
            drop(entered);
            assert_eq!(tag_of(plain) & MAPPED, 0, "a block keeps its (lack of) account");
            assert_eq!(account.live(), 0);
            A.dealloc(plain, Layout::from_size_align(MAPPED_FROM, 8).unwrap());
            // A block freed after its account is gone charges nobody.
            let entered = account.enter();
            let z = A.alloc_zeroed(Layout::from_size_align(1024, 8).unwrap());
            drop(entered);
            assert_eq!(account.live(), 1024);
            drop(account);
            A.dealloc(z, Layout::from_size_align(1024, 8).unwrap());
        }
    }
}
