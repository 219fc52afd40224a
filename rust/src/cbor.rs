//! DAG-CBOR decoding with exactly the acceptance rules of the Python reference.
//!
//! The reference decodes with cbor2 and these flags: definite lengths only, map keys that are
//! text or byte strings and unique, the tags cbor2 would interpret itself rejected, nesting
//! bounded at [`MAX_DEPTH`]. What it accepts is accepted here, what it rejects is rejected
//! here, and the first failure in reading order is the one reported, so the two paths fail
//! on the same block for the same reason. Like the reference's record and node decoding,
//! it does not re-check canonical form (key order, shortest encodings, trailing bytes): a
//! block's bytes are checked against its CID instead. The reference re-encodes to check
//! canonical form only in `atrepo.cbor.decode`, for commits and CAR headers, which stay
//! on the Python path.
//!
//! Every length read from the input is checked against the bytes that remain before anything
//! is allocated for it, so a hostile length costs nothing.

use std::collections::HashSet;

/// Nesting deeper than any real record: the top-level item is at level 0 and an item at a
/// level above this is an error (cbor2's `max_depth`, as the reference sets it).
pub const MAX_DEPTH: usize = 128;

/// Tags cbor2 decodes itself; the reference overrides them to be errors.
const STRICT_TAGS: [u64; 20] = [
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 100, 256, 258, 260, 261, 1004, 55799,
];

/// Maps up to this size are checked for duplicate keys by comparing pairs; larger ones
/// with a hash set, so a hostile map with many keys stays linear.
const LINEAR_DUP_CHECK: usize = 16;

/// A decoded item; strings and bytes borrow from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Int(i128),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// a tag kept as such (MST nodes are decoded without turning links into objects)
    Tag(u64, Box<Value<'a>>),
    /// a tag-42 link, its binary CID without the 0x00 prefix (record decoding)
    Link(&'a [u8]),
    Bool(bool),
    Null,
    Undefined,
    Simple(u8),
    Float(f64),
}

impl Value<'_> {
    /// The Python type name the reference would report for this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bytes(_) => "bytes",
            Value::Text(_) => "str",
            Value::Array(_) => "list",
            Value::Map(_) | Value::Link(_) => "dict",
            Value::Tag(..) => "CBORTag",
            Value::Bool(_) => "bool",
            Value::Null => "NoneType",
            Value::Undefined => "UndefinedType",
            Value::Simple(_) => "CBORSimpleValue",
            Value::Float(_) => "float",
        }
    }
}

/// Why decoding failed, in the categories the reference distinguishes.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeFailure {
    /// what cbor2 itself rejects (the text is a description, not cbor2's wording)
    Malformed(String),
    /// one of the tags cbor2 would interpret (the reference's strict-tag override)
    StrictTag,
    /// any other tag but 42, when links are decoded (the reference's tag hook)
    Tag(u64),
    /// a tag 42 that is not bytes with a 0x00 prefix, when links are decoded
    MalformedLink,
}

/// How tags are handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tags {
    /// as [`Value::Tag`], whatever the number (MST nodes)
    Keep,
    /// tag 42 as [`Value::Link`], any other tag an error (records, strict decoding)
    Links,
}

/// Decode the first item of `data`; bytes after it are ignored, as in the reference.
pub fn decode(data: &[u8], tags: Tags) -> Result<(Value<'_>, usize), DecodeFailure> {
    let mut decoder = Decoder { data, pos: 0, tags };
    let value = decoder.item(0)?;
    Ok((value, decoder.pos))
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    tags: Tags,
}

fn malformed(text: &str) -> DecodeFailure {
    DecodeFailure::Malformed(text.to_string())
}

const EOF: &str = "premature end of stream";

impl<'a> Decoder<'a> {
    fn byte(&mut self) -> Result<u8, DecodeFailure> {
        let b = *self.data.get(self.pos).ok_or_else(|| malformed(EOF))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeFailure> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(malformed(EOF));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    /// The argument of a head whose additional information is `info` (< 31).
    fn argument(&mut self, info: u8, what: &str) -> Result<u64, DecodeFailure> {
        let width = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => {
                return Err(DecodeFailure::Malformed(format!(
                    "error decoding {what}: unknown unsigned integer subtype 0x{info:x}"
                )))
            }
        };
        let bytes = self.take(width)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn length(&mut self, info: u8, what: &str) -> Result<u64, DecodeFailure> {
        if info == 31 {
            return Err(DecodeFailure::Malformed(format!(
                "error decoding {what}: encountered indefinite length but it has been disabled"
            )));
        }
        self.argument(info, what)
    }

    fn item(&mut self, level: usize) -> Result<Value<'a>, DecodeFailure> {
        if level > MAX_DEPTH {
            return Err(malformed("maximum container nesting depth (128) exceeded"));
        }
        let head = self.byte()?;
        let (major, info) = (head >> 5, head & 31);
        match major {
            0 => Ok(Value::Int(i128::from(self.length(info, "unsigned integer")?))),
            1 => Ok(Value::Int(-1 - i128::from(self.length(info, "negative integer")?))),
            2 => {
                let n = self.length(info, "byte string")?;
                Ok(Value::Bytes(self.take(n)?))
            }
            3 => {
                let n = self.length(info, "text string")?;
                let raw = self.take(n)?;
                let text = std::str::from_utf8(raw)
                    .map_err(|_| malformed("error decoding text string"))?;
                Ok(Value::Text(text))
            }
            4 => self.array(info, level),
            5 => self.map(info, level),
            6 => self.tag(info, level),
            _ => self.special(info),
        }
    }

