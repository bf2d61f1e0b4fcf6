//! Walking DER by hand where a typed decoder would have to re-encode: the precertificate's
//! TBS (one extension taken out of the signed bytes) and the parts of an RFC 3161 token whose
//! exact bytes are hashed or signed.

/// The first DER element of `bytes`: its tag byte, its content, and its whole length.
/// Single-byte tags only (all this module meets).
pub fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let tag = *bytes.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *bytes.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let len = bytes
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |len, b| (len << 8) | *b as usize);
        (len, 2 + count)
    };
    let content = bytes.get(header..header.checked_add(len)?)?;
    Some((tag, content, header + len))
}

/// One element: its tag byte, its content, and all its bytes.
pub type Element<'a> = (u8, &'a [u8], &'a [u8]);

/// The elements of a constructed element's content.
pub fn elements(mut content: &[u8]) -> Option<Vec<Element<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, inner, len) = tlv(content)?;
        out.push((tag, inner, &content[..len]));
        content = &content[len..];
    }
    Some(out)
}

/// The content of `bytes` when it is one element of `tag`, nothing after it.
pub fn only(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    let (found, content, len) = tlv(bytes)?;
    (found == tag && len == bytes.len()).then_some(content)
}

/// `content` under `tag`, with its DER length.
pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const GENERALIZED_TIME: u8 = 0x18;
/// `[0]`, constructed.
pub const CONTEXT_0: u8 = 0xa0;
