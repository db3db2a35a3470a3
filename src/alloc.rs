//! The global allocator: Redis' allocator once the server has given it to us (so module
//! memory shows in `INFO memory` and counts against `maxmemory`), the system allocator
//! otherwise. The fallback lets unit and integration tests link this crate as a library.

use std::alloc::{GlobalAlloc, Layout, System};

use redis_module::raw;

pub struct ModuleAlloc;

/// jemalloc aligns a block to its size class; rounding the size up to the alignment gives
/// the alignment `layout` asks for (the same trick as `redis_module::alloc::RedisAlloc`).
fn padded_size(layout: Layout) -> usize {
    (layout.size() + layout.align() - 1) & !(layout.align() - 1)
}

// SAFETY: both allocators are real allocators. The server's table is filled in
// RedisModule_OnLoad before any Rust allocation of the module happens and never changes
// afterwards, so every block is freed by the allocator that made it.
unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match raw::RedisModule_Alloc {
            Some(alloc) => alloc(padded_size(layout)).cast(),
            None => System.alloc(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match raw::RedisModule_Free {
            Some(free) => free(ptr.cast()),
            None => System.dealloc(ptr, layout),
        }
    }
}

/// A request glibc's malloc serves from its large bins (above its per-thread cache): before
/// serving it, glibc merges every small block freed since the last such request.
const LARGE_REQUEST: usize = 4096;

/// Lets the allocator merge what this slice freed, now, while that is a slice's worth.
/// Servers built on glibc's malloc (Valkey's PyPI build) defer merging small freed blocks
/// until some request needs a large block; giving keys a TTL on Valkey frees one small
/// object per key (the key's object is reallocated to hold its expire time), so without this
/// the merge of hundreds of thousands of blocks fell into whichever slice the server's
/// expires table grew in, holding other clients for several milliseconds. With jemalloc
/// (Redis' default) this is one cheap allocation.
pub fn settle() {
    let layout = match Layout::from_size_align(LARGE_REQUEST, 8) {
        Ok(layout) => layout,
        Err(_) => return,
    };
    // SAFETY: a non-zero layout; the block is freed at once by the same allocator.
    unsafe {
        let block = ModuleAlloc.alloc(layout);
        if !block.is_null() {
            ModuleAlloc.dealloc(block, layout);
        }
    }
}
