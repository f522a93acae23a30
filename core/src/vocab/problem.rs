//! What is wrong with an input, said against the Open311 field a UI shows it next to.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Required,
    TooLong,
    NotANumber,
    NotADatetime,
    NotInList,
    OneValueOnly,
    UnknownAttribute,
    NotAnInput,
    OutOfRange,
    ServiceGone,
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The Open311 name of the field: `service_code`, `description`, `attribute[CODE]`,
    /// `location`, `address_string`, `email`, `phone`, `first_name`, `last_name`.
    pub field: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            kind,
            message: message.into(),
        }
    }

    pub fn attribute_field(code: &str) -> String {
        format!("attribute[{code}]")
    }

    pub fn summary(problems: &[Problem]) -> String {
        let parts: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        match parts.len() {
            1 => parts[0].clone(),
            n => format!("{n} problems: {}", parts.join("; ")),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
