//! The configuration file of `reflector run` (TOML), read as entries: each key (dotted inside a
//! section: `stats.interval`) with its value and the line it is on. What the keys mean is the
//! settings' business (`settings`, `run::args`); an error names the file, the line and the key.

use std::collections::BTreeMap;
use std::path::Path;

use crate::input::UsageError;

/// One key of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key, dotted inside a section (`stats.interval`); each `[[signature]]` table is an
    /// entry of its own, its value an array of that one table.
    pub key: String,
    /// Its value.
    pub value: toml::Value,
    /// The line of its value (of its table, for an array of tables).
    pub line: usize,
    /// For a table: the line of each of its fields.
    pub field_lines: BTreeMap<String, usize>,
}

/// A configuration file, checked as TOML.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The name errors give it.
    pub name: String,
    /// Its keys, in the order they are written.
    pub entries: Vec<Entry>,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, UsageError> {
        let bytes = crate::input::read_config_file(path, "config")?;
        let text = String::from_utf8(bytes)
            .map_err(|_| UsageError(format!("cannot read config {}: not UTF-8 text", path.display())))?;
        ConfigFile::parse(&text, &path.display().to_string())
    }

    /// Parses `text`, naming `file` in errors. Each key of a `[section]` is an entry of its own.
    pub fn parse(text: &str, file: &str) -> Result<ConfigFile, UsageError> {
        let values: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, file, &e))?;
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
            let line = e.span().map_or(String::new(), |s| format!(":{}", line_of(text, s.start)));
            UsageError(format!("{file}{line}: {}", e.message().replace('\n', " ")))
        })?;
        let line = |item: &toml_edit::Item| item.span().map_or(1, |s| line_of(text, s.start));
        let lines_of = |table: &toml_edit::Table| -> BTreeMap<String, usize> {
            table.iter().map(|(k, item)| (k.to_string(), line(item))).collect()
        };
        let mut entries = Vec::new();
        for (key, item) in doc.as_table().iter() {
            let value = values.get(key).cloned().unwrap_or(toml::Value::Boolean(false));
            match (item, value) {
                (toml_edit::Item::Table(table), toml::Value::Table(inner)) => {
                    for (field, field_item) in table.iter() {
                        let value = inner.get(field).cloned().unwrap_or(toml::Value::Boolean(false));
                        entries.push(Entry {
                            key: format!("{key}.{field}"),
                            value,
                            line: line(field_item),
                            field_lines: BTreeMap::new(),
                        });
                    }
                }
                (toml_edit::Item::ArrayOfTables(tables), toml::Value::Array(values)) => {
                    for (table, value) in tables.iter().zip(values) {
                        let field_lines = lines_of(table);
                        let first = field_lines.values().min().copied();
                        let at = table.span().map(|s| line_of(text, s.start));
                        entries.push(Entry {
                            key: key.to_string(),
                            value: toml::Value::Array(vec![value]),
                            line: first.or(at).unwrap_or(1),
                            field_lines,
                        });
                    }
                }
                (item, value) => entries.push(Entry {
                    key: key.to_string(),
                    value,
                    line: line(item),
                    field_lines: BTreeMap::new(),
                }),
            }
        }
        Ok(ConfigFile { name: file.to_string(), entries })
    }

    /// An error about `key` on `line` of this file.
    pub fn error(&self, line: usize, key: &str, message: &str) -> UsageError {
        UsageError(format!("{}:{line}: {key}: {}", self.name, message.replace('\n', " ")))
    }
}

/// A TOML syntax error: the line, and the key when the line has one.
fn syntax_error(text: &str, file: &str, e: &toml::de::Error) -> UsageError {
    let line = e.span().map(|s| line_of(text, s.start));
    let key = line
        .and_then(|l| text.lines().nth(l - 1))
        .and_then(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let message = e.message().replace('\n', " ");
    UsageError(match (line, key) {
        (Some(l), Some(k)) if !message.contains(&format!("`{k}`")) => format!("{file}:{l}: {k}: {message}"),
        (Some(l), _) => format!("{file}:{l}: {message}"),
        (None, _) => format!("{file}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_keys_in_order_with_their_lines() {
        let text = "port = 1\n\n[stats]\ninterval = 0.5\nformat = \"csv\"\n[[signature]]\noffset = 2\nhex = \"ab\"\n[[signature]]\n\ntext = \"x\"\noffset = 3\n";
        let file = ConfigFile::parse(text, "r.toml").unwrap();
        let keys: Vec<(&str, usize)> = file.entries.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            [("port", 1), ("stats.interval", 4), ("stats.format", 5), ("signature", 7), ("signature", 11)]
        );
        assert_eq!(file.entries[4].field_lines["offset"], 12);
        assert_eq!(file.entries[1].value, toml::Value::Float(0.5));
        assert_eq!(file.error(3, "port", "bad\nthing").0, "r.toml:3: port: bad thing");
        let e = ConfigFile::parse("port = \n", "r.toml").unwrap_err().0;
        assert!(e.starts_with("r.toml:1:"), "{e}");
    }
}
