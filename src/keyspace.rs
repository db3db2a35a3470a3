//! Reading the keyspace through the raw module API: key handles opened read-only, the
//! resumable scan, databases and the facts the server keeps about keys. Nothing here changes
//! a key: writes go through the write gateway (`write`).

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, Ordering};

use redis_module::{raw, Context};

use crate::policy::KeyType;

/// The policy's name for a `RedisModule_KeyType` code (None for empty or unknown types).
pub fn key_type_of(code: c_int) -> Option<KeyType> {
    match code as isize {
        raw::REDISMODULE_KEYTYPE_STRING => Some(KeyType::String),
        raw::REDISMODULE_KEYTYPE_LIST => Some(KeyType::List),
        raw::REDISMODULE_KEYTYPE_HASH => Some(KeyType::Hash),
        raw::REDISMODULE_KEYTYPE_SET => Some(KeyType::Set),
        raw::REDISMODULE_KEYTYPE_ZSET => Some(KeyType::ZSet),
        raw::REDISMODULE_KEYTYPE_MODULE => Some(KeyType::Module),
        raw::REDISMODULE_KEYTYPE_STREAM => Some(KeyType::Stream),
        _ => None,
    }
}

/// A key name the server gave us (or we own), valid for the lifetime `'a`.
#[derive(Clone, Copy)]
pub struct KeyName<'a> {
    ptr: NonNull<raw::RedisModuleString>,
    _lifetime: PhantomData<&'a raw::RedisModuleString>,
}

impl<'a> KeyName<'a> {
    /// # Safety
    /// `ptr` must be a live module string for the lifetime `'a`.
    pub(crate) unsafe fn from_raw(ptr: NonNull<raw::RedisModuleString>) -> KeyName<'a> {
        KeyName {
            ptr,
            _lifetime: PhantomData,
        }
    }

    pub fn as_ptr(self) -> *mut raw::RedisModuleString {
        self.ptr.as_ptr()
    }

    /// The name's bytes (binary-safe).
    pub fn bytes(self) -> &'a [u8] {
        let mut len: usize = 0;
        // SAFETY: `ptr` is a live module string for 'a; StringPtrLen returns its buffer.
        unsafe {
            let data = raw::RedisModule_StringPtrLen.unwrap()(self.ptr.as_ptr(), &mut len);
            if data.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(data.cast::<u8>(), len)
        }
    }
}

/// A key handle the server gave us or that we opened read-only; valid only while borrowed.
/// Deciding happens on such handles; changes go through the write gateway (`write`), which
/// opens a key writable only when something is to change.
pub struct KeyView {
    key: NonNull<raw::RedisModuleKey>,
}

impl KeyView {
    pub fn key_type(&self) -> Option<KeyType> {
        // SAFETY: `key` is a live handle for the duration of the borrow.
        key_type_of(unsafe { raw::RedisModule_KeyType.unwrap()(self.key.as_ptr()) })
    }

    /// Absolute expire time in Unix ms, or None when the key has no TTL.
    pub fn abs_expire_ms(&self) -> Option<i64> {
        // SAFETY: live, non-null handle (GetExpire on NULL crashes 7.0, hence NonNull).
        let at = unsafe { raw::RedisModule_GetAbsExpire.unwrap()(self.key.as_ptr()) };
        (at != raw::REDISMODULE_NO_EXPIRE as i64).then_some(at)
    }

    /// Idle time in ms when the eviction policy keeps LRU data (not under LFU).
    pub fn idle_ms(&self) -> Option<i64> {
        let mut idle: i64 = 0;
        // SAFETY: live handle and a valid out-pointer.
        let rc = unsafe { raw::RedisModule_GetLRU.unwrap()(self.key.as_ptr(), &mut idle) };
        (rc == raw::REDISMODULE_OK as c_int).then_some(idle)
    }

