//! The service catalogue in Open311 GeoReport v2 vocabulary: services and their definitions
//! (attributes a resident fills in). Parsing is tolerant of what real servers send (codes that are
//! JSON integers, a `{"services":[…]}` wrapper, nulls) and strict about what would make a form
//! impossible to fill in (a list attribute without values, two attributes with one code).

mod storage;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::vocab::calendar;

pub(crate) use storage::{replace, service, services, DefinitionCache};

/// Toronto's catalogue, shipped in the crate: the city's six real Open311 services (2018) and
/// its high-volume request types, each with a definition. Contains information licensed under
/// the Open Government Licence – Toronto.
pub const TORONTO_JSON: &str = include_str!("../../catalog/toronto.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// The POST answers with a `service_request_id` at once.
    Realtime,
    /// The POST answers with a token, exchanged later for the id.
    Batch,
    /// No id is ever returned.
    Blackbox,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Realtime => "realtime",
            ServiceType::Batch => "batch",
            ServiceType::Blackbox => "blackbox",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "realtime" => Some(ServiceType::Realtime),
            "batch" => Some(ServiceType::Batch),
            "blackbox" => Some(ServiceType::Blackbox),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    /// True when the service has a definition (attributes) to fetch.
    pub metadata: bool,
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// Comma-separated, as Open311 sends them.
    pub keywords: Option<String>,
    pub group: Option<String>,
    /// The city's promise for its requests (`service_standard`, an extension of Open311's
    /// service list that Curbside reads and writes).
    pub standard: Standard,
}

/// A service's standard: when the city acknowledges a request, and when it resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Standard {
    /// The service runs around the clock: a request is acknowledged within
    /// `acknowledge_hours`, not business days.
    pub around_the_clock: bool,
    /// Business days within which a request is acknowledged (two unless the city says
    /// otherwise).
    pub acknowledge_business_days: u32,
    /// Hours within which a request is acknowledged, for a service around the clock (48).
    pub acknowledge_hours: u32,
    /// Business days within which a request is resolved, if the city promises a time.
    pub resolve_business_days: Option<u32>,
}

impl Default for Standard {
    fn default() -> Standard {
        Standard {
            around_the_clock: false,
            acknowledge_business_days: 2,
            acknowledge_hours: 48,
            resolve_business_days: None,
        }
    }
}

/// The longest a standard may promise: a year.
const MAX_STANDARD_DAYS: u32 = 366;

impl Standard {
    /// When a request received at `received_ms` is due to be acknowledged.
    pub fn acknowledge_by(&self, received_ms: i64) -> i64 {
        if self.around_the_clock {
            calendar::add_hours(received_ms, self.acknowledge_hours)
        } else {
            calendar::add_business_days(received_ms, self.acknowledge_business_days)
        }
    }

    /// When a request received at `received_ms` is due to be resolved, if the city says.
    pub fn resolve_by(&self, received_ms: i64) -> Option<i64> {
        self.resolve_business_days
            .map(|days| calendar::add_business_days(received_ms, days))
    }

    /// The promise in words, as Open311's `service_notice` gives it.
    pub fn notice(&self) -> String {
        let acknowledge = if self.around_the_clock {
            format!("within {} hours", self.acknowledge_hours)
        } else {
            format!(
                "within {} business day{}",
                self.acknowledge_business_days,
                if self.acknowledge_business_days == 1 {
                    ""
                } else {
                    "s"
                }
            )
        };
        match self.resolve_business_days {
            Some(days) => format!(
                "The City acknowledges this request {acknowledge} and aims to resolve it \
                 within {days} business day{}.",
                if days == 1 { "" } else { "s" }
            ),
            None => format!("The City acknowledges this request {acknowledge}."),
        }
    }

