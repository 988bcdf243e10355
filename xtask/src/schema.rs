//! Kafka's message schema language (`common/message/*.json`), parsed into a small model.
//!
//! Only what the codec needs is kept: names, types, version ranges (valid, flexible, nullable,
//! tagged), defaults, docs and entity types (`entityType`: a topic name, group id, broker id, ...
//! becomes its own Rust newtype; the wire format is the underlying primitive's). `mapKey`,
//! `ignorable` and `zeroCopy` do not change the wire format and are dropped.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// An inclusive version range; `hi == i16::MAX` means "and later".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: i16,
    pub hi: i16,
}

impl Range {
    pub const NONE: Range = Range { lo: 1, hi: 0 };

    pub fn parse(s: &str) -> Result<Range> {
        let s = s.trim();
        if s == "none" {
            return Ok(Range::NONE);
        }
        if let Some(lo) = s.strip_suffix('+') {
            return Ok(Range {
                lo: lo.parse()?,
                hi: i16::MAX,
            });
        }
        if let Some((lo, hi)) = s.split_once('-') {
            return Ok(Range {
                lo: lo.parse()?,
                hi: hi.parse()?,
            });
        }
        let v = s.parse().with_context(|| format!("version range {s:?}"))?;
        Ok(Range { lo: v, hi: v })
    }

    pub fn is_empty(self) -> bool {
        self.lo > self.hi
    }

    pub fn intersect(self, o: Range) -> Range {
        Range {
            lo: self.lo.max(o.lo),
            hi: self.hi.min(o.hi),
        }
    }

    pub fn contains_range(self, o: Range) -> bool {
        o.is_empty() || (self.lo <= o.lo && self.hi >= o.hi)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Bool,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    F64,
    Str,
    Bytes,
    Records,
    Uuid,
    Array(Box<Ty>),
    Struct(String),
    /// A primitive marked with an `entityType`; encoded as [`Entity::base`].
    Entity(Entity),
}

/// The entity types of Kafka's schemas, each generated as a newtype in `net/src/entity.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    TopicName,
    GroupId,
    TransactionalId,
    BrokerId,
    ProducerId,
}

impl Entity {
    fn parse(s: &str) -> Result<Entity> {
        Ok(match s {
            "topicName" => Entity::TopicName,
            "groupId" => Entity::GroupId,
            "transactionalId" => Entity::TransactionalId,
            "brokerId" => Entity::BrokerId,
            "producerId" => Entity::ProducerId,
            _ => bail!("unknown entityType {s:?} (add a newtype to net/src/entity.rs)"),
        })
    }

    /// The Rust type's name (in `net/src/entity.rs`).
    pub fn type_name(self) -> &'static str {
        match self {
            Entity::TopicName => "TopicName",
            Entity::GroupId => "GroupId",
            Entity::TransactionalId => "TransactionalId",
            Entity::BrokerId => "BrokerId",
            Entity::ProducerId => "ProducerId",
        }
    }

    /// The primitive the entity is on the wire.
    pub fn base(self) -> Ty {
        match self {
            Entity::TopicName | Entity::GroupId | Entity::TransactionalId => Ty::Str,
            Entity::BrokerId => Ty::I32,
            Entity::ProducerId => Ty::I64,
        }
    }

    /// `ty` with its primitive (or array element) replaced by this entity; fails when the
    /// schema puts the entity on a primitive of another kind.
    fn apply(self, ty: Ty) -> Result<Ty> {
        match ty {
            Ty::Array(inner) => Ok(Ty::Array(Box::new(self.apply(*inner)?))),
            t if t == self.base() => Ok(Ty::Entity(self)),
            t => bail!("entityType {self:?} on a field of type {t:?}"),
        }
    }
}