    /// `RM_ValueLength`: a string's bytes, a collection's elements, a stream's entries.
    pub fn value_length(&self) -> u64 {
        // SAFETY: live handle for the duration of the borrow.
        unsafe { raw::RedisModule_ValueLength.unwrap()(self.key.as_ptr()) as u64 }
    }

    /// The raw handle, for the write gateway.
    pub(crate) fn raw(&self) -> *mut raw::RedisModuleKey {
        self.key.as_ptr()
    }
}

/// A key's use as the eviction policy keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// LRU: ms since the last access (second resolution).
    IdleMs(i64),
    /// LFU: the logarithmic access counter.
    Freq(i64),
}

/// What the eviction policy keeps of a key's use: its LRU idle time or its LFU counter.
///
/// # Safety
/// `key` is a live key handle.
pub unsafe fn key_access(key: *mut raw::RedisModuleKey) -> Option<Access> {
    let (mut idle_ms, mut freq) = (-1, -1);
    // SAFETY: live handle (the caller's promise) and valid out-pointers; each sets -1 when the
    // policy keeps the other kind of data.
    unsafe {
        raw::RedisModule_GetLRU.unwrap()(key, &mut idle_ms);
        raw::RedisModule_GetLFU.unwrap()(key, &mut freq);
    }
    match (idle_ms, freq) {
        (_, f) if f >= 0 => Some(Access::Freq(f)),
        (ms, _) if ms >= 0 => Some(Access::IdleMs(ms)),
        _ => None,
    }
}

/// Puts back the use data `before` a read refreshed it (only then: a key not refreshed, e.g.
/// while a fork child saves, is left as it is). Writes only the object's LRU/LFU field, which
/// is neither replicated nor seen by WATCH.
///
/// # Safety
/// `key` is a live key handle.
pub unsafe fn put_back_access(key: *mut raw::RedisModuleKey, before: Access) {
    // SAFETY: the caller's promise.
    let now = unsafe { key_access(key) };
    if !now.is_some_and(|now| refreshed(before, now)) {
        return;
    }
    match before {
        // SAFETY: the caller's promise.
        Access::IdleMs(ms) => unsafe { set_idle_ms(key, ms) },
        // SAFETY: the caller's promise.
        Access::Freq(f) => unsafe {
            raw::RedisModule_SetLFU.unwrap()(key, f);
        },
    }
}

/// Whether a read between `before` and `now` counted as an access: the idle time went down,
/// or the counter up (it only decays otherwise).
pub fn refreshed(before: Access, now: Access) -> bool {
    match (before, now) {
        (Access::IdleMs(b), Access::IdleMs(n)) => n < b,
        (Access::Freq(b), Access::Freq(n)) => n > b,
        _ => false,
    }
}

/// What one unit of `RM_SetLRU`'s idle time is, in the ms `RM_GetLRU` gives; 0 until known.
/// Redis takes ms, as it documents. Valkey 9 takes a unit of 1,000,000 ms: an idle time of
/// 2,000 "ms" set there came back as 2,000,000,000 ms (and longer ones wrapped the LRU clock),
/// which made every key the module read look idle for weeks, the first to be evicted.
static SET_LRU_UNIT_MS: AtomicI64 = AtomicI64::new(0);

/// Sets the key's LRU idle time as near `ms` as the server's `RM_SetLRU` can: on Valkey, to
/// the nearest 1,000 s (0 below 500 s: the key then looks just read, as the read made it).
///
/// # Safety
/// `key` is a live key handle.
unsafe fn set_idle_ms(key: *mut raw::RedisModuleKey, ms: i64) {
    let unit = match SET_LRU_UNIT_MS.load(Ordering::Relaxed) {
        // SAFETY: the caller's promise.
        0 => unsafe { learn_set_lru_unit(key) },
        unit => unit,
    };
    // SAFETY: the caller's promise.
    unsafe { raw::RedisModule_SetLRU.unwrap()(key, (ms + unit / 2) / unit) };
}

