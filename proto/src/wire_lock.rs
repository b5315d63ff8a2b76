//! A lock file for the `kinlink.v1` wire format.
//!
//! The lock lists every field (message, number, name, type, label) and enum value that has
//! ever been published. [`check`] compares the current descriptors against it: a published
//! field number must keep its type and label, or be `reserved` once the field is gone. Names
//! may change (the binary wire format does not carry them). New fields are always allowed,
//! but the lock must then be refreshed so the next change is checked against them too.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// Why the lock could not be checked or a change breaks the wire format.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the compiled descriptor set does not decode: {0}")]
    Descriptor(#[from] prost::DecodeError),
    #[error("wire.lock line {line}: {reason}")]
    Lock { line: usize, reason: String },
}

/// One published item of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    /// message, number, name, type, label, type name
    Field {
        message: String,
        number: i32,
        name: String,
        shape: String,
    },
    /// message or enum, reserved number
    Reserved { owner: String, number: i32 },
    /// enum, number, name
    EnumValue {
        owner: String,
        number: i32,
        name: String,
    },
}

impl Entry {
    fn render(&self) -> String {
        match self {
            Entry::Field {
                message,
                number,
                name,
                shape,
            } => {
                format!("field {message} {number} {name} {shape}")
            }
            Entry::Reserved { owner, number } => format!("reserved {owner} {number}"),
            Entry::EnumValue {
                owner,
                number,
                name,
            } => format!("enum {owner} {number} {name}"),
        }
    }

    fn parse(line: &str, line_no: usize) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Lock {
            line: line_no,
            reason: reason.to_owned(),
        };
        let mut parts = line.split_whitespace();
        let kind = parts.next().ok_or_else(|| bad("empty line"))?;
        let owner = parts.next().ok_or_else(|| bad("missing owner"))?.to_owned();
        let number: i32 = parts
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("missing or invalid number"))?;
        match kind {
            "field" => {
                let name = parts
                    .next()
                    .ok_or_else(|| bad("missing field name"))?
                    .to_owned();
                let shape = parts.collect::<Vec<_>>().join(" ");
                if shape.is_empty() {
                    return Err(bad("missing field type"));
                }
                Ok(Entry::Field {
                    message: owner,
                    number,
                    name,
                    shape,
                })
            }
            "reserved" => Ok(Entry::Reserved { owner, number }),
            "enum" => {
                let name = parts
                    .next()
                    .ok_or_else(|| bad("missing enum value name"))?
                    .to_owned();
                Ok(Entry::EnumValue {
                    owner,
                    number,
                    name,
                })
            }
            _ => Err(bad("unknown entry kind (expected field, reserved or enum)")),
        }
    }
}

/// The current wire format, indexed for checking.
#[derive(Debug, Default)]
struct Schema {
    entries: BTreeSet<Entry>,
    fields: BTreeMap<(String, i32), String>,
    reserved: BTreeSet<(String, i32)>,
    enum_values: BTreeSet<(String, i32)>,
    owners: BTreeSet<String>,
}

impl Schema {
    fn from_descriptor_set(bytes: &[u8]) -> Result<Self, Error> {
        let set = FileDescriptorSet::decode(bytes)?;
        let mut schema = Schema::default();
        for file in set.file {
            let package = file.package.unwrap_or_default();
            // Imported well-known types are not ours to lock.
            if !package.starts_with("kinlink.") {
                continue;
            }
            for message in &file.message_type {
                schema.add_message(&package, message);
            }
            for enumeration in &file.enum_type {
                schema.add_enum(&package, enumeration);
            }
        }
        Ok(schema)
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for field in &message.field {
            let shape = format!(
                "{:?} {:?} {}",
                field.r#type(),
                field.label(),
                field.type_name.as_deref().unwrap_or("-")
            );
            self.fields
                .insert((name.clone(), field.number()), shape.clone());
            self.entries.insert(Entry::Field {
                message: name.clone(),
                number: field.number(),
                name: field.name().to_owned(),
                shape,
            });
        }
        for range in &message.reserved_range {
            // Descriptor ranges are end-exclusive.
            for number in range.start()..range.end() {
                self.add_reserved(&name, number);
            }
        }
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for enumeration in &message.enum_type {
            self.add_enum(&name, enumeration);
        }
        self.owners.insert(name);
    }

