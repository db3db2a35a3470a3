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
