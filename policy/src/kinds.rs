//! Kinds of setting: how a value of each kind is parsed from a flag, checked
//! (every problem noted, none fatal on its own), handed to the helper, and
//! printed back for `check-config`. A setting's declaration in
//! `policy/src/config.rs` names its kind; the kind is all the code it needs.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{ConfigError, IdResolver, IdSpec, DEFAULT_USER};
use crate::grammar::is_name_byte;
use crate::{Gid, Prefix, PrefixError, Uid};

/// One kind of setting.
pub trait Kind: 'static {
    /// As written in the file.
    type Raw: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// One occurrence of the flag (one element, for a repeatable flag).
    type Flag: Clone + Send + Sync + 'static;
    /// As the helper uses it, after checking.
    type Value: Clone + fmt::Debug + PartialEq;
    /// What the accessor returns.
    type Out<'a>;
    /// Words a parse error may quote: they are ours, not the file's.
    const WORDS: &'static [&'static str] = &[];
    /// Whether the flag repeats, each occurrence one element of a list.
    const REPEATABLE: bool = false;

    /// The value of `given` (`None`: not set, so `default`), or a stand-in
    /// after noting in `cx` why `given` is wrong. `key` is for messages.
    fn resolve(
        key: &'static str,
        given: Option<Self::Raw>,
        default: Option<Self::Raw>,
        cx: &mut Resolving<'_>,
    ) -> Self::Value;
    /// What the accessor hands out for a checked value.
    fn get(value: &Self::Value) -> Self::Out<'_>;
    /// The file's spelling of a value (`None`: the key is left out).
    fn raw(value: &Self::Value) -> Option<Self::Raw>;
    /// One occurrence of the flag, or the reason clap reports.
    fn parse(flag: &str) -> Result<Self::Flag, String>;
    /// The flag's occurrences, as the file would say it.
    fn from_flags(values: Vec<Self::Flag>) -> Option<Self::Raw>;
    /// How a default reads in `--help` (`None`: not shown).
    fn show(raw: &Self::Raw) -> Option<String> {
        match toml::Value::try_from(raw).ok()? {
            toml::Value::String(s) => Some(s),
            toml::Value::Array(a) if a.is_empty() => None,
            toml::Value::Array(a) => Some(
                a.into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            other => Some(other.to_string()),
        }
    }
}

/// Where settings are checked: the user database, and every problem found
/// so far, so that an operator fixes them all in one go.
pub struct Resolving<'a> {
    /// Turns user and group names into ids.
    pub ids: &'a dyn IdResolver,
    /// Every problem found so far.
    pub errors: Errors,
}

/// Collects every error of a config instead of stopping at the first.
#[derive(Default)]
pub struct Errors(pub(crate) Vec<ConfigError>);

impl Errors {
    /// Note one more problem.
    pub fn push(&mut self, e: impl Into<ConfigError>) {
        self.0.push(e.into());
    }

    /// `value` when nothing was noted, else the one problem or all of them.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        match self.0.len() {
            0 => Ok(value),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Several(self.0)),
        }
    }
}

/// A flag value through `FromStr`, with the parser's message.
fn from_str<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.parse().map_err(|e: T::Err| e.to_string())
}

fn last<T>(values: Vec<T>) -> Option<T> {
    values.into_iter().last()
}

/// A cap or a count: at least 1.
pub struct Count<T>(PhantomData<T>);

impl<T> Kind for Count<T>
where
    T: Copy
        + PartialEq
        + From<u8>
        + FromStr
        + fmt::Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    T::Err: fmt::Display,
{
    type Raw = T;
    type Flag = T;
    type Value = T;
    type Out<'a> = T;
    fn resolve(key: &'static str, given: Option<T>, default: Option<T>, cx: &mut Resolving) -> T {
        let fallback = default.unwrap_or(T::from(1));
        match given {
            Some(v) if v == T::from(0) => {
                cx.errors.push(ConfigError::ZeroLimit(key));
                fallback
            }
            Some(v) => v,
            None => fallback,
        }
    }
    fn get(value: &T) -> T {
        *value
    }
    fn raw(value: &T) -> Option<T> {
        Some(*value)
    }
    fn parse(flag: &str) -> Result<T, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<T>) -> Option<T> {
        last(values)
    }
}

/// A value taken as written: no check beyond its type.
pub struct Plain<T>(PhantomData<T>);

