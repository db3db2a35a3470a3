//! The oldest server the module loads on: Redis 7.0. Module configs
//! (`RM_RegisterNumericConfig` and friends), command info (`RM_SetCommandInfo`), key specs and
//! the `NEW` keyspace event all arrived in 7.0, and the module uses each at load. On an older
//! server it refuses to load with one log line saying so, before it calls any of them.

use redis_module::raw;

/// The oldest server version the module loads on, as (major, minor).
pub const MIN_SERVER_VERSION: (u32, u32) = (7, 0);

/// A server version as `RM_GetServerVersion` encodes it: `0x00MMmmpp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    pub fn from_encoded(encoded: i32) -> Self {
        let encoded = encoded as u32;
        ServerVersion {
            major: (encoded >> 16) & 0xff,
            minor: (encoded >> 8) & 0xff,
            patch: encoded & 0xff,
        }
    }

    pub fn is_supported(self) -> bool {
        (self.major, self.minor) >= MIN_SERVER_VERSION
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a server of this version (None: one too old to say, before 6.0.9) cannot run the
/// module, or Ok.
pub fn check_version(version: Option<ServerVersion>) -> Result<(), String> {
    let (major, minor) = MIN_SERVER_VERSION;
    match version {
        Some(v) if v.is_supported() => Ok(()),
        Some(v) => Err(format!(
            "the server is version {v}; the module needs Redis {major}.{minor} or newer (module configs and command info arrived in {major}.{minor})"
        )),
        None => Err(format!(
            "the server is older than 6.0.9 (it cannot tell its version); the module needs Redis {major}.{minor} or newer"
        )),
    }
}

/// Called first at load, before any 7.0 API: Err (the module must not load) on an older
/// server, or on one that reports a new enough version but lacks an API the load needs.
pub fn check() -> Result<(), String> {
    // SAFETY: reading the API table, filled once by the module's init.
    let version = unsafe { raw::RedisModule_GetServerVersion }
        .map(|get| ServerVersion::from_encoded(unsafe { get() }));
    check_version(version)?;
    let (major, minor) = MIN_SERVER_VERSION;
    // SAFETY: as above (each entry is copied out of the table).
    let required = [
        (
            "RedisModule_SetCommandInfo",
            unsafe { raw::RedisModule_SetCommandInfo }.is_some(),
        ),
        (
            "RedisModule_RegisterNumericConfig",
            unsafe { raw::RedisModule_RegisterNumericConfig }.is_some(),
        ),
        (
            "RedisModule_RegisterStringConfig",
            unsafe { raw::RedisModule_RegisterStringConfig }.is_some(),
        ),
        (
            "RedisModule_RegisterBoolConfig",
            unsafe { raw::RedisModule_RegisterBoolConfig }.is_some(),
        ),
        (
            "RedisModule_LoadConfigs",
            unsafe { raw::RedisModule_LoadConfigs }.is_some(),
        ),
    ];
    match required.iter().find(|(_, present)| !present) {
        Some((name, _)) => Err(format!(
            "the server has no {name} (a Redis {major}.{minor} module API); the module needs Redis {major}.{minor} or newer"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> ServerVersion {
        ServerVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn decodes_the_servers_encoding() {
        assert_eq!(ServerVersion::from_encoded(0x00_07_00_0f), v(7, 0, 15));
        assert_eq!(ServerVersion::from_encoded(0x00_08_02_03), v(8, 2, 3));
        assert_eq!(
            ServerVersion::from_encoded(0x00_06_02_0e).to_string(),
            "6.2.14"
        );
    }

    #[test]
    fn loads_on_7_0_and_newer_only() {
        for ok in [
            v(7, 0, 0),
            v(7, 0, 15),
            v(7, 2, 4),
            v(7, 4, 0),
            v(8, 2, 3),
            v(10, 0, 0),
        ] {
            assert_eq!(check_version(Some(ok)), Ok(()), "{ok}");
        }
        for old in [v(6, 2, 14), v(6, 0, 9), v(6, 255, 255), v(5, 0, 0)] {
            let err = check_version(Some(old)).unwrap_err();
            assert!(err.contains(&format!("version {old}")), "{err}");
            assert!(err.contains("needs Redis 7.0 or newer"), "{err}");
        }
    }

    #[test]
    fn a_server_without_a_version_is_too_old() {
        let err = check_version(None).unwrap_err();
        assert!(err.contains("older than 6.0.9"), "{err}");
    }
}