    fn add_enum(&mut self, scope: &str, enumeration: &EnumDescriptorProto) {
        let name = format!("{scope}.{}", enumeration.name());
        for value in &enumeration.value {
            self.enum_values.insert((name.clone(), value.number()));
            self.entries.insert(Entry::EnumValue {
                owner: name.clone(),
                number: value.number(),
                name: value.name().to_owned(),
            });
        }
        for range in &enumeration.reserved_range {
            // Enum reserved ranges are end-inclusive.
            for number in range.start()..=range.end() {
                self.add_reserved(&name, number);
            }
        }
        self.owners.insert(name);
    }

    fn add_reserved(&mut self, owner: &str, number: i32) {
        // Guard against `reserved 1000 to max` expanding into millions of lines.
        if number < 100_000 {
            self.reserved.insert((owner.to_owned(), number));
            self.entries.insert(Entry::Reserved {
                owner: owner.to_owned(),
                number,
            });
        }
    }
}

/// Renders the current wire format as lock-file text.
pub fn render(descriptor_set: &[u8]) -> Result<String, Error> {
    let schema = Schema::from_descriptor_set(descriptor_set)?;
    let mut out = String::from(
        "# kinlink.v1 wire lock: every published field number and enum value.\n\
         # Regenerate after an additive change: KINLINK_UPDATE_WIRE_LOCK=1 cargo test -p kinlink-proto\n",
    );
    for entry in &schema.entries {
        out.push_str(&entry.render());
        out.push('\n');
    }
    Ok(out)
}

/// The outcome of comparing the current contracts with the lock.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Changes that break readers or writers of already-published data.
    pub breaking: Vec<String>,
    /// True when the contracts gained entries the lock does not list yet.
    pub lock_is_stale: bool,
}

/// Checks the current descriptors against the lock-file text.
pub fn check(lock: &str, descriptor_set: &[u8]) -> Result<Report, Error> {
    let schema = Schema::from_descriptor_set(descriptor_set)?;
    let mut report = Report::default();
    let mut locked = BTreeSet::new();
    for (index, line) in lock.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = Entry::parse(line, index + 1)?;
        if let Some(problem) = schema.breaks(&entry) {
            report.breaking.push(problem);
        }
        locked.insert(entry);
    }
    report.lock_is_stale = schema.entries.iter().any(|entry| !locked.contains(entry));
    Ok(report)
}

impl Schema {
    fn breaks(&self, entry: &Entry) -> Option<String> {
        match entry {
            Entry::Field {
                message,
                number,
                name,
                shape,
            } => {
                if !self.owners.contains(message) {
                    return Some(format!("message {message} was removed"));
                }
                match self.fields.get(&(message.clone(), *number)) {
                    Some(current) if current == shape => None,
                    Some(current) => Some(format!(
                        "{message} field {number} ({name}) changed from `{shape}` to `{current}`"
                    )),
                    None if self.reserved.contains(&(message.clone(), *number)) => None,
                    None => Some(format!(
                        "{message} field {number} ({name}) was removed or renumbered without \
                         `reserved {number};`"
                    )),
                }
            }
            Entry::Reserved { owner, number } => {
                if self.owners.contains(owner) && !self.reserved.contains(&(owner.clone(), *number))
                {
                    Some(format!("{owner} no longer reserves number {number}"))
                } else {
                    None
                }
            }
            Entry::EnumValue {
                owner,
                number,
                name,
            } => {
                if !self.owners.contains(owner) {
                    return Some(format!("enum {owner} was removed"));
                }
                let key = (owner.clone(), *number);
                if self.enum_values.contains(&key) || self.reserved.contains(&key) {
                    None
                } else {
                    Some(format!(
                        "{owner} value {number} ({name}) was removed without `reserved {number};`"
                    ))
                }
            }
        }
    }
}
