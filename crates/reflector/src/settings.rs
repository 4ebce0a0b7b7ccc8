//! The settings of `run`, each declared once: its field, type, default, range and validation,
//! command-line flag and help (clap), configuration-file key and type, whether SIGHUP applies
//! it live or it needs a restart, and how `/api/v1/config` shows it (serde). The command line,
//! the file (`config`), reload and the API all derive from the declaration (see
//! docs/ARCHITECTURE.md, "How to add a setting").

use std::ffi::OsString;

use serde::Serializer;

/// How a changed setting takes effect when SIGHUP reads the file again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Applied while running.
    Live,
    /// Kept until a restart (said on SIGHUP).
    Restart,
}

/// Why a file value cannot be used: the message, and the field of a table it is about (for
/// the line and the key of the error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The field of the key's table the error is about (`None`: the value as a whole).
    pub field: Option<&'static str>,
    /// Whether the error names the field with the key (`signature.hex`) or the key alone.
    pub name_field: bool,
    /// What is wrong.
    pub message: String,
}

impl From<String> for FileError {
    fn from(message: String) -> FileError {
        FileError { field: None, name_field: false, message }
    }
}

/// A value as a configuration file may hold it, and how it becomes command-line arguments.
pub trait FileValue: serde::de::DeserializeOwned {
    /// The arguments that set the flag `flag` to this value (`None`: a positional argument).
    /// `invert` is for a flag that switches off what the key switches on.
    fn args(&self, flag: Option<&str>, invert: bool) -> Result<Vec<OsString>, FileError>;
}

fn with_flag(flag: Option<&str>, value: String) -> Vec<OsString> {
    match flag {
        Some(f) => vec![format!("--{f}").into(), value.into()],
        None => vec![value.into()],
    }
}

impl FileValue for String {
    fn args(&self, flag: Option<&str>, _: bool) -> Result<Vec<OsString>, FileError> {
        Ok(with_flag(flag, self.clone()))
    }
}

macro_rules! file_number {
    ($($t:ty),*) => {$(
        impl FileValue for $t {
            fn args(&self, flag: Option<&str>, _: bool) -> Result<Vec<OsString>, FileError> {
                Ok(with_flag(flag, self.to_string()))
            }
        }
    )*};
}
file_number!(u16, u32, f64);

impl FileValue for Vec<String> {
    /// A list is the comma-separated value of one flag.
    fn args(&self, flag: Option<&str>, _: bool) -> Result<Vec<OsString>, FileError> {
        Ok(with_flag(flag, self.join(",")))
    }
}

/// A list whose empty value is allowed and means no entries (`allow = []`): the
/// comma-separated value of one flag, or no flag at all.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct List(Vec<String>);

impl FileValue for List {
    fn args(&self, flag: Option<&str>, _: bool) -> Result<Vec<OsString>, FileError> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = self.0.iter().find(|s| s.contains(',')) {
            return Err(format!("'{bad}': one entry per string").into());
        }
        Ok(with_flag(flag, self.0.join(",")))
    }
}

impl FileValue for bool {
    /// A switch: the flag when the key is true (or, inverted, when it is false).
    fn args(&self, flag: Option<&str>, invert: bool) -> Result<Vec<OsString>, FileError> {
        Ok(match flag {
            Some(f) if *self != invert => vec![format!("--{f}").into()],
            _ => Vec::new(),
        })
    }
}