    fn to_json(self) -> Value {
        serde_json::json!({
            "around_the_clock": self.around_the_clock,
            "acknowledge_business_days": self.acknowledge_business_days,
            "acknowledge_hours": self.acknowledge_hours,
            "resolve_business_days": self.resolve_business_days,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datatype {
    String,
    Number,
    Datetime,
    Text,
    SingleValueList,
    MultiValueList,
}

impl Datatype {
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::String => "string",
            Datatype::Number => "number",
            Datatype::Datetime => "datetime",
            Datatype::Text => "text",
            Datatype::SingleValueList => "singlevaluelist",
            Datatype::MultiValueList => "multivaluelist",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "string" => Some(Datatype::String),
            "number" => Some(Datatype::Number),
            "datetime" => Some(Datatype::Datetime),
            "text" => Some(Datatype::Text),
            "singlevaluelist" => Some(Datatype::SingleValueList),
            "multivaluelist" => Some(Datatype::MultiValueList),
            _ => None,
        }
    }

    pub fn is_list(self) -> bool {
        matches!(self, Datatype::SingleValueList | Datatype::MultiValueList)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListValue {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    /// False: informational text shown on the form, not an input.
    pub variable: bool,
    pub code: String,
    pub datatype: Datatype,
    pub required: bool,
    pub datatype_description: Option<String>,
    pub order: u32,
    pub description: String,
    pub values: Vec<ListValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceDefinition {
    pub service_code: String,
    pub attributes: Vec<Attribute>,
}

impl ServiceDefinition {
    pub fn attribute(&self, code: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.code == code)
    }
}

/// A whole catalogue: the service list and the definitions known for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Catalog {
    pub services: Vec<Service>,
    pub definitions: Vec<ServiceDefinition>,
}

impl Catalog {
    /// The catalogue shipped with the crate.
    pub fn toronto() -> Catalog {
        Catalog::parse(TORONTO_JSON.as_bytes()).expect("the shipped catalogue parses")
    }

    /// Parses a service list (a top-level array, or `{"services":[…]}`) optionally carrying its
    /// definitions (`{"services":[…], "definitions":[…]}`, the form Curbside ships and exports).
    pub fn parse(bytes: &[u8]) -> Result<Catalog> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Catalog(format!("not valid JSON: {e}")))?;
        let (list, defs) = match &root {
            Value::Array(items) => (items.as_slice(), &[][..]),
            Value::Object(obj) => {
                let list = match obj.get("services") {
                    Some(Value::Array(items)) => items.as_slice(),
                    Some(Value::Null) | None => {
                        return Err(Error::Catalog(
                            "expected a list of services: a JSON array or {\"services\":[…]}"
                                .into(),
                        ))
                    }
                    Some(_) => return Err(Error::Catalog("\"services\" must be an array".into())),
                };
                let defs = match obj.get("definitions") {
                    Some(Value::Array(items)) => items.as_slice(),
                    Some(Value::Null) | None => &[][..],
                    Some(_) => {
                        return Err(Error::Catalog("\"definitions\" must be an array".into()))
                    }
                };
                (list, defs)
            }
            _ => {
                return Err(Error::Catalog(
                    "expected a list of services: a JSON array or {\"services\":[…]}".into(),
                ))
            }
        };
        let mut catalog = Catalog::default();
        for (i, item) in list.iter().enumerate() {
            catalog
                .services
                .push(parse_service(item, &format!("services[{i}]"))?);
        }
        for (i, item) in defs.iter().enumerate() {
            catalog
                .definitions
                .push(parse_definition(item, &format!("definitions[{i}]"))?);
        }
        catalog.check()?;
        Ok(catalog)
    }

    /// Adds one Open311 service definition document (`GET services/{code}.json`).
    pub fn add_definition_json(&mut self, bytes: &[u8]) -> Result<()> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Catalog(format!("definition is not valid JSON: {e}")))?;
        // Some servers wrap the object in a one-element array (the XML-to-JSON mapping).
        let item = match &root {
            Value::Array(items) if items.len() == 1 => &items[0],
            other => other,
        };
        let def = parse_definition(item, "definition")?;
        self.definitions
            .retain(|d| d.service_code != def.service_code);
        self.definitions.push(def);
        self.check()
    }

    pub fn service(&self, code: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.code == code)
    }

    pub fn definition(&self, code: &str) -> Option<&ServiceDefinition> {
        self.definitions.iter().find(|d| d.service_code == code)
    }

    /// The service list as Open311 `services.json` (spec field names).
    pub fn services_open311(&self) -> Value {
        Value::Array(self.services.iter().map(service_open311).collect())
    }

    /// A definition as Open311 `services/{code}.json`; a service without attributes has an
    /// empty list.
    pub fn definition_open311(&self, code: &str) -> Option<Value> {
        self.service(code)?;
        let attributes = self
            .definition(code)
            .map(|d| d.attributes.iter().map(attribute_open311).collect())
            .unwrap_or_default();
        Some(serde_json::json!({ "service_code": code, "attributes": Value::Array(attributes) }))
    }

    /// The whole catalogue in the shipped form, which [`Catalog::parse`] reads back.
    pub fn to_json(&self) -> Value {
        let definitions = self
            .definitions
            .iter()
            .map(|d| {
                serde_json::json!({
                    "service_code": d.service_code,
                    "attributes": d.attributes.iter().map(attribute_open311).collect::<Vec<_>>(),
                })
            })
            .collect::<Vec<_>>();
        serde_json::json!({ "services": self.services_open311(), "definitions": definitions })
    }

    fn check(&self) -> Result<()> {
        let mut codes = HashSet::new();
        for s in &self.services {
            if !codes.insert(s.code.as_str()) {
                return Err(Error::Catalog(format!(
                    "service code {:?} appears twice",
                    s.code
                )));
            }
        }
        let mut defined = HashSet::new();
        for d in &self.definitions {
            if !codes.contains(d.service_code.as_str()) {
                return Err(Error::Catalog(format!(
                    "definition for {:?}, which is not in the service list",
                    d.service_code
                )));
            }
            if !defined.insert(d.service_code.as_str()) {
                return Err(Error::Catalog(format!(
                    "two definitions for {:?}",
                    d.service_code
                )));
            }
        }
        Ok(())
    }
}