impl<T> Kind for Plain<T>
where
    T: Copy + PartialEq + FromStr + fmt::Debug + Serialize + DeserializeOwned + Send + Sync,
    T: Default + Words + 'static,
    T::Err: fmt::Display,
{
    type Raw = T;
    type Flag = T;
    type Value = T;
    type Out<'a> = T;
    const WORDS: &'static [&'static str] = T::WORDS;
    fn resolve(_: &'static str, given: Option<T>, default: Option<T>, _: &mut Resolving) -> T {
        given.or(default).unwrap_or_default()
    }
    fn get(value: &T) -> T {
        *value
    }
    fn raw(value: &T) -> Option<T> {
        Some(*value)
    }
    fn parse(flag: &str) -> Result<T, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<T>) -> Option<T> {
        last(values)
    }
}

/// The words a [`Plain`] value is spelled with in the file.
pub trait Words {
    /// The words, as the file writes them.
    const WORDS: &'static [&'static str] = &[];
}
impl Words for bool {}

/// Whole seconds, at least 1.
pub struct Secs;

impl Kind for Secs {
    type Raw = u64;
    type Flag = u64;
    type Value = Duration;
    type Out<'a> = Duration;
    fn resolve(
        key: &'static str,
        given: Option<u64>,
        default: Option<u64>,
        cx: &mut Resolving,
    ) -> Duration {
        Duration::from_secs(Count::<u64>::resolve(key, given, default, cx))
    }
    fn get(value: &Duration) -> Duration {
        *value
    }
    fn raw(value: &Duration) -> Option<u64> {
        Some(value.as_secs())
    }
    fn parse(flag: &str) -> Result<u64, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<u64>) -> Option<u64> {
        last(values)
    }
}

/// Whole seconds, 0 included.
pub struct AnySecs;

impl Kind for AnySecs {
    type Raw = u64;
    type Flag = u64;
    type Value = Duration;
    type Out<'a> = Duration;
    fn resolve(
        _: &'static str,
        given: Option<u64>,
        default: Option<u64>,
        _: &mut Resolving,
    ) -> Duration {
        Duration::from_secs(given.or(default).unwrap_or(0))
    }
    fn get(value: &Duration) -> Duration {
        *value
    }
    fn raw(value: &Duration) -> Option<u64> {
        Some(value.as_secs())
    }
    fn parse(flag: &str) -> Result<u64, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<u64>) -> Option<u64> {
        last(values)
    }
}

/// Whole seconds, 0 meaning never (`None`).
pub struct SecsOrOff;

impl Kind for SecsOrOff {
    type Raw = u64;
    type Flag = u64;
    type Value = Option<Duration>;
    type Out<'a> = Option<Duration>;
    fn resolve(
        _: &'static str,
        given: Option<u64>,
        default: Option<u64>,
        _: &mut Resolving,
    ) -> Option<Duration> {
        given
            .or(default)
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
    }
    fn get(value: &Option<Duration>) -> Option<Duration> {
        *value
    }
    fn raw(value: &Option<Duration>) -> Option<u64> {
        Some(value.map_or(0, |d| d.as_secs()))
    }
    fn parse(flag: &str) -> Result<u64, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<u64>) -> Option<u64> {
        last(values)
    }
}

/// A file path, taken as written.
pub struct FilePath;

impl Kind for FilePath {
    type Raw = PathBuf;
    type Flag = PathBuf;
    type Value = PathBuf;
    type Out<'a> = &'a Path;
    fn resolve(
        _: &'static str,
        given: Option<PathBuf>,
        default: Option<PathBuf>,
        _: &mut Resolving,
    ) -> PathBuf {
        given.or(default).unwrap_or_default()
    }
    fn get(value: &PathBuf) -> &Path {
        value
    }
    fn raw(value: &PathBuf) -> Option<PathBuf> {
        Some(value.clone())
    }
    fn parse(flag: &str) -> Result<PathBuf, String> {
        Ok(flag.into())
    }
    fn from_flags(values: Vec<PathBuf>) -> Option<PathBuf> {
        last(values)
    }
}

/// The listening socket's path: absolute, and short enough for `sun_path`.
pub struct SocketPath;

