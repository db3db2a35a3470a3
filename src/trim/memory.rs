//! What one entry of a stream, list or sorted set costs in memory, counted as `MEMORY USAGE`
//! counts it: the entry's bytes in the encoding the server keeps it in (listpack headers and
//! back-lengths, sds headers, skiplist nodes) and its share of the nodes that hold it, each
//! allocation rounded up to the allocator's size class (jemalloc, the server's default).
//! Pure: the entry's bytes come in, a byte count goes out.
//!
//! Entries of 4 KB and more (streams) or 8 KB and more (lists) sit in a node of their own, so
//! their cost is exact up to the node's fixed header. Smaller entries share nodes; their cost
//! includes an even share of a node's slack, an estimate within a few percent.

/// A stream node's listpack is first allocated at `stream-node-max-bytes` (4096 by default)
/// and a node closes when the next entry would not fit.
const STREAM_NODE_BYTES: u64 = 4096;
/// A list node holds up to 8 KB of listpack (`list-max-listpack-size -2`).
const LIST_NODE_BYTES: u64 = 8192;
/// What `MEMORY USAGE` adds per stream node for the radix tree: the 16-byte id key, and per
/// tree node its header and the child pointers Redis assumes (`sizeof(long) * 30`); a tree
/// of sequential ids has about two tree nodes per listpack (measured: 504 bytes per node).
const STREAM_TREE_PER_NODE: u64 = 16 + 2 * (4 + 8 * 30);
/// `sizeof(quicklistNode)`.
const LIST_NODE_HEADER: u64 = 32;
/// A listpack's header (total bytes, count) and end byte.
const LISTPACK_FRAME: u64 = 6 + 1;
/// A sorted-set member beside its sds string: the dict entry, the skiplist node (its level
/// is random: 1.33 levels on average; 64 bytes covers the common sizes) and the hash
/// table's buckets (8 bytes each, up to two per member).
const ZSET_MEMBER_OVERHEAD: u64 = 24 + 64 + 16;

/// How the server counts allocations: depends on its allocator (`INFO memory`
/// `mem_allocator`) and on how it measures a stream's radix tree (Redis assumes about 504
/// bytes per node; Valkey counts what the tree really allocates, about 80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    pub jemalloc: bool,
    pub stream_tree_per_node: u64,
}

impl Accounting {
    pub const REDIS_JEMALLOC: Accounting = Accounting {
        jemalloc: true,
        stream_tree_per_node: STREAM_TREE_PER_NODE,
    };

    /// From `INFO server` and `INFO memory` text.
    pub fn from_info(info: &str) -> Accounting {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
        };
        Accounting {
            jemalloc: field("mem_allocator:").starts_with("jemalloc")
                || field("mem_allocator:").is_empty(),
            stream_tree_per_node: match field("server_name:") {
                "valkey" => VALKEY_STREAM_TREE_PER_NODE,
                _ => STREAM_TREE_PER_NODE,
            },
        }
    }

    fn allocation(&self, n: u64) -> u64 {
        match self.jemalloc {
            true => allocation_size(n),
            false => libc_allocation_size(n),
        }
    }
}

/// Valkey's measured tree cost per stream node (it counts the tree's own allocations).
const VALKEY_STREAM_TREE_PER_NODE: u64 = 96;

/// What glibc's `malloc_usable_size` reports: 16-byte steps with an 8-byte header below the
/// mmap threshold, whole pages above it.
pub fn libc_allocation_size(n: u64) -> u64 {
    if n >= 128 * 1024 {
        return (n + 16).div_ceil(4096) * 4096 - 16;
    }
    ((n + 8).div_ceil(16) * 16 - 8).max(24)
}

/// The size class jemalloc rounds an allocation of `n` bytes up to: 8, 16, then multiples
/// of 16 up to 128, then four classes per doubling.
pub fn allocation_size(n: u64) -> u64 {
    if n <= 8 {
        return 8;
    }
    if n <= 128 {
        return n.div_ceil(16) * 16;
    }
    let power = 63 - (n - 1).leading_zeros() as u64; // 2^power < n <= 2^(power+1)
    let step = 1u64 << (power - 2);
    n.div_ceil(step) * step
}

