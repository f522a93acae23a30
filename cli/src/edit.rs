//! The flags that edit a draft, shared by `draft new` and `draft set`.

use clap::Args;
use curbside_core::{Draft, DraftEdit, Error, Location, LocationSource, Problem, ProblemKind};

#[derive(Args, Default)]
pub struct EditArgs {
    #[arg(long)]
    description: Option<String>,
    /// CODE=VALUE; repeat for each value of a multivaluelist; CODE= clears the answer.
    #[arg(long = "attr", value_name = "CODE=VALUE")]
    attrs: Vec<String>,
    #[arg(long, allow_hyphen_values = true, requires = "lon")]
    lat: Option<f64>,
    #[arg(long, allow_hyphen_values = true, requires = "lat")]
    lon: Option<f64>,
    /// Horizontal accuracy in metres (~68% radius).
    #[arg(long, requires = "lat", allow_hyphen_values = true)]
    accuracy: Option<f64>,
    /// gps, network, map_pin or photo.
    #[arg(long, requires = "lat", default_value = "map_pin")]
    source: String,
    #[arg(long, conflicts_with = "lat")]
    no_location: bool,
    /// Free-text address or intersection.
    #[arg(long)]
    address: Option<String>,
    #[arg(long, conflicts_with = "address")]
    no_address: bool,
    #[arg(long)]
    first_name: Option<String>,
    #[arg(long)]
    last_name: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    /// Send without contact details.
    #[arg(long, conflicts_with = "named")]
    anonymous: bool,
    /// Send with contact details (undo --anonymous).
    #[arg(long)]
    named: bool,
}

impl EditArgs {
    /// The edit these flags ask for; contact flags change only the fields given.
    pub fn into_edit(self, current: Option<&Draft>) -> Result<DraftEdit, Error> {
        let mut edit = DraftEdit {
            description: self.description,
            ..DraftEdit::default()
        };
        for a in &self.attrs {
            let (code, value) = a.split_once('=').ok_or_else(|| {
                Error::Invalid(vec![Problem::new(
                    "attr",
                    ProblemKind::Malformed,
                    format!("{a:?}: write --attr CODE=VALUE"),
                )])
            })?;
            let code = code.trim().to_string();
            let slot = match edit.attributes.iter().position(|(c, _)| *c == code) {
                Some(i) => &mut edit.attributes[i].1,
                None => {
                    edit.attributes.push((code, Vec::new()));
                    &mut edit.attributes.last_mut().expect("just pushed").1
                }
            };
            if !value.trim().is_empty() {
                slot.push(value.to_string());
            }
        }
        if let (Some(lat), Some(lon)) = (self.lat, self.lon) {
            let source = LocationSource::parse(&self.source).ok_or_else(|| {
                Error::Invalid(vec![Problem::new(
                    "source",
                    ProblemKind::OutOfRange,
                    format!("{:?} is not gps, network, map_pin or photo", self.source),
                )])
            })?;
            edit.location = Some(Some(
                Location::new(lat, lon, self.accuracy, source).map_err(Error::invalid)?,
            ));
        }
        if self.no_location {
            edit.location = Some(None);
        }
        if let Some(address) = self.address {
            edit.address = Some(Some(address));
        }
        if self.no_address {
            edit.address = Some(None);
        }
        if self.first_name.is_some()
            || self.last_name.is_some()
            || self.email.is_some()
            || self.phone.is_some()
        {
            let mut contact = current.map(|d| d.contact.clone()).unwrap_or_default();
            let set = |field: &mut Option<String>, v: Option<String>| {
                if let Some(v) = v {
                    *field = (!v.trim().is_empty()).then(|| v.trim().to_string());
                }
            };
            set(&mut contact.first_name, self.first_name);
            set(&mut contact.last_name, self.last_name);
            set(&mut contact.email, self.email);
            set(&mut contact.phone, self.phone);
            edit.contact = Some(contact);
        }
        if self.anonymous {
            edit.anonymous = Some(true);
        } else if self.named {
            edit.anonymous = Some(false);
        }
        Ok(edit)
    }
}