/// Declares a struct of settings: per field its doc comment (the help), its clap attributes,
/// any serde attributes (how the API shows it), its type, and then
/// `=> key KEY: FILE_TYPE, reload CLASS;` (or `=> key None, …` for a command-line-only
/// setting; `key "k": T inverted` for a switch whose key means the opposite of its flag).
///
/// Generates the struct (clap `Args`, serde `Serialize`), `SETTINGS` (each field's id, key and
/// reload class), `file_args` (a file value of a key → arguments for the flag), `set_from`
/// (one field taken from another value) and `restart_changes` (the keys whose new value needs a
/// restart).
macro_rules! settings {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident { $($extra:tt)* }
        $(
            $(#[doc = $doc:literal])*
            #[arg($($arg:tt)*)]
            $(#[serde($($serde:tt)*)])*
            $field:ident: $ty:ty => key $key:tt $(: $file:ty)? $([$invert:ident])?, reload $reload:ident;
        )*
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, clap::Args, serde::Serialize)]
        pub struct $name {
            $($extra)*
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                $(#[serde($($serde)*)])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// Every setting declared here.
            pub const SETTINGS: &[$crate::settings::Setting] = &[$(
                $crate::settings::Setting {
                    id: stringify!($field),
                    key: $crate::settings::settings!(@key $key),
                    inverted: $crate::settings::settings!(@inverted $($invert)?),
                    reload: $crate::settings::Reload::$reload,
                },
            )*];

            /// The arguments that give the setting with file key `key` the file's `value`
            /// (`None`: no setting of this struct has that key). `flag` is the setting's long
            /// flag (`None` for a positional argument).
            pub fn file_args(
                key: &str,
                value: toml::Value,
                flag: Option<&str>,
            ) -> Option<Result<Vec<std::ffi::OsString>, $crate::settings::FileError>> {
                $(
                    $crate::settings::settings!(@file key, value, flag, $key $(, $file)? $(, $invert)?);
                )*
                let _ = (value, flag);
                None
            }

            /// Takes the setting `id` from `other`; false when no setting of this struct has it.
            pub fn set_from(&mut self, other: &Self, id: &str) -> bool {
                match id {
                    $(stringify!($field) => self.$field = other.$field.clone(),)*
                    _ => return false,
                }
                true
            }

            /// The keys of settings that need a restart and differ in `new`.
            pub fn restart_changes(&self, new: &Self) -> Vec<&'static str> {
                let mut changed = Vec::new();
                $(
                    if $crate::settings::Reload::$reload == $crate::settings::Reload::Restart
                        && self.$field != new.$field
                    {
                        changed.push($crate::settings::settings!(@key $key).unwrap_or(stringify!($field)));
                    }
                )*
                changed
            }
        }
    };
    (@inverted) => { false };
    (@inverted inverted) => { true };
    (@key None) => { None };
    (@key $key:literal) => { Some($key) };
    (@file $k:ident, $v:ident, $f:ident, None) => {};
    (@file $k:ident, $v:ident, $f:ident, $key:literal, $file:ty) => {
        if $k == $key {
            return Some(
                $v.try_into::<$file>()
                    .map_err(|e| $crate::settings::FileError::from(e.message().to_string()))
                    .and_then(|v| $crate::settings::FileValue::args(&v, $f, false)),
            );
        }
    };
    (@file $k:ident, $v:ident, $f:ident, $key:literal, $file:ty, inverted) => {
        if $k == $key {
            return Some(
                $v.try_into::<$file>()
                    .map_err(|e| $crate::settings::FileError::from(e.message().to_string()))
                    .and_then(|v| $crate::settings::FileValue::args(&v, $f, true)),
            );
        }
    };
}
pub(crate) use settings;

/// One declared setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The field, which is also its clap id.
    pub id: &'static str,
    /// Its key in the configuration file (dotted for a section: `stats.interval`); `None` for a
    /// command-line-only setting.
    pub key: Option<&'static str>,
    /// The key switches on what the flag switches off (`oui_filter` / `--no-oui-filter`).
    pub inverted: bool,
    /// How SIGHUP applies it.
    pub reload: Reload,
}

/// Serializes an optional value by its `Display` (`null` when absent).
pub fn display_opt<T: std::fmt::Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Serializes a duration as seconds.
pub fn seconds<S: Serializer>(v: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.as_secs_f64())
}

/// Serializes an optional duration as seconds (`null` when absent).
pub fn seconds_opt<S: Serializer>(v: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_f64(v.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Serializes a secret as whether it is set, never its value.
pub fn secret<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_some() { "(set)" } else { "(not set)" })
}

/// A `[[signature]]` table: a user-defined signature, as text or hex, at an offset.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureTable {
    offset: u16,
    text: Option<String>,
    hex: Option<String>,
}

impl FileValue for Vec<SignatureTable> {
    /// One `--custom-sig OFFSET:0xHEX` per table.
    fn args(&self, flag: Option<&str>, _: bool) -> Result<Vec<OsString>, FileError> {
        let mut out = Vec::new();
        for table in self {
            let bytes = match (&table.text, &table.hex) {
                (Some(t), None) => t.as_bytes().to_vec(),
                (None, Some(h)) => crate::input::parse_hex(h).map_err(|message| FileError {
                    field: Some("hex"),
                    name_field: true,
                    message,
                })?,
                _ => {
                    return Err(FileError {
                        field: Some("offset"),
                        name_field: false,
                        message: "give exactly one of text or hex".into(),
                    });
                }
            };
            reflector_core::CustomSignature::new(table.offset, &bytes).map_err(|e| FileError {
                field: Some("offset"),
                name_field: false,
                message: e.to_string(),
            })?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            out.extend(with_flag(flag, format!("{}:0x{hex}", table.offset)));
        }
        Ok(out)
    }
}
