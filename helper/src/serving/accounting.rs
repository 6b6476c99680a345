//! Who a peer's connections and removals are charged to: its uid, or, for a
//! uid inside a subordinate range of `/etc/subuid`, the range's owner. A
//! tenant in a user namespace can appear as many host uids (8 subordinate
//! uids x 32 connections each once locked tenant B out); all of them count
//! as the one tenant who was granted the range.

use std::fmt;
use std::io::Read;
use std::path::Path;

use vmrm_policy::{IdResolver, IdSpec, Uid};

/// The uid whose caps a connection or removal counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Account(pub u32);

impl Account {
    /// vmrmd's own orphan sweeper: uid -1, which no peer can have.
    pub const SWEEPER: Account = Account(u32::MAX);
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A subuid file larger than this is refused: it is root's, but vmrmd reads
/// it whole.
const MAX_FILE_LEN: u64 = 16 << 20;

/// Subordinate uid ranges and their owners, sorted by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubordinateIds {
    /// `(first, last inclusive, owner uid)`.
    ranges: Vec<(u32, u32, u32)>,
}

/// Why the subuid file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read subordinate uid ranges from {path:?}: {error}")]
pub struct SubuidError {
    path: std::path::PathBuf,
    error: std::io::Error,
}

impl SubordinateIds {
    /// Read `path`; a missing file means no ranges (no user namespaces with
    /// more than one uid can be set up without it).
    pub fn read(path: &Path, ids: &dyn IdResolver) -> Result<SubordinateIds, SubuidError> {
        let err = |error| SubuidError {
            path: path.to_owned(),
            error,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SubordinateIds::default())
            }
            Err(e) => return Err(err(e)),
        };
        let mut text = String::new();
        file.take(MAX_FILE_LEN)
            .read_to_string(&mut text)
            .map_err(err)?;
        Ok(SubordinateIds::parse(&text, ids))
    }

    /// Parse `owner:start:count` lines (owner a name or uid), as
    /// `newuidmap` does; lines it would not use are skipped with a warning.
    pub fn parse(text: &str, ids: &dyn IdResolver) -> SubordinateIds {
        let mut ranges = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split(':');
            let parsed = (|| {
                let owner = fields.next()?;
                let start: u32 = fields.next()?.parse().ok()?;
                let count: u32 = fields.next()?.parse().ok()?;
                if fields.next().is_some() || count == 0 {
                    return None;
                }
                let last = start.checked_add(count - 1)?;
                let spec: IdSpec = owner.parse().ok()?;
                let (uid, _) = ids.user(&spec)?;
                Some((start, last, uid.0))
            })();
            match parsed {
                // A range holding its own owner would charge nothing new.
                Some((first, last, owner)) if !(first..=last).contains(&owner) => {
                    ranges.push((first, last, owner));
                }
                Some(_) => {}
                None => tracing::warn!(line = n + 1, "subuid file: line skipped"),
            }
        }
        ranges.sort_unstable();
        SubordinateIds { ranges }
    }

    /// The account `uid` is charged to.
    pub fn account_of(&self, Uid(uid): Uid) -> Account {
        // The last range starting at or before uid; overlapping ranges are
        // a misconfiguration newuidmap would honour either way, so the
        // first owner found is as good as any.
        let at = self.ranges.partition_point(|r| r.0 <= uid);
        self.ranges[..at]
            .iter()
            .rev()
            .find(|r| uid <= r.1)
            .map_or(Account(uid), |r| Account(r.2))
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrm_policy::{Gid, Uid};

    struct Ids;
    impl IdResolver for Ids {
        fn user(&self, spec: &IdSpec) -> Option<(Uid, Gid)> {
            match spec {
                IdSpec::Id(id) => Some((Uid(*id), Gid(*id))),
                IdSpec::Name(n) if n == "alice" => Some((Uid(1001), Gid(1001))),
                IdSpec::Name(_) => None,
            }
        }
        fn group(&self, _: &IdSpec) -> Option<Gid> {
            None
        }
    }

    #[test]
    fn subordinate_uids_are_charged_to_their_owner() {
        let map = SubordinateIds::parse(
            "# comment\nalice:100000:65536\n1002:165536:65536\nbob:1:2\nbroken\n7:4294967295:2\n",
            &Ids,
        );
        assert_eq!(map.len(), 2);
        assert_eq!(map.account_of(Uid(100_000)), Account(1001));
        assert_eq!(map.account_of(Uid(165_535)), Account(1001));
        assert_eq!(map.account_of(Uid(165_536)), Account(1002));
        assert_eq!(map.account_of(Uid(231_071)), Account(1002));
        assert_eq!(map.account_of(Uid(231_072)), Account(231_072));
        assert_eq!(map.account_of(Uid(1001)), Account(1001));
        assert_eq!(map.account_of(Uid(99_999)), Account(99_999));
    }

    #[test]
    fn a_missing_file_means_no_ranges() {
        let map = SubordinateIds::read(Path::new("/nonexistent/subuid"), &Ids).unwrap();
        assert!(map.is_empty());
    }
}
