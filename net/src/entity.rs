//! Entity types: the fields Kafka's schemas mark with an `entityType` (topic names, group ids,
//! transactional ids, broker ids, producer ids) get their own types, so a topic name cannot be
//! passed where a group id is expected. On the wire each is its primitive, unchanged.
//!
//! The string entities wrap [`StrBytes`] (a decoded one is still a view into the frame, no copy)
//! and deref to `str`; they hash, compare and order like `str` and implement `Borrow<str>`, so a
//! map keyed by them can be searched with a `&str` and vice versa. The integer entities wrap their
//! integer (`.0`, [`BrokerId::get`], or deref) and compare with plain integers.
//!
//! Build them with `.into()` from `&str`, `String`, `StrBytes` or the integer.

use crate::codec::StrBytes;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

macro_rules! string_entity {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default)]
        pub struct $name(pub StrBytes);

        impl $name {
            /// A value with static lifetime, no allocation.
            pub const fn from_static(s: &'static str) -> $name {
                $name(StrBytes::from_static(s))
            }

            /// The string.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The underlying string (sharing the frame's buffer when decoded).
            pub fn into_inner(self) -> StrBytes {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl From<StrBytes> for $name {
            fn from(s: StrBytes) -> $name {
                $name(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name(StrBytes::from(s))
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> $name {
                $name(StrBytes::from(s.as_str()))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(StrBytes::from(s))
            }
        }

        impl From<$name> for StrBytes {
            fn from(s: $name) -> StrBytes {
                s.0
            }
        }

        impl From<$name> for String {
            fn from(s: $name) -> String {
                s.as_str().to_owned()
            }
        }

        impl From<&$name> for String {
            fn from(s: &$name) -> String {
                s.as_str().to_owned()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &$name) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &$name) -> Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        /// Hashes like `str`, as `Borrow<str>` requires.
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self.as_str(), f)
            }
        }
    };
}

macro_rules! int_entity {
    ($(#[$doc:meta])* $name:ident($int:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $int);

        impl $name {
            /// The integer.
            pub const fn get(self) -> $int {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = $int;
            fn deref(&self) -> &$int {
                &self.0
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> $name {
                $name(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> $int {
                v.0
            }
        }

        impl PartialEq<$int> for $name {
            fn eq(&self, other: &$int) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for $int {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialOrd<$int> for $name {
            fn partial_cmp(&self, other: &$int) -> Option<Ordering> {
                self.0.partial_cmp(other)
            }
        }

        impl PartialOrd<$name> for $int {
            fn partial_cmp(&self, other: &$name) -> Option<Ordering> {
                self.partial_cmp(&other.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

string_entity! {
    /// A topic name (`entityType: topicName`).
    TopicName
}

string_entity! {
    /// A consumer, share or streams group id (`entityType: groupId`).
    GroupId
}

string_entity! {
    /// A transactional producer's id (`entityType: transactionalId`).
    TransactionalId
}

int_entity! {
    /// A broker (node) id (`entityType: brokerId`); -1 is "none" in most fields.
    BrokerId(i32)
}

int_entity! {
    /// A producer id (`entityType: producerId`); -1 is "none".
    ProducerId(i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    /// Maps keyed by entities are searched with `&str`, and maps keyed by `String` with entities.
    #[test]
    fn lookups_by_str() {
        let mut h: HashMap<TopicName, u32> = HashMap::new();
        h.insert("orders".into(), 1);
        assert_eq!(h.get("orders"), Some(&1));
        let mut b: BTreeMap<String, u32> = BTreeMap::new();
        b.insert("orders".into(), 2);
        let t = TopicName::from_static("orders");
        assert_eq!(b.get(t.as_str()), Some(&2));
        assert_eq!(b.get(&*t), Some(&2));
        // Both directions of the comparison with `&str`, and with `String`.
        assert!(t == "orders");
        assert!("orders" == t);
        let owned = String::from("orders");
        assert!(t == owned);
        assert_eq!(t.to_string(), "orders");
        assert_eq!(format!("{t:?}"), "\"orders\"");
    }

    /// Integer entities convert both ways and compare with plain integers.
    #[test]
    fn integers() {
        let b: BrokerId = 3.into();
        assert_eq!(b, 3);
        assert!(b > 2 && b.get() == 3 && *b == 3 && i32::from(b) == 3);
        assert_eq!(format!("{b} {b:?}"), "3 3");
        let p = ProducerId::from(-1);
        assert_eq!(p, -1i64);
        assert_eq!(ProducerId::default(), 0);
    }
}