impl Ty {
    fn parse(s: &str) -> Result<Ty> {
        Ok(match s {
            "bool" => Ty::Bool,
            "int8" => Ty::I8,
            "int16" => Ty::I16,
            "uint16" => Ty::U16,
            "int32" => Ty::I32,
            "uint32" => Ty::U32,
            "int64" => Ty::I64,
            "float64" => Ty::F64,
            "string" => Ty::Str,
            "bytes" => Ty::Bytes,
            "records" => Ty::Records,
            "uuid" => Ty::Uuid,
            _ => {
                if let Some(inner) = s.strip_prefix("[]") {
                    Ty::Array(Box::new(Ty::parse(inner)?))
                } else if s.starts_with(|c: char| c.is_ascii_uppercase()) {
                    Ty::Struct(s.to_string())
                } else {
                    bail!("unknown field type {s:?}")
                }
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub versions: Range,
    pub nullable: Range,
    pub tag: Option<u32>,
    pub default: Option<String>,
    /// Field-level `flexibleVersions` (only RequestHeader.ClientId uses it: "none").
    pub flexible: Option<Range>,
    pub about: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Header,
    /// A metadata-log record (`common/metadata/*.json` of kafka-metadata), keyed by `apiKey`.
    Metadata,
    /// A KRaft control or snapshot record (`common/message/*.json`, type "data").
    Data,
}

/// The "data" schemas that KRaft writes into the metadata log: its control records (leader
/// change, snapshot header and footer, voters, kraft.version). Other "data" schemas are not
/// generated.
pub const KRAFT_DATA: &[&str] = &[
    "LeaderChangeMessage",
    "SnapshotHeaderRecord",
    "SnapshotFooterRecord",
    "VotersRecord",
    "KRaftVersionRecord",
];

#[derive(Debug, Clone)]
pub struct Message {
    pub name: String,
    pub kind: Kind,
    pub api_key: Option<i16>,
    pub valid: Range,
    pub flexible: Range,
    pub fields: Vec<Field>,
    /// Every nested and common struct, each once, in definition order.
    pub structs: Vec<StructDef>,
}

/// Removes `//` comments that are outside JSON strings.
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_fields(v: &Value, structs: &mut Vec<StructDef>) -> Result<Vec<Field>> {
    let Some(arr) = v.get("fields").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for f in arr {
        let name = str_field(f, "name")
            .context("field without name")?
            .to_string();
        let ty_s = str_field(f, "type").context("field without type")?;
        let mut ty = Ty::parse(ty_s).with_context(|| format!("field {name}"))?;
        if let Some(e) = str_field(f, "entityType") {
            ty = Entity::parse(e)
                .and_then(|e| e.apply(ty))
                .with_context(|| format!("field {name}"))?;
        }
        let versions = Range::parse(str_field(f, "versions").context("field without versions")?)?;
        let nullable = match str_field(f, "nullableVersions") {
            Some(s) => Range::parse(s)?,
            None => Range::NONE,
        };
        let tag = f.get("tag").and_then(Value::as_u64).map(|t| t as u32);
        if let Some(tv) = str_field(f, "taggedVersions")
            && Range::parse(tv)? != versions
        {
            bail!("field {name}: taggedVersions differ from versions; not supported");
        }
        let default = f.get("default").map(|d| match d {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let flexible = str_field(f, "flexibleVersions")
            .map(Range::parse)
            .transpose()?;
        let about = str_field(f, "about").unwrap_or("").to_string();
        if f.get("fields").is_some() {
            let sname = match &ty {
                Ty::Struct(s) => s.clone(),
                Ty::Array(inner) => match &**inner {
                    Ty::Struct(s) => s.clone(),
                    _ => bail!("field {name}: fields on a primitive array"),
                },
                _ => bail!("field {name}: fields on a primitive"),
            };
            let sub = parse_fields(f, structs)?;
            add_struct(
                structs,
                StructDef {
                    name: sname,
                    fields: sub,
                },
            )?;
        }
        out.push(Field {
            name,
            ty,
            versions,
            nullable,
            tag,
            default,
            flexible,
            about,
        });
    }
    Ok(out)
}

fn add_struct(structs: &mut Vec<StructDef>, s: StructDef) -> Result<()> {
    if let Some(prev) = structs.iter().find(|p| p.name == s.name) {
        if *prev != s {
            bail!("struct {} defined twice with different fields", s.name);
        }
        return Ok(());
    }
    structs.push(s);
    Ok(())
}

pub fn parse_message(src: &str) -> Result<Message> {
    let v: Value = serde_json::from_str(&strip_comments(src))?;
    let name = str_field(&v, "name").context("no name")?.to_string();
    let kind = match str_field(&v, "type") {
        Some("request") => Kind::Request,
        Some("response") => Kind::Response,
        Some("header") => Kind::Header,
        Some("metadata") => Kind::Metadata,
        Some("data") => Kind::Data,
        other => bail!("{name}: message type {other:?} not generated"),
    };
    let api_key = v.get("apiKey").and_then(Value::as_i64).map(|k| k as i16);
    let valid = Range::parse(str_field(&v, "validVersions").context("no validVersions")?)?;
    let flexible = Range::parse(str_field(&v, "flexibleVersions").unwrap_or("none"))?;
    let mut structs = Vec::new();
    let fields = parse_fields(&v, &mut structs).with_context(|| name.clone())?;
    if let Some(common) = v.get("commonStructs").and_then(Value::as_array) {
        for c in common {
            let cname = str_field(c, "name")
                .context("common struct without name")?
                .to_string();
            let cf = parse_fields(c, &mut structs)?;
            add_struct(
                &mut structs,
                StructDef {
                    name: cname,
                    fields: cf,
                },
            )?;
        }
    }
    Ok(Message {
        name,
        kind,
        api_key,
        valid,
        flexible,
        fields,
        structs,
    })
}

/// Only request, response and header schemas are generated.
pub fn is_wanted(src: &str) -> Result<bool> {
    let v: Value = serde_json::from_str(&strip_comments(src))?;
    let wanted = match str_field(&v, "type") {
        Some("request" | "response" | "header" | "metadata") => true,
        Some("data") => str_field(&v, "name").is_some_and(|n| KRAFT_DATA.contains(&n)),
        _ => false,
    };
    let removed = str_field(&v, "validVersions") == Some("none");
    Ok(wanted && !removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `//` starts a comment only outside strings; URLs inside "about" texts survive.
    #[test]
    fn comments_are_stripped_outside_strings() {
        let src = "{ // note\n \"about\": \"see http://x\" // tail\n}";
        assert_eq!(strip_comments(src), "{ \n \"about\": \"see http://x\" \n}");
    }

    /// Version ranges in every form the schemas use.
    #[test]
    fn ranges() {
        assert_eq!(
            Range::parse("3+").unwrap(),
            Range {
                lo: 3,
                hi: i16::MAX
            }
        );
        assert_eq!(Range::parse("0-12").unwrap(), Range { lo: 0, hi: 12 });
        assert_eq!(Range::parse("5").unwrap(), Range { lo: 5, hi: 5 });
        assert!(Range::parse("none").unwrap().is_empty());
    }
}