    fn array(&mut self, info: u8, level: usize) -> Result<Value<'a>, DecodeFailure> {
        let n = self.length(info, "array")?;
        // every item takes at least one byte: a longer count is a truncated input
        let mut items = Vec::with_capacity(n.min((self.data.len() - self.pos) as u64) as usize);
        for _ in 0..n {
            items.push(self.item(level + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, info: u8, level: usize) -> Result<Value<'a>, DecodeFailure> {
        let n = self.length(info, "map")?;
        let room = ((self.data.len() - self.pos) / 2) as u64;
        let mut pairs: Vec<(Value<'a>, Value<'a>)> = Vec::with_capacity(n.min(room) as usize);
        let mut seen: Option<HashSet<(bool, &'a [u8])>> = None;
        for _ in 0..n {
            let key = self.item(level + 1)?;
            let id = match key {
                Value::Text(t) => (true, t.as_bytes()),
                Value::Bytes(b) => (false, b),
                ref other => {
                    return Err(DecodeFailure::Malformed(format!(
                        "error decoding map: map key must be a text string or byte string, not {}",
                        other.type_name()
                    )))
                }
            };
            let value = self.item(level + 1)?;
            // the reference checks for a duplicate when it inserts, after the value
            let duplicate = match seen.as_mut() {
                Some(set) => !set.insert(id),
                None => {
                    let dup = pairs.iter().any(|(k, _)| key_id(k) == id);
                    if pairs.len() + 1 > LINEAR_DUP_CHECK {
                        let mut set: HashSet<(bool, &'a [u8])> =
                            pairs.iter().map(|(k, _)| key_id(k)).collect();
                        set.insert(id);
                        seen = Some(set);
                    }
                    dup
                }
            };
            if duplicate {
                return Err(malformed("error decoding map: Duplicate map key"));
            }
            pairs.push((key, value));
        }
        Ok(Value::Map(pairs))
    }

    fn tag(&mut self, info: u8, level: usize) -> Result<Value<'a>, DecodeFailure> {
        let number = self.length(info, "semantic tag")?;
        let value = self.item(level + 1)?;
        if STRICT_TAGS.contains(&number) {
            return Err(DecodeFailure::StrictTag);
        }
        match self.tags {
            Tags::Keep => Ok(Value::Tag(number, Box::new(value))),
            Tags::Links if number != 42 => Err(DecodeFailure::Tag(number)),
            Tags::Links => match value {
                Value::Bytes(b) if b.len() >= 2 && b[0] == 0 => Ok(Value::Link(&b[1..])),
                _ => Err(DecodeFailure::MalformedLink),
            },
        }
    }

    fn special(&mut self, info: u8) -> Result<Value<'a>, DecodeFailure> {
        match info {
            0..=19 => Ok(Value::Simple(info)),
            20 => Ok(Value::Bool(false)),
            21 => Ok(Value::Bool(true)),
            22 => Ok(Value::Null),
            23 => Ok(Value::Undefined),
            24 => match self.byte()? {
                n if n >= 32 => Ok(Value::Simple(n)),
                _ => Err(malformed(
                    "error decoding special value: invalid two-byte sequence for simple value",
                )),
            },
            25 => {
                let b = self.take(2)?;
                Ok(Value::Float(f16_to_f64(u16::from_be_bytes([b[0], b[1]]))))
            }
            26 => {
                let b = self.take(4)?;
                Ok(Value::Float(f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))))
            }
            27 => {
                let b = self.take(8)?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                Ok(Value::Float(f64::from_be_bytes(raw)))
            }
            31 => Err(malformed("break code encountered where a data item was expected")),
            _ => Err(DecodeFailure::Malformed(format!(
                "error decoding special value: undefined reserved major type 7 subtype 0x{info:x}"
            ))),
        }
    }
}

fn key_id<'a>(key: &Value<'a>) -> (bool, &'a [u8]) {
    match *key {
        Value::Text(t) => (true, t.as_bytes()),
        Value::Bytes(b) => (false, b),
        _ => (false, &[]), // not reached: keys are checked before they are stored
    }
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (bits >> 10) & 0x1f;
    let frac = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(i32::from(exp) - 15),
    }
}