/// Sets an idle time of one unit and reads back what that is in ms (rounded to the LRU
/// clock's one-second resolution; under a second means ms).
///
/// # Safety
/// `key` is a live key handle.
unsafe fn learn_set_lru_unit(key: *mut raw::RedisModuleKey) -> i64 {
    // SAFETY: the caller's promise.
    let back = unsafe {
        raw::RedisModule_SetLRU.unwrap()(key, 1);
        key_access(key)
    };
    let unit = match back {
        Some(Access::IdleMs(ms)) if ms >= LRU_RESOLUTION_MS => {
            (ms + LRU_RESOLUTION_MS / 2) / LRU_RESOLUTION_MS * LRU_RESOLUTION_MS
        }
        Some(Access::IdleMs(_)) => 1,
        // The policy moved to LFU meanwhile: learn next time.
        _ => return 1,
    };
    SET_LRU_UNIT_MS.store(unit, Ordering::Relaxed);
    unit
}

const LRU_RESOLUTION_MS: i64 = 1000;

/// A key opened by us; closed on drop.
pub struct OpenKey {
    view: KeyView,
}

impl OpenKey {
    /// Opens `name` for reading without touching its LRU/LFU data. A read-only handle
    /// signals nothing when closed: WATCH and client-side caches see no change.
    pub fn readable(ctx: &Context, name: KeyName) -> Option<OpenKey> {
        Self::open(
            ctx,
            name,
            raw::REDISMODULE_READ | raw::REDISMODULE_OPEN_KEY_NOTOUCH,
        )
    }

    /// Opens `name` with the key API `mode` bits; None when the key does not exist. Only
    /// the write gateway (`write`) asks for a writable handle.
    pub(crate) fn open(ctx: &Context, name: KeyName, mode: u32) -> Option<OpenKey> {
        // SAFETY: ctx and name are valid for this call; the handle is closed in Drop.
        let ptr =
            unsafe { raw::RedisModule_OpenKey.unwrap()(ctx.ctx, name.as_ptr(), mode as c_int) };
        let key = NonNull::new(ptr.cast::<raw::RedisModuleKey>())?;
        let open = OpenKey {
            view: KeyView { key },
        };
        open.view.key_type().map(|_| open)
    }

    pub fn view(&self) -> &KeyView {
        &self.view
    }
}

impl Drop for OpenKey {
    fn drop(&mut self) {
        // SAFETY: we opened this handle and close it exactly once.
        unsafe { raw::RedisModule_CloseKey.unwrap()(self.view.key.as_ptr()) };
    }
}

/// An owned module string made from bytes (freed on drop).
pub struct OwnedName {
    ptr: NonNull<raw::RedisModuleString>,
}