impl Kind for SocketPath {
    type Raw = PathBuf;
    type Flag = PathBuf;
    type Value = PathBuf;
    type Out<'a> = &'a Path;
    fn resolve(
        key: &'static str,
        given: Option<PathBuf>,
        default: Option<PathBuf>,
        cx: &mut Resolving,
    ) -> PathBuf {
        let socket = FilePath::resolve(key, given, default, cx);
        if !socket.is_absolute() {
            cx.errors
                .push(ConfigError::SocketNotAbsolute(socket.clone()));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if socket.as_os_str().len() > 107 {
            cx.errors.push(ConfigError::SocketTooLong(socket.clone()));
        }
        socket
    }
    fn get(value: &PathBuf) -> &Path {
        value
    }
    fn raw(value: &PathBuf) -> Option<PathBuf> {
        Some(value.clone())
    }
    fn parse(flag: &str) -> Result<PathBuf, String> {
        Ok(flag.into())
    }
    fn from_flags(values: Vec<PathBuf>) -> Option<PathBuf> {
        last(values)
    }
}

/// A permission mode: octal on the command line (`660` or `0o660`), at
/// most `0o777`.
pub struct Mode;

impl Kind for Mode {
    type Raw = u32;
    type Flag = u32;
    type Value = u32;
    type Out<'a> = u32;
    fn resolve(
        _: &'static str,
        given: Option<u32>,
        default: Option<u32>,
        cx: &mut Resolving,
    ) -> u32 {
        let mode = given.or(default).unwrap_or(0);
        if mode > 0o777 {
            cx.errors.push(ConfigError::SocketMode(mode));
        }
        mode
    }
    fn get(value: &u32) -> u32 {
        *value
    }
    fn raw(value: &u32) -> Option<u32> {
        Some(*value)
    }
    fn parse(flag: &str) -> Result<u32, String> {
        let digits = flag.trim_start_matches("0o");
        u32::from_str_radix(digits, 8).map_err(|e| format!("{flag:?} is not an octal mode: {e}"))
    }
    fn from_flags(values: Vec<u32>) -> Option<u32> {
        last(values)
    }
    fn show(raw: &u32) -> Option<String> {
        Some(format!("{raw:o}"))
    }
}

/// The prefix names under a prefix must start with: 1 to 64 name bytes,
/// not starting with `.`.
pub struct NamePrefix;

impl Kind for NamePrefix {
    type Raw = String;
    type Flag = String;
    type Value = String;
    type Out<'a> = &'a str;
    fn resolve(
        _: &'static str,
        given: Option<String>,
        default: Option<String>,
        cx: &mut Resolving,
    ) -> String {
        let name_prefix = given.or(default).unwrap_or_default();
        let ok = (1..=64).contains(&name_prefix.len())
            && !name_prefix.starts_with('.')
            && name_prefix.bytes().all(is_name_byte);
        if !ok {
            cx.errors.push(ConfigError::NamePrefix(name_prefix.clone()));
        }
        name_prefix
    }
    fn get(value: &String) -> &str {
        value
    }
    fn raw(value: &String) -> Option<String> {
        Some(value.clone())
    }
    fn parse(flag: &str) -> Result<String, String> {
        Ok(flag.to_owned())
    }
    fn from_flags(values: Vec<String>) -> Option<String> {
        last(values)
    }
}

/// The prefix directories: valid [`Prefix`]es, at least one, none twice,
/// none inside another. (Whether they exist is checked by
/// [`crate::Config::load`].)
pub struct Prefixes;

impl Kind for Prefixes {
    type Raw = Vec<PathBuf>;
    type Flag = PathBuf;
    type Value = Vec<Prefix>;
    type Out<'a> = &'a [Prefix];
    const REPEATABLE: bool = true;
    fn resolve(
        _: &'static str,
        given: Option<Vec<PathBuf>>,
        default: Option<Vec<PathBuf>>,
        cx: &mut Resolving,
    ) -> Vec<Prefix> {
        let before = cx.errors.0.len();
        let mut prefixes = Vec::new();
        for path in given.or(default).unwrap_or_default() {
            match Prefix::new(path) {
                Ok(p) => prefixes.push(p),
                Err(e) => cx.errors.push(e),
            }
        }
        if prefixes.is_empty() && cx.errors.0.len() == before {
            cx.errors.push(ConfigError::NoPrefixes);
        }
        for (i, a) in prefixes.iter().enumerate() {
            if prefixes[..i].contains(a) {
                cx.errors.push(PrefixError::Duplicate(a.path().to_owned()));
            }
        }
        for outer in &prefixes {
            for inner in &prefixes {
                if outer.contains(inner) {
                    cx.errors.push(PrefixError::Nested {
                        outer: outer.path().to_owned(),
                        inner: inner.path().to_owned(),
                    });
                }
            }
        }
        prefixes
    }
    fn get(value: &Vec<Prefix>) -> &[Prefix] {
        value
    }
    fn raw(value: &Vec<Prefix>) -> Option<Vec<PathBuf>> {
        Some(value.iter().map(|p| p.path().to_owned()).collect())
    }
    fn parse(flag: &str) -> Result<PathBuf, String> {
        Ok(flag.into())
    }
    fn from_flags(values: Vec<PathBuf>) -> Option<Vec<PathBuf>> {
        Some(values)
    }
}

/// A group that must exist; no default (`None`: not set).
pub struct Group;

impl Kind for Group {
    type Raw = IdSpec;
    type Flag = IdSpec;
    type Value = Option<Gid>;
    type Out<'a> = Option<Gid>;
    fn resolve(
        _: &'static str,
        given: Option<IdSpec>,
        default: Option<IdSpec>,
        cx: &mut Resolving,
    ) -> Option<Gid> {
        let spec = given.or(default)?;
        let gid = cx.ids.group(&spec);
        if gid.is_none() {
            cx.errors.push(ConfigError::UnknownGroup(spec));
        }
        gid
    }
    fn get(value: &Option<Gid>) -> Option<Gid> {
        *value
    }
    fn raw(value: &Option<Gid>) -> Option<IdSpec> {
        value.map(|g| IdSpec::Id(g.0))
    }
    fn parse(flag: &str) -> Result<IdSpec, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<IdSpec>) -> Option<IdSpec> {
        last(values)
    }
}

