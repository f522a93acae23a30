//! The catalogue's tables: services and their attributes, replaced whole on import, read with a
//! cache of parsed definitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{Attribute, Catalog, Datatype, Service, ServiceDefinition, ServiceType};
use crate::error::{Error, Result};
use crate::sql::{self, Key};

/// Replaces the stored catalogue with `catalog`. Requests keep their service code whatever
/// happens to the service.
pub(crate) fn replace(tx: &Transaction, catalog: &Catalog, now_ms: i64) -> Result<()> {
    tx.execute("DELETE FROM service_attributes", [])?;
    tx.execute("DELETE FROM services", [])?;
    let mut insert_service = tx.prepare(
        "INSERT INTO services
             (code, name, description, metadata, type, keywords, grp, position, standard)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (i, s) in catalog.services.iter().enumerate() {
        insert_service.execute(params![
            s.code,
            s.name,
            s.description,
            s.metadata,
            s.kind.as_str(),
            s.keywords,
            s.group,
            i as i64,
            serde_json::to_string(&s.standard).expect("numbers serialise")
        ])?;
    }
    let mut insert_attr = tx.prepare(
        "INSERT INTO service_attributes (service_code, code, variable, datatype, required,
             datatype_description, position, description, value_list)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for d in &catalog.definitions {
        for a in &d.attributes {
            let values = a
                .datatype
                .is_list()
                .then(|| serde_json::to_string(&a.values).expect("plain strings serialise"));
            insert_attr.execute(params![
                d.service_code,
                a.code,
                a.variable,
                a.datatype.as_str(),
                a.required,
                a.datatype_description,
                a.order,
                a.description,
                values
            ])?;
        }
    }
    sql::set(tx, Key::CATALOG_IMPORTED_AT, &now_ms.to_string())?;
    // Tells every process's DefinitionCache that its copies are stale.
    sql::increment(tx, Key::CATALOG_GENERATION)?;
    Ok(())
}

/// Parsed service definitions, kept between calls: validating a draft must not re-read and
/// re-parse its definition each time. Entries are dropped when the stored catalogue's
/// generation changes, whichever process replaced it.
#[derive(Default)]
pub(crate) struct DefinitionCache {
    inner: Mutex<CachedDefinitions>,
}

#[derive(Default)]
struct CachedDefinitions {
    generation: String,
    /// `None`: the catalogue does not offer the service.
    entries: HashMap<String, Option<Arc<ServiceDefinition>>>,
}

impl DefinitionCache {
    pub(crate) fn get(
        &self,
        conn: &Connection,
        code: &str,
    ) -> Result<Option<Arc<ServiceDefinition>>> {
        let generation = sql::get(conn, Key::CATALOG_GENERATION)?.unwrap_or_default();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let cache = &mut *guard;
        if cache.generation != generation {
            cache.generation = generation;
            cache.entries.clear();
        }
        if let Some(d) = cache.entries.get(code) {
            return Ok(d.clone());
        }
        let d = definition(conn, code)?.map(Arc::new);
        cache.entries.insert(code.to_string(), d.clone());
        Ok(d)
    }
}

fn service_from_row(row: &rusqlite::Row) -> rusqlite::Result<Service> {
    let kind: String = row.get(4)?;
    let standard: Option<String> = row.get(7)?;
    Ok(Service {
        code: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        metadata: row.get(3)?,
        kind: ServiceType::parse(&kind).unwrap_or(ServiceType::Realtime),
        keywords: row.get(5)?,
        group: row.get(6)?,
        // Written by `replace` from a parsed standard; a file from before standards has none.
        standard: standard
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
}

const SERVICE_COLUMNS: &str = "code, name, description, metadata, type, keywords, grp, standard";

pub(crate) fn services(conn: &Connection) -> Result<Vec<Service>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services ORDER BY position"
    ))?;
    let rows = stmt.query_map([], service_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn service(conn: &Connection, code: &str) -> Result<Option<Service>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services WHERE code = ?1"
    ))?;
    Ok(stmt.query_row([code], service_from_row).optional()?)
}

/// The definition of a known service (empty when it has no attributes), or `None` when the
/// catalogue does not offer the service.
pub(crate) fn definition(conn: &Connection, code: &str) -> Result<Option<ServiceDefinition>> {
    if service(conn, code)?.is_none() {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT code, variable, datatype, required, datatype_description, position,
                description, value_list
         FROM service_attributes WHERE service_code = ?1 ORDER BY position, code",
    )?;
    let rows = stmt.query_map([code], |row| {
        let datatype: String = row.get(2)?;
        let values: Option<String> = row.get(7)?;
        Ok((
            Attribute {
                code: row.get(0)?,
                variable: row.get(1)?,
                datatype: Datatype::String,
                required: row.get(3)?,
                datatype_description: row.get(4)?,
                order: row.get(5)?,
                description: row.get(6)?,
                values: Vec::new(),
            },
            datatype,
            values,
        ))
    })?;
    let mut attributes = Vec::new();
    for row in rows {
        let (mut a, datatype, values) = row?;
        // Written by `replace` from parsed values, so these only fail on a hand-edited file.
        a.datatype = Datatype::parse(&datatype).ok_or_else(|| Error::Stored {
            what: "a service attribute's datatype",
            detail: format!("{datatype:?} is unknown"),
        })?;
        if let Some(values) = values {
            a.values = serde_json::from_str(&values).map_err(|e| Error::Stored {
                what: "a service attribute's values",
                detail: format!("{}: {e}", a.code),
            })?;
        }
        attributes.push(a);
    }
    Ok(Some(ServiceDefinition {
        service_code: code.to_string(),
        attributes,
    }))
}
