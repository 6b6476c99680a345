//! The path grammar: only `<prefix>/<name>` may be removed, with `<prefix>`
//! one of the configured prefixes and `<name>` a single component that starts
//! with the configured name prefix and uses only `[A-Za-z0-9._-]`.

use vmrm_proto::DenyReason;

use crate::{Config, Denial};

/// `NAME_MAX` on Linux: longer components cannot exist.
const NAME_MAX: usize = 255;

/// A request path that passed the grammar: the configured prefix it lies
/// directly under, and its last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'p> {
    /// Index into [`Config::prefixes`].
    pub prefix_index: usize,
    /// The single component under the prefix; never empty, `.`, `..`, and
    /// never contains `/` or NUL.
    pub name: &'p [u8],
}

impl Config {
    /// Judge a requested path against the grammar. The check is on bytes and
    /// exact: no normalization happens, so `//tmp/vm-x`, `/tmp/./vm-x`,
    /// `/tmp/vm-x/`, `/tmp/vm-x/..` and `/tmp/vm-x/sub` are all refused
    /// rather than interpreted (a sudoers glob's classic escape routes).
    #[must_use = "the verdict decides whether anything may be removed"]
    pub fn target<'p>(&self, path: &'p [u8]) -> Result<Target<'p>, Denial> {
        for (prefix_index, prefix) in self.prefixes().iter().enumerate() {
            let Some(rest) = path.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let Some(name) = rest.strip_prefix(b"/") else {
                continue;
            };
            check_name(self.name_prefix(), name)
                .map_err(|why| Denial::new(DenyReason::BadName, why))?;
            return Ok(Target { prefix_index, name });
        }
        Err(Denial::new(
            DenyReason::OutsidePrefixes,
            format!(
                "not directly under an allowed prefix ({})",
                self.prefixes()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// Check one component against the name grammar; `Err` says why not.
#[must_use = "the verdict decides whether the name is acceptable"]
pub fn check_name(name_prefix: &str, name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name (trailing slash?)");
    }
    if name.len() > NAME_MAX {
        return Err("name longer than NAME_MAX");
    }
    if name.contains(&b'/') {
        return Err("more than one component below the prefix");
    }
    if !name.starts_with(name_prefix.as_bytes()) || name.len() == name_prefix.len() {
        return Err("name does not start with the configured name prefix");
    }
    // "." and ".." cannot start with a valid name prefix, but say so plainly
    // in case someone configures an odd one.
    if name == b"." || name == b".." {
        return Err("`.` and `..` are never removable");
    }
    if !name.iter().all(|&b| is_name_byte(b)) {
        return Err("name has a character outside [A-Za-z0-9._-]");
    }
    Ok(())
}

pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::config_with_prefixes;
    use proptest::prelude::*;

    fn denied(path: &[u8]) -> DenyReason {
        let config = config_with_prefixes(&["/tmp", "/var/lib/vms"]);
        config.target(path).unwrap_err().reason
    }

    #[test]
    fn accepts_a_workdir_under_each_prefix() {
        let config = config_with_prefixes(&["/tmp", "/var/lib/vms"]);
        let t = config.target(b"/tmp/vm-3f2a9c1e-k2j4x8q0").unwrap();
        assert_eq!((t.prefix_index, t.name), (0, &b"vm-3f2a9c1e-k2j4x8q0"[..]));
        let t = config.target(b"/var/lib/vms/vm-a.b_c").unwrap();
        assert_eq!((t.prefix_index, t.name), (1, &b"vm-a.b_c"[..]));
    }

    #[test]
    fn refuses_the_classic_escapes() {
        use DenyReason::*;
        let cases: &[(&[u8], DenyReason)] = &[
            (b"/", OutsidePrefixes),
            (b"//", OutsidePrefixes),
            (b"", OutsidePrefixes),
            (b"/tmp", OutsidePrefixes),
            (b"/tmp/", BadName),
            (b"//tmp/vm-x", OutsidePrefixes),
            (b"/tmp//vm-x", BadName),
            (b"/tmp/./vm-x", BadName),
            (b"/tmp/vm-x/", BadName),
            (b"/tmp/vm-x/.", BadName),
            (b"/tmp/vm-x/..", BadName),
            (b"/tmp/vm-x/../../etc", BadName),
            (b"/tmp/vm-x/sub", BadName),
            (b"/tmp/..", BadName),
            (b"/tmp/.", BadName),
            (b"/tmp/vm-", BadName),
            (b"/tmp/vm-x\0", BadName),
            (b"/tmp/vm-x y", BadName),
            (b"/tmp/vm-x\n", BadName),
            (b"/tmp/VM-x", BadName),
            (b"/tmp/etc", BadName),
            (b"/tmpx/vm-x", OutsidePrefixes),
            (b"/etc/vm-x", OutsidePrefixes),
            (b"tmp/vm-x", OutsidePrefixes),
            (b"/tmp/vm-x /etc", BadName),
            (b"/tmp/vm-\xff", BadName),
        ];
        for (path, reason) in cases {
            assert_eq!(denied(path), *reason, "{}", path.escape_ascii());
        }
    }

    #[test]
    fn refuses_over_long_names() {
        let mut path = b"/tmp/vm-".to_vec();
        path.extend(std::iter::repeat_n(b'a', 300));
        assert_eq!(denied(&path), DenyReason::BadName);
    }

    proptest! {
        /// The oracle: whatever is accepted is exactly `<prefix>/<name>` with
        /// one valid component, and nothing else is.
        #[test]
        fn accepted_paths_are_exactly_prefix_slash_valid_name(
            path in proptest::collection::vec(
                prop_oneof![Just(b'/'), Just(b'.'), Just(b'v'), Just(b'm'), Just(b'-'),
                            Just(b't'), Just(b'p'), Just(0u8), Just(b'\n'), any::<u8>()],
                0..24)
        ) {
            let config = config_with_prefixes(&["/tmp", "/tmp2"]);
            let mut full = b"/tmp".to_vec();
            full.extend(&path);
            crate::oracle::check_target(&config, &full);
            crate::oracle::check_target(&config, &path);
        }

        #[test]
        fn valid_names_are_accepted(tail in "[A-Za-z0-9._-]{1,40}") {
            let config = config_with_prefixes(&["/tmp"]);
            let path = format!("/tmp/vm-{tail}");
            prop_assert!(config.target(path.as_bytes()).is_ok());
        }
    }
}