/// A list of user or group ids, each entry checked by `C` (printed back as
/// numbers). The lists differ only in what an entry must be.
pub struct IdList<C>(PhantomData<C>);

/// What one entry of an [`IdList`] must be.
pub trait IdCheck: 'static {
    /// The id an entry names.
    type Id: Copy + fmt::Debug + PartialEq;
    /// The id `spec` names, or the problem to note.
    fn check(spec: IdSpec, ids: &dyn IdResolver) -> Result<Self::Id, ConfigError>;
    /// The number the file spells `id` with.
    fn number(id: Self::Id) -> u32;
}

impl<C: IdCheck> Kind for IdList<C> {
    type Raw = Vec<IdSpec>;
    type Flag = IdSpec;
    type Value = Vec<C::Id>;
    type Out<'a> = &'a [C::Id];
    const REPEATABLE: bool = true;
    fn resolve(
        _: &'static str,
        given: Option<Vec<IdSpec>>,
        default: Option<Vec<IdSpec>>,
        cx: &mut Resolving,
    ) -> Vec<C::Id> {
        let mut checked = Vec::new();
        for spec in given.or(default).unwrap_or_default() {
            match C::check(spec, cx.ids) {
                Ok(id) => checked.push(id),
                Err(e) => cx.errors.push(e),
            }
        }
        checked
    }
    fn get(value: &Vec<C::Id>) -> &[C::Id] {
        value
    }
    fn raw(value: &Vec<C::Id>) -> Option<Vec<IdSpec>> {
        Some(value.iter().map(|&id| IdSpec::Id(C::number(id))).collect())
    }
    fn parse(flag: &str) -> Result<IdSpec, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<IdSpec>) -> Option<Vec<IdSpec>> {
        Some(values)
    }
}

/// Groups that must exist.
pub type Groups = IdList<AnyGroup>;

/// An [`IdList`] entry: any group that exists.
pub struct AnyGroup;

impl IdCheck for AnyGroup {
    type Id = Gid;
    fn check(spec: IdSpec, ids: &dyn IdResolver) -> Result<Gid, ConfigError> {
        ids.group(&spec).ok_or(ConfigError::UnknownGroup(spec))
    }
    fn number(id: Gid) -> u32 {
        id.0
    }
}

/// Users that must exist.
pub type Users = IdList<AnyUser>;

/// An [`IdList`] entry: any user that exists.
pub struct AnyUser;

impl IdCheck for AnyUser {
    type Id = Uid;
    fn check(spec: IdSpec, ids: &dyn IdResolver) -> Result<Uid, ConfigError> {
        match ids.user(&spec) {
            Some((uid, _)) => Ok(uid),
            None => Err(ConfigError::UnknownUser(spec)),
        }
    }
    fn number(id: Uid) -> u32 {
        id.0
    }
}

