//! Errors as plain data: a kind (which `AtrepoError` subclass), a summary, fields and a hint.
//!
//! The core never builds Python exceptions itself. Each failure is a [`CoreError`] that the
//! extension hands to Python as `_core.CoreError(kind, message, fields, hint)`; the pure
//! Python side (`atrepo._accel`) raises the matching `CarError`/`MstError`/`DecodeError`,
//! turning binary CIDs and keys into text exactly as the pure Python path does, so both paths
//! raise the same class with the same message and the same `cid`/`offset` attributes.

/// Which `AtrepoError` subclass a failure becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Car,
    Mst,
    Decode,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Car => "car",
            Kind::Mst => "mst",
            Kind::Decode => "decode",
        }
    }
}

/// One `key=value` of an error; binary values are rendered on the Python side.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Int(i128),
    Text(String),
    /// a binary CID, shown as the CAR module names blocks (its string, else its hex)
    Cid(Vec<u8>),
    /// a binary CID, shown as the MST module names nodes ("?" when empty)
    NodeName(Vec<u8>),
    /// a binary CID, shown as plain base32 (`cid_str`)
    CidText(Vec<u8>),
    /// an MST key, shown as the MST module shows keys (escaped, first 80 bytes)
    Key(Vec<u8>),
    /// a value shown by the data model's bounded preview (`preview(value)`)
    PreviewInt(i128),
    /// a map key shown by the bounded preview, at most 50 characters
    PreviewKey(Vec<u8>),
    /// a float, shown as Python shows it
    Float(f64),
}

/// A failure of the core, in the shape of an `AtrepoError`.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreError {
    pub kind: Kind,
    pub message: &'static str,
    pub fields: Vec<(&'static str, Field)>,
    pub hint: Option<&'static str>,
}

impl CoreError {
    pub fn new(kind: Kind, message: &'static str) -> Self {
        CoreError { kind, message, fields: Vec::new(), hint: None }
    }

    pub fn car(message: &'static str) -> Self {
        Self::new(Kind::Car, message)
    }

    pub fn mst(message: &'static str) -> Self {
        Self::new(Kind::Mst, message)
    }

    pub fn decode(message: &'static str) -> Self {
        Self::new(Kind::Decode, message)
    }

    pub fn with(mut self, name: &'static str, value: Field) -> Self {
        self.fields.push((name, value));
        self
    }

    pub fn int(self, name: &'static str, value: impl Into<i128>) -> Self {
        self.with(name, Field::Int(value.into()))
    }

    pub fn text(self, name: &'static str, value: impl Into<String>) -> Self {
        self.with(name, Field::Text(value.into()))
    }

    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
