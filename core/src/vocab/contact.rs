//! A reporter's contact details: private, sent to the city only, never shown publicly.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::limits::{too_long, MAX_CONTACT_CHARS};
use super::problem::{Problem, ProblemKind};

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

// Contact details must never reach a log line, so Debug shows only which fields are set.
impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Contact")
            .field("first_name", &set(&self.first_name))
            .field("last_name", &set(&self.last_name))
            .field("email", &set(&self.email))
            .field("phone", &set(&self.phone))
            .finish()
    }
}

impl Contact {
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none()
            && self.last_name.is_none()
            && self.email.is_none()
            && self.phone.is_none()
    }

    /// Every problem with these details, each at its Open311 field.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email", &self.email),
            ("phone", &self.phone),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| too_long(v, MAX_CONTACT_CHARS))
            {
                problems.push(Problem::new(
                    field,
                    ProblemKind::TooLong,
                    format!("at most {MAX_CONTACT_CHARS} characters"),
                ));
            }
        }
        if let Some(email) = &self.email {
            let ok = email.split_once('@').is_some_and(|(user, domain)| {
                !user.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.contains(char::is_whitespace)
            });
            if !ok {
                problems.push(Problem::new(
                    "email",
                    ProblemKind::Malformed,
                    "not an email address (name@example.org)",
                ));
            }
        }
        if let Some(phone) = &self.phone {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let allowed = phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
            if !allowed || !(7..=15).contains(&digits) {
                problems.push(Problem::new(
                    "phone",
                    ProblemKind::Malformed,
                    "not a phone number (7 to 15 digits)",
                ));
            }
        }
        problems
    }
}