/// Users that run tenants' VMs.
pub type Runners = IdList<Runner>;

/// An [`IdList`] entry of [`Runners`]: a user that exists, and is neither
/// root nor the overflow uid (root owns the system; 65534 stands for any
/// unmapped id, so naming it would let a removal enter anything unmapped).
pub struct Runner;

impl IdCheck for Runner {
    type Id = Uid;
    fn check(spec: IdSpec, ids: &dyn IdResolver) -> Result<Uid, ConfigError> {
        match ids.user(&spec) {
            None => Err(ConfigError::UnknownRunner(spec)),
            Some((uid, _)) if uid == Uid(0) || uid == crate::OVERFLOW_UID => {
                Err(ConfigError::BadRunner(spec, uid))
            }
            Some((uid, _)) => Ok(uid),
        }
    }
    fn number(id: Uid) -> u32 {
        id.0
    }
}

/// The account vmrmd becomes when started as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    spec: IdSpec,
    ids: Option<(Uid, Gid)>,
}

impl RunAs {
    /// Its uid and primary gid. `None` when the user was not given and the
    /// default account ([`DEFAULT_USER`]) does not exist: fine for an
    /// unprivileged start, refused when started as root.
    pub fn ids(&self) -> Option<(Uid, Gid)> {
        self.ids
    }

    /// The name or number it came from, for messages.
    pub fn spec(&self) -> &IdSpec {
        &self.spec
    }
}

/// The user to become: an explicitly named one must exist (the default
/// account may be missing on a development machine, and is demanded only
/// when vmrmd is started as root), and must not be root.
pub struct User;

impl Kind for User {
    type Raw = IdSpec;
    type Flag = IdSpec;
    type Value = RunAs;
    type Out<'a> = &'a RunAs;
    fn resolve(
        _: &'static str,
        given: Option<IdSpec>,
        default: Option<IdSpec>,
        cx: &mut Resolving,
    ) -> RunAs {
        let explicit = given.is_some();
        let spec = given
            .or(default)
            .unwrap_or_else(|| IdSpec::Name(DEFAULT_USER.to_owned()));
        let mut ids = cx.ids.user(&spec);
        if ids.is_none() && explicit {
            cx.errors.push(ConfigError::UnknownUser(spec.clone()));
        }
        if ids.is_some_and(|(uid, _)| uid == Uid(0)) {
            cx.errors.push(ConfigError::RootUser(spec.clone()));
            ids = None;
        }
        RunAs { spec, ids }
    }
    fn get(value: &RunAs) -> &RunAs {
        value
    }
    fn raw(value: &RunAs) -> Option<IdSpec> {
        Some(value.spec.clone())
    }
    fn parse(flag: &str) -> Result<IdSpec, String> {
        from_str(flag)
    }
    fn from_flags(values: Vec<IdSpec>) -> Option<IdSpec> {
        last(values)
    }
}

/// The flag of a setting of kind `K`: `--<long> <VALUE>`, global (given
/// before or after the subcommand), its help the setting's doc with the
/// default and, for a start-only setting, that a reload keeps the old value.
#[cfg(feature = "flags")]
pub fn flag<K: Kind>(
    long: &'static str,
    value_name: &'static str,
    doc: &[&str],
    default: Option<K::Raw>,
    start_only: bool,
) -> clap::Arg {
    let mut help = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    if let Some(shown) = default.as_ref().and_then(K::show) {
        help.push_str(&format!(" [default: {shown}]"));
    }
    if start_only {
        help.push_str(" [read at start only]");
    }
    clap::Arg::new(long)
        .long(long)
        .value_name(value_name)
        .global(true)
        .help(help)
        .action(if K::REPEATABLE {
            clap::ArgAction::Append
        } else {
            clap::ArgAction::Set
        })
        .value_parser(clap::builder::ValueParser::new(|s: &str| K::parse(s)))
}

/// The flag's values as the file would give them (`None`: not given).
#[cfg(feature = "flags")]
pub fn from_matches<K: Kind>(m: &clap::ArgMatches, long: &'static str) -> Option<K::Raw> {
    let values: Vec<K::Flag> = m
        .get_many::<K::Flag>(long)
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    if values.is_empty() {
        None
    } else {
        K::from_flags(values)
    }
}
