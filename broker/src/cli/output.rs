//! How `sluice consume` prints a record: `text` (the value), `kv` (key, tab, value) or `json`
//! (one object per line). Bytes that are not UTF-8 print as U+FFFD; a null key or value prints
//! empty, or as `null` in JSON.

use std::io::Write;

/// A record as the consumer prints it.
pub(super) struct Printed<'a> {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) timestamp: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) value: Option<&'a [u8]>,
}

/// A JSON string of the bytes (lossy UTF-8), or `null`.
fn json_str(b: Option<&[u8]>) -> String {
    match b {
        None => "null".to_owned(),
        Some(b) => {
            let s = String::from_utf8_lossy(b);
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for ch in s.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

/// Writes one record in `format` (`json`, `kv`, anything else is `text`), with a newline.
pub(super) fn print_record(out: &mut impl Write, format: &str, r: &Printed) -> std::io::Result<()> {
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    match format {
        "json" => writeln!(
            out,
            "{{\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{}}}",
            r.partition,
            r.offset,
            r.timestamp,
            json_str(r.key),
            json_str(r.value)
        ),
        "kv" => writeln!(out, "{}\t{}", text(r.key), text(r.value)),
        _ => writeln!(out, "{}", text(r.value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(format: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> String {
        let mut out = Vec::new();
        let r = Printed {
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            key,
            value,
        };
        print_record(&mut out, format, &r).expect("written");
        String::from_utf8(out).expect("utf-8")
    }

    /// `text` prints the value only; a null value is an empty line; unknown formats are text.
    #[test]
    fn text_format() {
        assert_eq!(printed("text", Some(b"k"), Some(b"v")), "v\n");
        assert_eq!(printed("text", None, None), "\n");
        assert_eq!(printed("yaml", Some(b"k"), Some(b"v")), "v\n");
    }

    /// `kv` prints key, tab, value; nulls print empty.
    #[test]
    fn kv_format() {
        assert_eq!(printed("kv", Some(b"k"), Some(b"v")), "k\tv\n");
        assert_eq!(printed("kv", None, Some(b"v")), "\tv\n");
        assert_eq!(printed("kv", Some(b"k"), None), "k\t\n");
    }

    /// `json` prints every field, nulls as `null`.
    #[test]
    fn json_format() {
        assert_eq!(
            printed("json", Some(b"k"), Some(b"v")),
            "{\"partition\":2,\"offset\":41,\"timestamp\":1700000000000,\"key\":\"k\",\"value\":\"v\"}\n"
        );
        assert_eq!(
            printed("json", None, None),
            "{\"partition\":2,\"offset\":41,\"timestamp\":1700000000000,\"key\":null,\"value\":null}\n"
        );
    }

    /// JSON strings escape quotes, backslashes and control characters; other text, non-ASCII
    /// included, passes through; invalid UTF-8 becomes U+FFFD.
    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str(Some(b"a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(
            json_str(Some(b"line\nnext\ttab\x01")),
            "\"line\\nnext\\u0009tab\\u0001\""
        );
        assert_eq!(json_str(Some("ünïcode €".as_bytes())), "\"ünïcode €\"");
        assert_eq!(json_str(Some(&[0xff, b'a'])), "\"\u{fffd}a\"");
        assert_eq!(json_str(Some(b"")), "\"\"");
        assert_eq!(json_str(None), "null");
    }
}
