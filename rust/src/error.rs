//! Errors as plain data: a kind (which `AtrepoError` subclass), a summary, fields and a hint.
//!
//! The core never builds Python exceptions itself. Each failure is a [`CoreError`] that the
//! extension hands to Python as `_core.CoreError(kind, message, fields, hint)`; the pure
//! Python side (`atrepo._accel`) raises the matching `CarError`/`MstError`/`DecodeError`,
//! turning binary CIDs and keys into text exactly as the pure Python path does, so both paths
//! raise the same class with the same message and the same `cid`/`offset` attributes.
//!
//! A panic is a failure too: the guard at every entry point (`guarded` in lib.rs) catches it
//! and hands it on as [`CoreError::internal`], so no panic reaches Python as PyO3's
//! `PanicException` (a `BaseException`, which `except Exception` does not catch).

use std::any::Any;

/// Which `AtrepoError` subclass a failure becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Car,
    Mst,
    Decode,
    /// a panic of the core (a bug), caught at its entry point
    Internal,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Car => "car",
            Kind::Mst => "mst",
            Kind::Decode => "decode",
            Kind::Internal => "internal",
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

    /// The failure of the entry point `call` (as Python names it) that panicked with
    /// `payload`, naming the binary CIDs `cids` it was given (`(field name, CID)`).
    pub fn internal(call: &'static str, cids: &[(&'static str, &[u8])],
                    payload: &(dyn Any + Send)) -> Self {
        let failure = cids.iter().fold(Self::new(Kind::Internal, "internal error in the compiled core"),
                                       |failure, &(name, raw)| failure.with(name, Field::Cid(raw.to_vec())));
        failure
            .text("call", call)
            .text("panic", panic_message(payload))
            .hint("a bug in atrepo: set ATREPO_PURE_PYTHON=1 to use the pure Python path \
                   instead, and report this message with the input that caused it")
    }
}

/// The message a panic carried: `panic!` with a literal gives a `&str`, with arguments a
/// `String`; anything else (`panic_any`) is "unknown".
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown".to_owned()
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(work: impl FnOnce() + std::panic::UnwindSafe) -> Box<dyn Any + Send> {
        std::panic::catch_unwind(work).expect_err("the work panics")
    }

    #[test]
    fn the_message_of_a_literal_panic() {
        assert_eq!(panic_message(&*payload_of(|| panic!("index out of range"))), "index out of range");
    }

    #[test]
    fn the_message_of_a_formatted_panic() {
        let at = 7;
        assert_eq!(panic_message(&*payload_of(move || panic!("row {at} is beyond the walk"))),
                   "row 7 is beyond the walk");
    }

    #[test]
    fn the_message_of_an_index_out_of_bounds() {
        let rows = [1u8, 2, 3];
        let at = std::hint::black_box(5); // not known when compiling, so the panic is at run time
        let message = panic_message(&*payload_of(move || { let _ = rows[at]; }));
        assert_eq!(message, "index out of bounds: the len is 3 but the index is 5");
    }

    #[test]
    fn a_payload_without_a_message_is_unknown() {
        assert_eq!(panic_message(&*payload_of(|| std::panic::panic_any(42u32))), "unknown");
    }

    #[test]
    fn an_internal_failure_names_the_call_the_cids_and_the_panic() {
        let payload = payload_of(|| panic!("boom"));
        let failure = CoreError::internal("Car.walk", &[("cid", b"\x01q")], &*payload);
        assert_eq!(failure.kind.name(), "internal");
        assert_eq!(failure.message, "internal error in the compiled core");
        assert_eq!(failure.fields, vec![("cid", Field::Cid(b"\x01q".to_vec())),
                                        ("call", Field::Text("Car.walk".into())),
                                        ("panic", Field::Text("boom".into()))]);
        assert!(failure.hint.is_some_and(|h| h.contains("ATREPO_PURE_PYTHON=1") && h.contains("report")));
    }
}
