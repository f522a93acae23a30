//! Offline validation of a request against its service definition. It reports every problem at
//! once, each against the Open311 parameter a UI would show it next to (`description`,
//! `attribute[CODE]`, `location`, `email`, …).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Draft;
use crate::catalog::{Attribute, Datatype, ServiceDefinition};
use crate::vocab::limits::{too_long, MAX_DESCRIPTION_CHARS, MAX_STRING_CHARS, MAX_TEXT_CHARS};
use crate::vocab::{Problem, ProblemKind};

pub(crate) fn check_description(description: &str) -> Option<Problem> {
    too_long(description, MAX_DESCRIPTION_CHARS).then(|| {
        Problem::new(
            "description",
            ProblemKind::TooLong,
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        )
    })
}

/// The problems with `values` as the value of `attr`; empty when they are fine. An empty list
/// means "not answered", which only `validate` judges (required or not).
pub(crate) fn check_attribute_values(attr: &Attribute, values: &[String]) -> Vec<Problem> {
    let field = Problem::attribute_field(&attr.code);
    let mut problems = Vec::new();
    if !attr.variable {
        problems.push(Problem::new(
            field,
            ProblemKind::NotAnInput,
            "this is information for the reporter, not a question",
        ));
        return problems;
    }
    if attr.datatype != Datatype::MultiValueList && values.len() > 1 {
        problems.push(Problem::new(
            field.clone(),
            ProblemKind::OneValueOnly,
            format!("takes one value, got {}", values.len()),
        ));
    }
    for (i, value) in values.iter().enumerate() {
        let problem = match attr.datatype {
            Datatype::String => too_long(value, MAX_STRING_CHARS)
                .then(|| (ProblemKind::TooLong, format!("at most {MAX_STRING_CHARS} characters")))
                .or_else(|| {
                    value.contains(['\n', '\r']).then(|| {
                        (ProblemKind::Malformed, "one line only; use a text field for more".into())
                    })
                }),
            Datatype::Text => too_long(value, MAX_TEXT_CHARS)
                .then(|| (ProblemKind::TooLong, format!("at most {MAX_TEXT_CHARS} characters"))),
            Datatype::Number => match value.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => None,
                _ => Some((ProblemKind::NotANumber, format!("{:?} is not a number", clip(value)))),
            },
            Datatype::Datetime => OffsetDateTime::parse(value.trim(), &Rfc3339).err().map(|_| {
                (
                    ProblemKind::NotADatetime,
                    format!(
                        "{:?} is not a date and time with a zone (RFC 3339, e.g. 2026-11-23T09:30:00-05:00)",
                        clip(value)
                    ),
                )
            }),
            Datatype::SingleValueList | Datatype::MultiValueList => {
                if !attr.values.iter().any(|v| &v.key == value) {
                    let keys: Vec<&str> = attr.values.iter().map(|v| v.key.as_str()).collect();
                    Some((
                        ProblemKind::NotInList,
                        format!("{:?} is not one of: {}", clip(value), keys.join(", ")),
                    ))
                } else if values[..i].contains(value) {
                    Some((ProblemKind::Malformed, format!("{value:?} is chosen twice")))
                } else {
                    None
                }
            }
        };
        if let Some((kind, message)) = problem {
            problems.push(Problem::new(field.clone(), kind, message));
        }
    }
    problems
}

/// Shortens a bad value quoted back in a message: the message must stay one readable line.
fn clip(value: &str) -> String {
    const MAX: usize = 40;
    match value.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &value[..i]),
        None => value.to_string(),
    }
}

/// Every problem that stops `draft` from being queued. `definition` is `None` when the
/// catalogue no longer offers the draft's service.
pub fn validate(draft: &Draft, definition: Option<&ServiceDefinition>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match definition {
        None => problems.push(Problem::new(
            "service_code",
            ProblemKind::ServiceGone,
            format!(
                "the catalogue no longer offers service {:?}: choose another service",
                draft.service_code
            ),
        )),
        Some(def) => {
            for attr in def.attributes.iter().filter(|a| a.variable) {
                match draft.attributes.get(&attr.code) {
                    Some(values) if !values.is_empty() => {
                        problems.extend(check_attribute_values(attr, values))
                    }
                    _ if attr.required => problems.push(Problem::new(
                        Problem::attribute_field(&attr.code),
                        ProblemKind::Required,
                        format!("required: {}", attr.description),
                    )),
                    _ => {}
                }
            }
            for (code, values) in &draft.attributes {
                match def.attribute(code) {
                    None => problems.push(Problem::new(
                        Problem::attribute_field(code),
                        ProblemKind::UnknownAttribute,
                        format!("service {:?} has no such attribute", draft.service_code),
                    )),
                    Some(a) if !a.variable && !values.is_empty() => {
                        problems.extend(check_attribute_values(a, values))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    problems.extend(check_description(&draft.description));
    match (&draft.location, &draft.address) {
        (Some(location), _) => problems.extend(location.problem()),
        (None, Some(address)) if !address.trim().is_empty() => {}
        _ => problems.push(Problem::new(
            "location",
            ProblemKind::Required,
            "give a location (GPS or a pin on the map) or an address",
        )),
    }
    if let Some(address) = &draft.address {
        if too_long(address, MAX_STRING_CHARS) {
            problems.push(Problem::new(
                "address_string",
                ProblemKind::TooLong,
                format!("at most {MAX_STRING_CHARS} characters"),
            ));
        }
    }
    problems.extend(draft.contact.problems());
    problems
}
