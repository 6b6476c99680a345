//! The `settings!` macro: from one declaration per setting (doc, file key,
//! kind, default, flag, and whether a reload changes it) it writes the file
//! section, its flags, the layering of flags over file, the checked section
//! with one accessor per setting, the printing back as TOML, and the list
//! of start-only settings a reload reports as changed.

/// Whether a setting marked `start` or `reload` is read at start only.
macro_rules! start_only {
    (start) => {
        true
    };
    (reload) => {
        false
    };
}

/// A setting's default, `None` when it has none.
macro_rules! default_of {
    () => {
        None
    };
    ($default:expr) => {
        Some($default)
    };
}

/// The rustdoc sentence saying when a change to a setting takes effect.
macro_rules! when_doc {
    (start) => {
        "\n\nRead at start only: a reload (SIGHUP) keeps the running value and logs that a restart is needed."
    };
    (reload) => {
        "\n\nA reload (SIGHUP) puts a new value in force for what follows: new requests, the next sweep."
    };
}

/// The accessor of one setting, named after its key unless `as` renames it
/// (`idle_timeout_secs as idle_timeout` returns a `Duration`).
macro_rules! accessor {
    ([$(#[$doc:meta])*] $when:ident, $kind:ty, $name:ident) => {
        accessor! { [$(#[$doc])*] $when, $kind, $name, $name }
    };
    ([$(#[$doc:meta])*] $when:ident, $kind:ty, $name:ident, $acc:ident) => {
        $(#[$doc])*
        #[doc = when_doc!($when)]
        pub fn $acc(&self) -> <$kind as $crate::kinds::Kind>::Out<'_> {
            <$kind as $crate::kinds::Kind>::get(&self.$name)
        }
    };
}

/// Declares one config section. See [`crate::config`] for its use.
macro_rules! settings {
    (
        $(#[$file_meta:meta])*
        file $File:ident;
        $(#[$res_meta:meta])*
        checked $Resolved:ident, keys $prefix:literal $(, after $after:path)?;
        {
            $(
                $(#[doc = $doc:literal])*
                $name:ident $(as $acc:ident)? : $kind:ty $(= $default:expr)?, flag $flag:literal $value_name:literal, $when:ident;
            )*
        }
        $(sections { $($sub:ident : $SubFile:ident => $SubResolved:ident),* $(,)? })?
    ) => {
        $(#[$file_meta])*
        ///
        /// Every field is optional: a missing one takes the layer below (the
        /// command line over the file, the file over the built-in default).
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $File {
            $( $(#[doc = $doc])* pub $name: Option<<$kind as $crate::kinds::Kind>::Raw>, )*
            $($( #[doc = concat!("`[", stringify!($sub), "]`.")] #[serde(default)] pub $sub: $SubFile, )*)?
        }

        impl $File {
            /// Layer `over` on top of `self`: every field `over` sets wins.
            pub fn overlay(self, over: $File) -> $File {
                $File {
                    $( $name: over.$name.or(self.$name), )*
                    $($( $sub: self.$sub.overlay(over.$sub), )*)?
                }
            }

            /// Every key of this section (and those below), for the
            /// redaction of parse errors.
            pub(crate) fn known_words(out: &mut Vec<&'static str>) {
                $(
                    out.push(stringify!($name));
                    out.extend_from_slice(<$kind as $crate::kinds::Kind>::WORDS);
                )*
                $($(
                    out.push(stringify!($sub));
                    $SubFile::known_words(out);
                )*)?
            }
        }

        $(#[$res_meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $Resolved {
            $( $name: <$kind as $crate::kinds::Kind>::Value, )*
            $($( $sub: $SubResolved, )*)?
        }

        impl $Resolved {
            $(
                accessor! { [$(#[doc = $doc])*] $when, $kind, $name $(, $acc)? }
            )*
            $($(
                #[doc = concat!("`[", stringify!($sub), "]`.")]
                pub fn $sub(&self) -> &$SubResolved {
                    &self.$sub
                }
            )*)?

            /// Check every setting of the section, noting each problem in
            /// `cx` (a wrong value is replaced by its default).
            fn resolve_section(file: &$File, cx: &mut $crate::kinds::Resolving<'_>) -> $Resolved {
                let checked = $Resolved {
                    $(
                        $name: <$kind as $crate::kinds::Kind>::resolve(
                            concat!($prefix, stringify!($name)),
                            file.$name.clone(),
                            default_of!($($default)?),
                            cx,
                        ),
                    )*
                    $($( $sub: $SubResolved::resolve_section(&file.$sub, cx), )*)?
                };
                $( let checked = $after(checked, file); )?
                checked
            }

            /// The file section that gives these values.
            fn to_file(&self) -> $File {
                $File {
                    $( $name: <$kind as $crate::kinds::Kind>::raw(&self.$name), )*
                    $($( $sub: self.$sub.to_file(), )*)?
                }
            }

            /// The keys of start-only settings whose value differs in
            /// `new`: a reload leaves them as they are.
            pub fn start_only_changes(&self, new: &$Resolved) -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut changed = Vec::new();
                $(
                    if start_only!($when) && self.$name != new.$name {
                        changed.push(concat!($prefix, stringify!($name)));
                    }
                )*
                $($( changed.extend(self.$sub.start_only_changes(&new.$sub)); )*)?
                changed
            }

            /// The keys of every start-only setting.
            pub fn start_only_keys() -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut keys = Vec::new();
                $(
                    if start_only!($when) {
                        keys.push(concat!($prefix, stringify!($name)));
                    }
                )*
                $($( keys.extend($SubResolved::start_only_keys()); )*)?
                keys
            }
        }

        #[cfg(feature = "flags")]
        impl clap::FromArgMatches for $File {
            fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Ok($File {
                    $( $name: $crate::kinds::from_matches::<$kind>(m, $flag), )*
                    $($( $sub: <$SubFile as clap::FromArgMatches>::from_arg_matches(m)?, )*)?
                })
            }

            fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
                let over = <Self as clap::FromArgMatches>::from_arg_matches(m)?;
                *self = std::mem::take(self).overlay(over);
                Ok(())
            }
        }

        #[cfg(feature = "flags")]
        impl clap::Args for $File {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                let cmd = cmd $(
                    .arg($crate::kinds::flag::<$kind>(
                        $flag,
                        $value_name,
                        &[$($doc),*],
                        default_of!($($default)?),
                        start_only!($when),
                    ))
                )*;
                $($( let cmd = <$SubFile as clap::Args>::augment_args(cmd); )*)?
                cmd
            }

            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                <Self as clap::Args>::augment_args(cmd)
            }
        }
    };
}