/// Whether the server stores `s` in a listpack as an integer (its `lpStringToInt64`: a
/// canonical decimal that fits a signed 64-bit integer).
fn as_integer(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// Bytes of one listpack element holding `s`: encoding header, data, back-length.
pub fn listpack_element(s: &[u8]) -> u64 {
    let encoded = match as_integer(s) {
        Some(n) if (0..=127).contains(&n) => 1,
        Some(n) if (-4096..4096).contains(&n) => 2,
        Some(n) if (-32768..32768).contains(&n) => 3,
        Some(n) if (-8_388_608..8_388_608).contains(&n) => 4,
        Some(n) if i32::try_from(n).is_ok() => 5,
        Some(_) => 9,
        None => {
            let len = s.len() as u64;
            len + match len {
                0..=63 => 1,
                64..=4095 => 2,
                _ => 5,
            }
        }
    };
    encoded + backlen_size(encoded)
}

fn backlen_size(encoded: u64) -> u64 {
    match encoded {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        2_097_152..=268_435_455 => 4,
        _ => 5,
    }
}

/// A stream entry given as its field/value pairs.
pub fn stream_entry(pairs: &[(&[u8], &[u8])], acc: &Accounting) -> u64 {
    let values: u64 = pairs.iter().map(|(_, v)| listpack_element(v)).sum();
    let fields: u64 = pairs.iter().map(|(f, _)| listpack_element(f)).sum();
    // flags, ms and seq differences, the values, the entry's element count (fields are
    // shared with the node's first entry).
    let entry = 2 + 2 + 2 + values + 2;
    // The node's first entry: count, deleted, field count, fields, terminator.
    let master = 2 + 2 + 2 + fields + 2;
    let alone = LISTPACK_FRAME + master + entry;
    match alone >= STREAM_NODE_BYTES {
        true => acc.allocation(alone) + acc.stream_tree_per_node,
        // Shares a preallocated node: its part of the node, the fields when they differ from
        // the node's first entry (counted always: conservative), and a share of the tree.
        false => {
            let bytes = entry + fields + 1;
            bytes + bytes * acc.stream_tree_per_node / STREAM_NODE_BYTES + bytes / 8
        }
    }
}

/// A list element.
pub fn list_element(element: &[u8], acc: &Accounting) -> u64 {
    let bytes = listpack_element(element);
    match bytes + LISTPACK_FRAME >= LIST_NODE_BYTES {
        true => acc.allocation(bytes + LISTPACK_FRAME) + LIST_NODE_HEADER,
        false => bytes + bytes * LIST_NODE_HEADER / LIST_NODE_BYTES + bytes / 16,
    }
}

/// A sorted-set member (its score is in the skiplist node).
pub fn zset_member(member: &[u8], acc: &Accounting) -> u64 {
    let len = member.len() as u64;
    let sds_header = match len {
        0..=255 => 3,
        256..=65_535 => 5,
        _ => 9,
    };
    acc.allocation(sds_header + len + 1) + ZSET_MEMBER_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_to_jemalloc_classes() {
        let cases = [
            (1, 8),
            (9, 16),
            (100, 112),
            (129, 160),
            (4096, 4096),
            (4097, 5120),
            (100_000, 114_688),
            (300_000, 327_680),
        ];
        for (n, want) in cases {
            assert_eq!(allocation_size(n), want, "{n}");
        }
    }

    #[test]
    fn accounting_follows_the_allocator_and_the_server() {
        let valkey = Accounting::from_info("server_name:valkey\r\nmem_allocator:libc\r\n");
        assert!(!valkey.jemalloc);
        assert_eq!(valkey.stream_tree_per_node, VALKEY_STREAM_TREE_PER_NODE);
        let redis =
            Accounting::from_info("redis_version:7.0.15\r\nmem_allocator:jemalloc-5.3.0\r\n");
        assert_eq!(redis, Accounting::REDIS_JEMALLOC);
        assert_eq!(libc_allocation_size(100_018), 100_024);
        assert_eq!(libc_allocation_size(1), 24);
    }

    #[test]
    fn listpack_elements_follow_the_encoding() {
        assert_eq!(listpack_element(b"7"), 2);
        assert_eq!(listpack_element(b"007"), 5, "not canonical: a string");
        assert_eq!(listpack_element(b"1000"), 3);
        assert_eq!(listpack_element(b"abc"), 5);
        assert_eq!(listpack_element(&[b'x'; 100]), 100 + 2 + 1);
        assert_eq!(listpack_element(&[b'x'; 5000]), 5000 + 5 + 2);
    }

    #[test]
    fn big_entries_cost_their_own_node() {
        let value = vec![b'v'; 100_000];
        let acc = Accounting::REDIS_JEMALLOC;
        let cost = stream_entry(&[(b"payload".as_slice(), value.as_slice())], &acc);
        assert_eq!(cost, 114_688 + 504, "measured on Redis 7.0: 115192");
        let cost = list_element(&value, &acc);
        assert_eq!(cost, 114_688 + 32);
        let small = list_element(b"hello", &acc);
        assert!((7..10).contains(&small), "{small}");
        assert_eq!(zset_member(&[b'm'; 1000], &acc), 1024 + 104);
    }
}
