//! Record JSON straight from the bytes, for records in the plain canonical shape.
//!
//! Nearly every record is a canonical DAG-CBOR map of text keys in order, holding text,
//! bytes, links, 64-bit integers, booleans, null, arrays and maps. For those, [`write`]
//! produces the JSON text in one pass without building a value tree. Anything else (another
//! tag, a float, a key that is not text or out of canonical order, a truncated or nested too
//! deep item, invalid UTF-8, ...) makes it give up, leaving `out` as it was, and the general
//! decoder (`record::record_json`) takes the block, with its exact acceptance rules and
//! errors. The JSON is the same either way: the same helpers write it, and what is accepted
//! here is exactly what the general path turns into JSON without a problem.

use crate::cbor::MAX_DEPTH;
use crate::text::{push_base64, push_cid_str, push_json_str};

/// Append the JSON of record `data` to `out` if it has the plain shape; false otherwise.
pub fn write(data: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if data.first().is_none_or(|b| b >> 5 != 5) {
        return false; // the top level must be a map
    }
    let mut reader = Reader { data, pos: 0 };
    let done = reader.item(out, 0).is_some();
    if !done {
        out.truncate(start);
    }
    done
}

/// (major type, argument) of the CBOR head of definite length at `*pos`, which moves past it;
/// None when the data ends or the head is indefinite or reserved.
pub(crate) fn read_head(data: &[u8], pos: &mut usize) -> Option<(u8, u64)> {
    let byte = *data.get(*pos)?;
    *pos += 1;
    let width = match byte & 31 {
        n @ 0..=23 => return Some((byte >> 5, u64::from(n))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let bytes = data.get(*pos..*pos + width)?;
    *pos += width;
    Some((byte >> 5, bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn head(&mut self) -> Option<(u8, u64)> {
        read_head(self.data, &mut self.pos)
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let left = self.data.len() - self.pos;
        if n > left as u64 {
            return None;
        }
        let start = self.pos;
        self.pos += n as usize;
        Some(&self.data[start..self.pos])
    }

    fn item(&mut self, out: &mut Vec<u8>, level: usize) -> Option<()> {
        if level > MAX_DEPTH {
            return None;
        }
        let (major, arg) = self.head()?;
        match major {
            0 if arg <= i64::MAX as u64 => push_int(out, i128::from(arg)),
            1 if arg <= i64::MAX as u64 => push_int(out, -1 - i128::from(arg)),
            2 => {
                let bytes = self.take(arg)?;
                out.extend_from_slice(b"{\"$bytes\":\"");
                push_base64(out, bytes);
                out.extend_from_slice(b"\"}");
            }
            3 => push_json_str(out, std::str::from_utf8(self.take(arg)?).ok()?),
            4 => {
                if arg > (self.data.len() - self.pos) as u64 {
                    return None;
                }
                out.push(b'[');
                for i in 0..arg {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.item(out, level + 1)?;
                }
                out.push(b']');
            }
            5 => self.map(out, arg, level)?,
            6 if arg == 42 => {
                if level + 1 > MAX_DEPTH {
                    return None;
                }
                let (2, len) = self.head()? else { return None };
                let link = self.take(len)?;
                if link.len() < 2 || link[0] != 0 {
                    return None;
                }
                out.extend_from_slice(b"{\"$link\":\"");
                push_cid_str(out, &link[1..]);
                out.extend_from_slice(b"\"}");
            }
            7 if arg == 20 => out.extend_from_slice(b"false"),
            7 if arg == 21 => out.extend_from_slice(b"true"),
            7 if arg == 22 => out.extend_from_slice(b"null"),
            _ => return None,
        }
        Some(())
    }

    fn map(&mut self, out: &mut Vec<u8>, pairs: u64, level: usize) -> Option<()> {
        if pairs > (self.data.len() - self.pos) as u64 / 2 || (pairs > 0 && level + 1 > MAX_DEPTH) {
            return None;
        }
        out.push(b'{');
        let mut previous: Option<&[u8]> = None;
        for i in 0..pairs {
            let (3, len) = self.head()? else { return None };
            let key = self.take(len)?;
            // canonical order (shorter first, then bytewise) also rules out duplicates
            if previous.is_some_and(|p| (p.len(), p) >= (key.len(), key)) {
                return None;
            }
            previous = Some(key);
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, std::str::from_utf8(key).ok()?);
            out.push(b':');
            self.item(out, level + 1)?;
        }
        out.push(b'}');
        Some(())
    }
}

/// A signed 64-bit integer in decimal.
pub fn push_int(out: &mut Vec<u8>, value: i128) {
    let mut digits = [0u8; 40];
    let mut n = value.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    out.extend_from_slice(&digits[at..]);
}
