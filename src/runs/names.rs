//! Run-set naming: the two keys a base stands for, what a run id may be, and the Redis
//! Cluster rule that both keys must live in the base's own slot.

use crate::cluster::key_hash_slot;
use crate::error::{Error, Result};

pub const INDEX_SUFFIX: &[u8] = b":index";
pub const DATA_SUFFIX: &[u8] = b":data";

/// Long enough for any UUID/ULID/composite id; short enough that a page of ids stays small.
pub const MAX_ID_BYTES: usize = 512;
/// Key names are binary-safe in Redis, but a run-set base is a name people type.
pub const MAX_BASE_BYTES: usize = 1024;

/// `<base>:index` and `<base>:data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSetNames {
    pub base: Vec<u8>,
    pub index: Vec<u8>,
    pub data: Vec<u8>,
}

impl RunSetNames {
    pub fn new(base: &[u8]) -> Result<RunSetNames> {
        if base.is_empty() {
            return Err(Error::arg("the run-set base name must not be empty"));
        }
        if base.len() > MAX_BASE_BYTES {
            return Err(Error::arg(format!(
                "the run-set base name is longer than {MAX_BASE_BYTES} bytes"
            )));
        }
        Ok(RunSetNames {
            base: base.to_vec(),
            index: [base, INDEX_SUFFIX].concat(),
            data: [base, DATA_SUFFIX].concat(),
        })
    }

    /// In cluster mode the command is routed by the base's slot; the keys it really touches
    /// must be served by the same node, which only a hash tag in the base guarantees.
    pub fn check_cluster_slots(&self) -> Result<()> {
        let base_slot = key_hash_slot(&self.base);
        let index_slot = key_hash_slot(&self.index);
        let data_slot = key_hash_slot(&self.data);
        if index_slot == base_slot && data_slot == base_slot {
            return Ok(());
        }
        let base = shown(&self.base);
        Err(Error::arg(format!(
            "run set '{base}' cannot be used in Redis Cluster: its keys '{base}:index' (slot {index_slot}) \
             and '{base}:data' (slot {data_slot}) are not in the slot of '{base}' (slot {base_slot}); \
             put a hash tag in the base name so all three hash alike, e.g. runs:active:{{ws}}:proj"
        )))
    }
}

/// Bytes a client sent, fit for an error message: the server's error replies are ASCII
/// only (the crate truncates other characters to one byte, which breaks clients), so
/// anything else is shown escaped, `\xff` style.
pub use crate::args::shown;

/// Run ids are text: clients show them, put them in URLs and JSON. Control characters and
/// invalid UTF-8 are refused so that every stored id round-trips through any client.
pub fn validate_id(id: &[u8]) -> Result<()> {
    if id.is_empty() {
        return Err(Error::arg("run id must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::arg(format!(
            "run id is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(id)
        .map_err(|_| Error::arg("run id must be UTF-8 text (binary ids are not supported)"))?;
    if text.chars().any(char::is_control) {
        return Err(Error::arg(
            "run id must not contain control characters (binary ids are not supported)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_append_suffixes() {
        let n = RunSetNames::new(b"runs:active:{w}:p").unwrap();
        assert_eq!(n.index, b"runs:active:{w}:p:index");
        assert_eq!(n.data, b"runs:active:{w}:p:data");
        assert!(RunSetNames::new(b"").is_err());
    }

    #[test]
    fn cluster_check_needs_a_hash_tag() {
        assert!(RunSetNames::new(b"runs:active:{ws}:proj")
            .unwrap()
            .check_cluster_slots()
            .is_ok());
        let err = RunSetNames::new(b"runs:active:ws:proj")
            .unwrap()
            .check_cluster_slots()
            .unwrap_err()
            .to_string();
        assert!(err.contains("hash tag"), "{err}");
        assert!(err.starts_with("ERR "), "{err}");
        // An empty tag does not protect: the suffix changes the hashed bytes.
        assert!(RunSetNames::new(b"runs{}x")
            .unwrap()
            .check_cluster_slots()
            .is_err());
    }

    #[test]
    fn ids_are_printable_text() {
        for ok in ["run-1", "01HF8Z", "a:b:c", "ünïcödé", "with space"] {
            assert!(validate_id(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in [&b""[..], b"\xff\xfe", b"a\0b", b"a\nb", b"\x1b[31m"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id(&[b'x'; MAX_ID_BYTES]).is_ok());
        assert!(validate_id(&[b'x'; MAX_ID_BYTES + 1]).is_err());
    }
}