fn service_open311(s: &Service) -> Value {
    serde_json::json!({
        "service_code": s.code,
        "service_name": s.name,
        "description": s.description,
        "metadata": s.metadata,
        "type": s.kind.as_str(),
        "keywords": s.keywords,
        "group": s.group,
        "service_standard": s.standard.to_json(),
    })
}

fn attribute_open311(a: &Attribute) -> Value {
    let mut obj = serde_json::json!({
        "variable": a.variable,
        "code": a.code,
        "datatype": a.datatype.as_str(),
        "required": a.required,
        "datatype_description": a.datatype_description,
        "order": a.order,
        "description": a.description,
    });
    if a.datatype.is_list() {
        obj["values"] = serde_json::to_value(&a.values).expect("plain strings serialise");
    }
    obj
}

// ---- tolerant field readers -------------------------------------------------------------

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::Catalog(format!("{path}: expected an object")))
}

/// A string field that real servers sometimes send as a number (Toronto's `30102`).
fn text(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Error::Catalog(format!(
            "{path}.{key}: expected a string or a number"
        ))),
    }
}

fn required_text(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String> {
    text(obj, key, path)?.ok_or_else(|| Error::Catalog(format!("{path}.{key} is missing")))
}

/// A boolean that may arrive as `true`, `"true"` or `1`; absent or null means `default`.
fn flag(obj: &Map<String, Value>, key: &str, default: bool, path: &str) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            _ => Err(Error::Catalog(format!(
                "{path}.{key}: {s:?} is not a boolean"
            ))),
        },
        Some(Value::Number(n)) => Ok(n.as_f64() != Some(0.0)),
        Some(_) => Err(Error::Catalog(format!("{path}.{key}: expected a boolean"))),
    }
}

