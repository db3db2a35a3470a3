//! Redis Cluster routing for the command whose keys are not among its arguments:
//! `RETENTION.JOBS <prefix> <queue>` works on `<prefix>:<queue>:...`. A node that does not
//! serve those keys answers `MOVED <slot> <host>:<port>` as the server does for declared keys,
//! so cluster clients follow it; a queue whose keys span slots is refused.

use redis_module::{CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags};

use crate::error::{Error, Result};

pub fn in_cluster(ctx: &Context) -> bool {
    ctx.get_flags().contains(ContextFlags::CLUSTER)
}

/// Whether a command only reads its keys: a replica of the slot's master serves reads to
/// clients that sent `READONLY` (as the server serves readonly commands on replicas), writes
/// go to the master.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Ok when this node serves every key that starts with `base` for `access` (outside a
/// cluster, always).
pub fn require_keys_here(ctx: &Context, base: &[u8], command: &str, access: Access) -> Result<()> {
    if !in_cluster(ctx) {
        return Ok(());
    }
    let slot = key_hash_slot(&[base, b"id"].concat());
    // Two suffixes hash alike only when a hash tag inside the base decides the slot.
    if key_hash_slot(&[base, b"completed"].concat()) != slot {
        return Err(Error::arg(format!(
            "{command}: the keys of '{}*' are spread over several slots; in Redis Cluster a queue needs a hash tag in its prefix or name (BullMQ: prefix '{{bull}}')",
            crate::args::shown(base)
        )));
    }
    match slot_owner(ctx, slot) {
        Some(owner) if owner.is_me => Ok(()),
        Some(owner) if owner.i_replicate && access == Access::Read && may_read_here(ctx, base) => {
            Ok(())
        }
        Some(owner) => Err(Error::Moved(format!("{slot} {}", owner.address))),
        None => Ok(()),
    }
}

/// Whether the server lets the caller read the queue's keys on this replica: only a client
/// that sent `READONLY` may (others are sent to the master, which alone is sure to be
/// current). Asked of the server with one read of a queue key: `RM_Call` carries the caller's
/// `READONLY` over, also from a script (`EVAL_RO`) or another module's call, and refuses keys
/// this node may not serve it.
fn may_read_here(ctx: &Context, base: &[u8]) -> bool {
    let opts = CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .build();
    let probe = [base, b"id"].concat();
    ctx.call_ext::<_, CallResult>("EXISTS", &opts, &[probe.as_slice()])
        .is_ok()
}

struct Owner {
    address: String,
    is_me: bool,
    /// This node is one of the owner's replicas.
    i_replicate: bool,
}

/// The master serving `slot`, from `CLUSTER SLOTS` (None when it cannot be told: then the
/// command runs here, as it would outside a cluster).
fn slot_owner(ctx: &Context, slot: u16) -> Option<Owner> {
    let opts = CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .build();
    let reply = ctx
        .call_ext::<_, CallResult>("CLUSTER", &opts, &["SLOTS"])
        .ok()?;
    let CallReply::Array(ranges) = reply else {
        return None;
    };
    let my_id = my_cluster_id()?;
    for range in ranges.iter() {
        let Ok(CallReply::Array(range)) = range else {
            continue;
        };
        let bound = |i: usize| match range.get(i) {
            Some(Ok(CallReply::I64(n))) => Some(n.to_i64()),
            _ => None,
        };
        let (Some(lo), Some(hi)) = (bound(0), bound(1)) else {
            continue;
        };
        if !(lo..=hi).contains(&i64::from(slot)) {
            continue;
        }
        let Some(Ok(CallReply::Array(node))) = range.get(2) else {
            return None;
        };
        let text = |i: usize| match node.get(i) {
            Some(Ok(CallReply::String(s))) => s.to_string(),
            Some(Ok(CallReply::I64(n))) => Some(n.to_i64().to_string()),
            _ => None,
        };
        let (host, port, id) = (text(0)?, text(1)?, text(2)?);
        // From this node's own state, not CLUSTER SLOTS: a replica appears in the slot's
        // node list only once the others have heard of it.
        let i_replicate = my_master_id(ctx, &my_id).is_some_and(|master| master == id);
        return Some(Owner {
            address: format!("{host}:{port}"),
            is_me: id == my_id,
            i_replicate,
        });
    }
    None
}

/// The master this node replicates, when it is a cluster replica.
fn my_master_id(ctx: &Context, my_id: &str) -> Option<String> {
    use redis_module::raw;
    // SAFETY: the API table is filled at load.
    let get = unsafe { raw::RedisModule_GetClusterNodeInfo }?;
    let id = std::ffi::CString::new(my_id).ok()?;
    let mut master = [0u8; raw::REDISMODULE_NODE_ID_LEN as usize];
    let mut flags: std::os::raw::c_int = 0;
    // SAFETY: a NUL-terminated id; the server copies exactly REDISMODULE_NODE_ID_LEN bytes
    // into `master` and skips the null out-pointers (ip, port).
    let rc = unsafe {
        get(
            ctx.ctx,
            id.as_ptr(),
            std::ptr::null_mut(),
            master.as_mut_ptr().cast(),
            std::ptr::null_mut(),
            &mut flags,
        )
    };
    let replica = flags & raw::REDISMODULE_NODE_SLAVE as std::os::raw::c_int != 0;
    (rc == raw::REDISMODULE_OK as std::os::raw::c_int && replica)
        .then(|| String::from_utf8_lossy(&master).into_owned())
}

fn my_cluster_id() -> Option<String> {
    // SAFETY: the API table is filled at load; the server returns its own static id.
    let id = unsafe { redis_module::raw::RedisModule_GetMyClusterID?() };
    if id.is_null() {
        return None;
    }
    // SAFETY: the server's node name: exactly REDISMODULE_NODE_ID_LEN bytes, not
    // NUL-terminated (cluster.h `char name[CLUSTER_NAMELEN]`).
    let id = unsafe {
        std::slice::from_raw_parts(
            id.cast::<u8>(),
            redis_module::raw::REDISMODULE_NODE_ID_LEN as usize,
        )
    };
    Some(String::from_utf8_lossy(id).into_owned())
}

/// CRC16/XMODEM, the checksum Redis Cluster uses for key slots (redis/src/crc16.c).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

pub const CLUSTER_SLOTS: u16 = 16384;

/// The cluster slot of a key, honouring `{hash tags}` exactly as redis/src/cluster.c
/// `keyHashSlot` does: the first `{`, then the first `}` after it, non-empty in between.
pub fn key_hash_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) & (CLUSTER_SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` on a real server.
        assert_eq!(key_hash_slot(b"foo"), 12182);
        assert_eq!(key_hash_slot(b"bar"), 5061);
        assert_eq!(key_hash_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_hash_slot(b"{user1000}.followers"), 3443);
        assert_eq!(key_hash_slot(b"123456789"), 0x31C3 & 16383);
        // Empty tag: the whole key is hashed; an unclosed brace likewise.
        assert_eq!(key_hash_slot(b"foo{}bar"), crc16(b"foo{}bar") & 16383);
        assert_eq!(key_hash_slot(b"foo{bar"), crc16(b"foo{bar") & 16383);
        // Only the first `{...}` counts.
        assert_eq!(key_hash_slot(b"a{x}b{y}"), key_hash_slot(b"x"));
    }
}