impl OwnedName {
    pub fn new(bytes: &[u8]) -> Option<OwnedName> {
        // SAFETY: NULL ctx = unmanaged string, freed in Drop.
        let ptr = unsafe {
            raw::RedisModule_CreateString.unwrap()(
                std::ptr::null_mut(),
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
        NonNull::new(ptr).map(|ptr| OwnedName { ptr })
    }

    pub fn as_ptr(&self) -> *mut raw::RedisModuleString {
        self.ptr.as_ptr()
    }

    pub fn name(&self) -> KeyName<'_> {
        KeyName {
            ptr: self.ptr,
            _lifetime: PhantomData,
        }
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        // SAFETY: created unmanaged by us, freed once.
        unsafe { raw::RedisModule_FreeString.unwrap()(std::ptr::null_mut(), self.ptr.as_ptr()) };
    }
}

/// Resumable walk over the keyspace (RM_Scan). Each `step` visits about one hash bucket,
/// which is the granularity the time budget needs. Not `Send`: main thread only.
pub struct ScanCursor {
    cursor: NonNull<raw::RedisModuleScanCursor>,
}

/// What the visitor sees for each key: its name and a read handle.
pub type Visitor<'a> = dyn FnMut(&Context, KeyName, &KeyView) + 'a;

/// A key visit panicked; the walk was stopped (the panic never reaches the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitPanicked;

struct VisitState<'a, 'b> {
    visitor: &'a mut Visitor<'b>,
    panicked: bool,
}

extern "C" fn visit_trampoline(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    privdata: *mut c_void,
) {
    // SAFETY: privdata is the &mut VisitState passed to RM_Scan by `step`, alive for the call.
    let state = unsafe { &mut *privdata.cast::<VisitState>() };
    let (Some(key), Some(name)) = (NonNull::new(key), NonNull::new(name)) else {
        return;
    };
    let name = KeyName {
        ptr: name,
        _lifetime: PhantomData,
    };
    if state.panicked {
        return;
    }
    let context = Context::new(ctx);
    let view = KeyView { key };
    // A panic must not unwind into the server (that aborts it): stop the walk instead.
    let visit = catch_unwind(AssertUnwindSafe(|| (state.visitor)(&context, name, &view)));
    if visit.is_err() {
        state.panicked = true;
    }
}

impl ScanCursor {
    pub fn new() -> ScanCursor {
        // SAFETY: plain constructor; destroyed in Drop.
        let ptr = unsafe { raw::RedisModule_ScanCursorCreate.unwrap()() };
        ScanCursor {
            cursor: NonNull::new(ptr).expect("RedisModule_ScanCursorCreate returned NULL"),
        }
    }

    /// Visits the next bucket. Ok(true) while more keys remain; Err if the visitor panicked.
    pub fn step(&mut self, ctx: &Context, visitor: &mut Visitor) -> Result<bool, VisitPanicked> {
        let mut state = VisitState {
            visitor,
            panicked: false,
        };
        // SAFETY: cursor and ctx are valid; `state` outlives the call.
        let more = unsafe {
            raw::RedisModule_Scan.unwrap()(
                ctx.ctx,
                self.cursor.as_ptr(),
                Some(visit_trampoline),
                (&mut state as *mut VisitState).cast::<c_void>(),
            )
        };
        match state.panicked {
            true => Err(VisitPanicked),
            false => Ok(more != 0),
        }
    }
}

impl Default for ScanCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe { raw::RedisModule_ScanCursorDestroy.unwrap()(self.cursor.as_ptr()) };
    }
}

/// Reports a slow slice to the server's latency monitor (shown by `LATENCY LATEST`).
pub fn latency_sample(event: &str, ms: i64) {
    // SAFETY: the API table is filled once at load, before any callback runs.
    let add = unsafe { raw::RedisModule_LatencyAddSample };
    if let (Some(add), Ok(name)) = (add, CString::new(event)) {
        // SAFETY: valid C string for the duration of the call.
        unsafe { add(name.as_ptr(), ms) };
    }
}

/// Whether the server asks modules not to add to the replication stream now (clients
/// paused for writes, FAILOVER, a cluster manual failover).
pub fn avoid_replica_traffic() -> bool {
    // SAFETY: the API table is filled once at load; the function takes no arguments.
    unsafe { raw::RedisModule_AvoidReplicaTraffic.is_some_and(|f| f() != 0) }
}

/// used_memory / maxmemory (0 when maxmemory is not set).
pub fn used_memory_ratio() -> f64 {
    // SAFETY: the API table is filled once at load; the function takes no arguments.
    unsafe { raw::RedisModule_GetUsedMemoryRatio.map(|f| f() as f64) }.unwrap_or(0.0)
}

/// The id of the client running the current command.
pub fn client_id(ctx: &Context) -> u64 {
    // SAFETY: valid command context.
    unsafe { raw::RedisModule_GetClientId.unwrap()(ctx.ctx) }
}

/// Whether the client with this id is still connected (a blocked client that closed its
/// connection, or was killed, is gone from the server's client table).
pub fn client_connected(id: u64) -> bool {
    // SAFETY: a null info pointer asks only whether the client exists.
    unsafe {
        raw::RedisModule_GetClientInfoById.unwrap()(std::ptr::null_mut(), id)
            == raw::REDISMODULE_OK as c_int
    }
}