fn parse_service(v: &Value, path: &str) -> Result<Service> {
    let obj = object(v, path)?;
    let code = required_text(obj, "service_code", path)?;
    let path = format!("{path} ({code})");
    let name = text(obj, "service_name", &path)?.unwrap_or_else(|| code.clone());
    let kind = match text(obj, "type", &path)? {
        None => ServiceType::Realtime,
        Some(t) => ServiceType::parse(&t).ok_or_else(|| {
            Error::Catalog(format!(
                "{path}.type: {t:?} is not realtime, batch or blackbox"
            ))
        })?,
    };
    Ok(Service {
        name,
        description: text(obj, "description", &path)?,
        metadata: flag(obj, "metadata", false, &path)?,
        kind,
        keywords: text(obj, "keywords", &path)?,
        group: text(obj, "group", &path)?,
        standard: parse_standard(obj.get("service_standard"), &path)?,
        code,
    })
}

/// A `service_standard` object; absent, the default (two business days to acknowledge).
fn parse_standard(v: Option<&Value>, path: &str) -> Result<Standard> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Standard::default()),
        Some(v) => object(v, &format!("{path}.service_standard"))?,
    };
    let path = format!("{path}.service_standard");
    let days = |key: &str, max: u32| -> Result<Option<u32>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u64::from(max)).contains(&n) => Ok(Some(n as u32)),
                _ => Err(Error::Catalog(format!(
                    "{path}.{key}: a whole number from 1 to {max}"
                ))),
            },
        }
    };
    let default = Standard::default();
    Ok(Standard {
        around_the_clock: flag(obj, "around_the_clock", false, &path)?,
        acknowledge_business_days: days("acknowledge_business_days", MAX_STANDARD_DAYS)?
            .unwrap_or(default.acknowledge_business_days),
        acknowledge_hours: days("acknowledge_hours", MAX_STANDARD_DAYS * 24)?
            .unwrap_or(default.acknowledge_hours),
        resolve_business_days: days("resolve_business_days", MAX_STANDARD_DAYS)?,
    })
}

fn parse_definition(v: &Value, path: &str) -> Result<ServiceDefinition> {
    let obj = object(v, path)?;
    let service_code = required_text(obj, "service_code", path)?;
    let path = format!("{path} ({service_code})");
    let items = match obj.get("attributes") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => {
            return Err(Error::Catalog(format!(
                "{path}.attributes: expected an array"
            )))
        }
    };
    let mut attributes = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let a = parse_attribute(item, &format!("{path}.attributes[{i}]"), i)?;
        if !seen.insert(a.code.clone()) {
            return Err(Error::Catalog(format!(
                "{path}: attribute code {:?} appears twice",
                a.code
            )));
        }
        attributes.push(a);
    }
    // Open311 gives the display order explicitly; the list order breaks ties.
    attributes.sort_by_key(|a| a.order);
    Ok(ServiceDefinition {
        service_code,
        attributes,
    })
}

