//! Form-encoded parameters (a POST's body, a GET's query string), decoded strictly: invalid
//! UTF-8 is refused rather than replaced, a parameter given twice is refused unless it is a
//! list (`attribute[CODE][]`), and an empty value counts as absent, as the spec says.

use crate::ServerError;

/// Parameters one form may carry: far more than any service's questions.
const MAX_PAIRS: usize = 256;
/// Longest parameter name.
const MAX_NAME: usize = 128;

/// A decoded form: its parameters in order.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

fn decode(raw: &[u8], what: &str) -> Result<String, String> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("{what} is not valid UTF-8"))
}

/// A parameter's name as an error may quote it: short, and only printable ASCII.
fn shown(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect();
    if clean.is_empty() {
        "a parameter".into()
    } else {
        clean
    }
}

impl Form {
    pub fn parse(raw: &[u8]) -> Result<Form, ServerError> {
        let mut pairs = Vec::new();
        let mut problems = Vec::new();
        for part in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_PAIRS {
                return Err(ServerError::BadRequest(format!(
                    "at most {MAX_PAIRS} parameters"
                )));
            }
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            let name = match decode(name, "a parameter's name") {
                Ok(n) => n,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if name.len() > MAX_NAME {
                problems.push(format!("{}…: the name is too long", shown(&name)));
                continue;
            }
            match decode(value, &shown(&name)) {
                Ok(v) => pairs.push((name, v)),
                Err(e) => problems.push(e),
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in &pairs {
            if name.ends_with("[]") {
                continue;
            }
            if seen.contains(&name.as_str()) {
                let e = format!("{}: given more than once", shown(name));
                if !problems.contains(&e) {
                    problems.push(e);
                }
            } else {
                seen.push(name);
            }
        }
        if !problems.is_empty() {
            return Err(ServerError::Invalid(problems));
        }
        Ok(Form { pairs })
    }

    /// A parameter's value, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strictly() {
        let f = Form::parse(b"a=1+2&b=%C3%A9t%C3%A9&c=&attribute[X][]=1&attribute[X][]=2").unwrap();
        assert_eq!(f.get("a"), Some("1 2"));
        assert_eq!(f.get("b"), Some("été"));
        assert_eq!(f.get("c"), None);
        assert_eq!(f.get("d"), None);
        assert_eq!(f.pairs().len(), 5);
        let ServerError::Invalid(p) = Form::parse(b"a=1&a=2&b=%FF").unwrap_err() else {
            panic!("invalid")
        };
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