/// The database the current client has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: valid command context.
    unsafe { raw::RedisModule_GetSelectedDb.unwrap()(ctx.ctx) }
}

/// Selects `db` for the calls that follow (the key API and RM_Call work on the context's db).
/// False when the server has no such database (nothing changes then).
pub fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: valid context; an out-of-range index is refused by the server (no change).
    unsafe { raw::RedisModule_SelectDb.unwrap()(ctx.ctx, db) == raw::REDISMODULE_OK as c_int }
}

/// Runs `f` with `db` selected, then selects again the database that was selected before.
pub fn in_db<T>(ctx: &Context, db: i32, f: impl FnOnce() -> T) -> T {
    let selected = selected_db(ctx);
    select_db(ctx, db);
    let out = f();
    select_db(ctx, selected);
    out
}

/// The databases that hold keys, in order. Found by selecting each in turn until the server
/// refuses one (no `CONFIG GET databases`: hardened servers rename CONFIG away).
pub fn databases_with_keys(ctx: &Context) -> Vec<i32> {
    in_db(ctx, selected_db(ctx), || {
        let mut found = Vec::new();
        let mut db = 0;
        while select_db(ctx, db) {
            if db_size(ctx) > 0 {
                found.push(db);
            }
            db += 1;
        }
        found
    })
}

/// How many keys of the context's selected database have no TTL: `INFO keyspace`'s keys −
/// expires (the key API has no count of keys with a TTL). None when the server's answer
/// cannot be read.
pub fn keys_without_ttl(ctx: &Context) -> Option<u64> {
    let info = ctx.server_info("keyspace");
    match info.field(&format!("db{}", selected_db(ctx))) {
        Some(line) => {
            let (keys, expires) = parse_keyspace_counts(line.try_as_str().ok()?)?;
            Some(keys.saturating_sub(expires))
        }
        // INFO leaves out empty databases.
        None => (db_size(ctx) == 0).then_some(0),
    }
}

/// `keys=10,expires=3,avg_ttl=0` → (10, 3).
pub fn parse_keyspace_counts(line: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("keys")?, field("expires")?))
}

/// Number of keys in the context's selected database.
pub fn db_size(ctx: &Context) -> u64 {
    // SAFETY: valid context.
    unsafe { raw::RedisModule_DbSize.unwrap()(ctx.ctx) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fresher_use_counts_as_a_read() {
        use Access::{Freq, IdleMs};
        assert!(refreshed(IdleMs(5000), IdleMs(0)));
        // The clock ticked between the two looks; nothing read the key.
        assert!(!refreshed(IdleMs(5000), IdleMs(6000)));
        assert!(!refreshed(IdleMs(5000), IdleMs(5000)));
        assert!(refreshed(Freq(5), Freq(6)));
        // The counter decayed (a minute passed); nothing read the key.
        assert!(!refreshed(Freq(5), Freq(4)));
        assert!(!refreshed(Freq(5), Freq(5)));
        // The policy changed between the two looks: nothing to put back.
        assert!(!refreshed(IdleMs(5000), Freq(9)));
        assert!(!refreshed(Freq(5), IdleMs(0)));
    }

    #[test]
    fn keyspace_counts_are_read_from_the_info_line() {
        assert_eq!(
            parse_keyspace_counts("keys=10,expires=3,avg_ttl=0"),
            Some((10, 3))
        );
        assert_eq!(
            parse_keyspace_counts("keys=5,expires=5,avg_ttl=12,subexpiry=0"),
            Some((5, 5))
        );
        assert_eq!(parse_keyspace_counts("keys=5,avg_ttl=12"), None);
        assert_eq!(parse_keyspace_counts("keys=x,expires=1"), None);
        assert_eq!(parse_keyspace_counts(""), None);
    }
}