fn parse_attribute(v: &Value, path: &str, index: usize) -> Result<Attribute> {
    let obj = object(v, path)?;
    let code = required_text(obj, "code", path)?;
    let path = format!("{path} ({code})");
    let datatype_text = required_text(obj, "datatype", &path)?;
    let datatype = Datatype::parse(&datatype_text).ok_or_else(|| {
        Error::Catalog(format!(
            "{path}.datatype: {datatype_text:?} is not an Open311 datatype"
        ))
    })?;
    let order = match obj.get("order") {
        None | Some(Value::Null) => index as u32 + 1,
        Some(Value::Number(n)) => {
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    Error::Catalog(format!("{path}.order: {n} is not a positive integer"))
                })?
        }
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| Error::Catalog(format!("{path}.order: {s:?} is not a number")))?,
        Some(_) => return Err(Error::Catalog(format!("{path}.order: expected a number"))),
    };
    let mut values = Vec::new();
    match obj.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let vpath = format!("{path}.values[{i}]");
                let vo = object(item, &vpath)?;
                let key = required_text(vo, "key", &vpath)?;
                let name = text(vo, "name", &vpath)?.unwrap_or_else(|| key.clone());
                if values.iter().any(|v: &ListValue| v.key == key) {
                    return Err(Error::Catalog(format!(
                        "{path}: value key {key:?} appears twice"
                    )));
                }
                values.push(ListValue { key, name });
            }
        }
        Some(_) => return Err(Error::Catalog(format!("{path}.values: expected an array"))),
    }
    let variable = flag(obj, "variable", true, &path)?;
    if datatype.is_list() && values.is_empty() && variable {
        return Err(Error::Catalog(format!(
            "{path}: a {} needs values to choose from",
            datatype.as_str()
        )));
    }
    Ok(Attribute {
        variable,
        datatype,
        required: flag(obj, "required", false, &path)?,
        datatype_description: text(obj, "datatype_description", &path)?,
        order,
        description: text(obj, "description", &path)?.unwrap_or_else(|| code.clone()),
        values,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TORONTO_2018: &str =
        include_str!("../../../../shared/data/toronto/open311-services.json");

    #[test]
    fn reads_torontos_real_service_list_with_an_integer_code() {
        let c = Catalog::parse(TORONTO_2018.as_bytes()).unwrap();
        assert_eq!(c.services.len(), 6);
        let graffiti = c.service("30102").expect("integer code read as text");
        assert_eq!(graffiti.name, "Graffiti on private property");
        assert_eq!(graffiti.kind, ServiceType::Batch);
        assert!(!c.service("SWLMALB-02").unwrap().metadata);
    }

    #[test]
    fn accepts_the_wrapper_form_and_nulls() {
        let json = br#"{"services":[{"service_code":7,"service_name":null,"description":null,
            "metadata":"true","type":null,"keywords":null,"group":null}]}"#;
        let c = Catalog::parse(json).unwrap();
        assert_eq!(c.services[0].code, "7");
        assert_eq!(
            c.services[0].name, "7",
            "a missing name falls back to the code"
        );
        assert!(c.services[0].metadata);
        assert_eq!(c.services[0].kind, ServiceType::Realtime);
    }

    #[test]
    fn definitions_use_the_spec_shape_and_sort_by_order() {
        let mut c = Catalog::parse(br#"[{"service_code":"A","service_name":"a"}]"#).unwrap();
        c.add_definition_json(
            br#"{"service_code":"A","attributes":[
              {"variable":true,"code":"WHEN","datatype":"datetime","required":false,"order":2,"description":"When?"},
              {"variable":true,"code":"SIZE","datatype":"singlevaluelist","required":true,"order":1,
               "description":"Size","values":[{"key":1,"name":"Small"},{"key":"2","name":"Big"}]}]}"#,
        )
        .unwrap();
        let d = c.definition("A").unwrap();
        assert_eq!(d.attributes[0].code, "SIZE");
        assert_eq!(d.attributes[0].values[0].key, "1");
        let open311 = c.definition_open311("A").unwrap();
        assert_eq!(open311["attributes"][0]["values"][1]["key"], "2");
        assert_eq!(open311["attributes"][1]["datatype"], "datetime");
    }

    #[test]
    fn malformed_catalogues_get_errors_that_name_the_place() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "not valid JSON"),
            (b"\"services\"", "expected a list"),
            (
                b"[{\"service_name\":\"x\"}]",
                "services[0].service_code is missing",
            ),
            (b"[{\"service_code\":{}}]", "expected a string or a number"),
            (
                b"[{\"service_code\":\"A\"},{\"service_code\":\"A\"}]",
                "appears twice",
            ),
            (
                b"[{\"service_code\":\"A\",\"type\":\"instant\"}]",
                "not realtime",
            ),
            (b"[\xff\xfe]", "not valid JSON"),
            (
                br#"{"services":[{"service_code":"A"}],"definitions":[{"service_code":"A",
                "attributes":[{"code":"X","datatype":"colour"}]}]}"#,
                "not an Open311 datatype",
            ),
            (
                br#"{"services":[{"service_code":"A"}],"definitions":[{"service_code":"A",
                "attributes":[{"code":"X","datatype":"singlevaluelist"}]}]}"#,
                "needs values",
            ),
            (
                br#"{"services":[{"service_code":"A"}],"definitions":[{"service_code":"B"}]}"#,
                "not in the service list",
            ),
        ];
        for (json, expected) in cases {
            let err = Catalog::parse(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }

    #[test]
    fn service_standards_are_read_defaulted_and_written_back() {
        let c = Catalog::toronto();
        let pothole = c.service("CSROWR-12").unwrap().standard;
        assert_eq!(pothole.resolve_business_days, Some(4));
        assert!(!pothole.around_the_clock);
        let wildlife = c.service("ANS-WILDLIFE-INJURED").unwrap().standard;
        assert!(wildlife.around_the_clock);
        // Friday 3 p.m.: the pothole is acknowledged by Tuesday 3 p.m.; the injured animal
        // within 48 hours, weekend or not.
        let friday = 1_795_809_600_000; // 2026-11-27T15:00:00-05:00
        assert_eq!(pothole.acknowledge_by(friday), friday + 4 * 86_400_000);
        assert_eq!(wildlife.acknowledge_by(friday), friday + 2 * 86_400_000);
        assert!(
            pothole.notice().contains("2 business days"),
            "{}",
            pothole.notice()
        );
        assert!(
            wildlife.notice().contains("48 hours"),
            "{}",
            wildlife.notice()
        );
        // Exported and imported again, unchanged; a list without standards gets the default.
        assert_eq!(
            Catalog::parse(c.to_json().to_string().as_bytes()).unwrap(),
            c
        );
        let plain = Catalog::parse(TORONTO_2018.as_bytes()).unwrap();
        assert_eq!(plain.services[0].standard, Standard::default());
        assert_eq!(plain.services[0].standard.resolve_by(friday), None);
        for (standard, says) in [
            (r#"{"resolve_business_days":0}"#, "resolve_business_days"),
            (
                r#"{"acknowledge_business_days":"two"}"#,
                "acknowledge_business_days",
            ),
            (r#"{"acknowledge_hours":100000}"#, "acknowledge_hours"),
            (r#""fast""#, "expected an object"),
        ] {
            let json = format!(r#"[{{"service_code":"A","service_standard":{standard}}}]"#);
            let err = Catalog::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn shipped_toronto_catalogue_covers_the_real_services_and_every_datatype() {
        let c = Catalog::toronto();
        let real = Catalog::parse(TORONTO_2018.as_bytes()).unwrap();
        for s in &real.services {
            let shipped = c
                .service(&s.code)
                .expect("every real Toronto service ships");
            assert_eq!(shipped.name, s.name);
        }
        assert!(c.services.len() >= 12);
        let mut seen = HashSet::new();
        let mut required = 0;
        let mut optional = 0;
        for d in &c.definitions {
            for a in &d.attributes {
                seen.insert(a.datatype);
                if a.required {
                    required += 1
                } else {
                    optional += 1
                }
            }
        }
        assert_eq!(
            seen.len(),
            6,
            "all six Open311 datatypes are used: {seen:?}"
        );
        assert!(required > 0 && optional > 0);
        // What we export reads back the same.
        let again = Catalog::parse(c.to_json().to_string().as_bytes()).unwrap();
        assert_eq!(again, c);
    }
}
