//! Record names as file names.
//!
//! Names that are already safe (Kubernetes-style names, CIDRs written the Calico way as
//! `192-168-0-0-26`) are kept as they are, so an operator can find a record with `ls`. Any other
//! byte is percent-encoded, which keeps the mapping one-to-one: two names never share a file.

use super::StoreError;

/// Longest escaped name: file systems allow 255 bytes, and we add a `.` prefix and `.json.tmp`.
const MAX_FILE_NAME: usize = 240;

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// The file stem for a record name.
pub fn escape(name: &str) -> Result<String, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        // A leading dot would make the file hidden, which is how temporary files are told apart.
        if is_plain(b) && !(i == 0 && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_FILE_NAME {
        return Err(invalid("too long"));
    }
    Ok(out)
}

/// The record name a file stem stands for, or `None` if no name escapes to it.
pub fn unescape(stem: &str) -> Option<String> {
    let mut out = Vec::with_capacity(stem.len());
    let mut bytes = stem.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    let name = String::from_utf8(out).ok()?;
    // Only the one spelling `escape` gives counts, so two files never claim one name.
    (escape(&name).ok()? == stem).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_inverts_escape() {
        for name in ["node-1", "192-168-0-0-26", "a b/c", ".hidden", "ü"] {
            assert_eq!(unescape(&escape(name).unwrap()).as_deref(), Some(name));
        }
        assert_eq!(unescape("%2"), None);
        assert_eq!(unescape("%61"), None, "'a' is spelt plainly, never %61");
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(escape("node-1.example").unwrap(), "node-1.example");
        assert_eq!(escape("192-168-0-0-26").unwrap(), "192-168-0-0-26");
    }

    #[test]
    fn unsafe_bytes_are_encoded_one_to_one() {
        assert_eq!(escape("a/b").unwrap(), "a%2Fb");
        assert_eq!(escape("..").unwrap(), "%2E.");
        assert_eq!(escape("a%2Fb").unwrap(), "a%252Fb");
        assert_ne!(escape("a/b").unwrap(), escape("a-b").unwrap());
        assert!(escape("").is_err());
        assert!(escape(&"x".repeat(300)).is_err());
    }
}
