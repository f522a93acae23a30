//! A pull's page on the wire: its changes in runs of one request and one replica, each run
//! naming them once and each change reduced to `[counter, field, value, hlc]` (with the
//! replaced stamp as a fifth element when there is one):
//!
//! ```json
//! "groups": [{"request_id": "0190…", "replica": "5eed…",
//!             "changes": [[1, "create", {…}, 1144…], [2, "description", "…", 1144…]]}]
//! ```
//!
//! A page is mostly the same request and replica ids written again and again in the flat form
//! of a push ([`super::change::WireChange`]); in runs it is about half the bytes, and the
//! ids are parsed once a run rather than once a change. Runs keep the page's order: only
//! neighbours are grouped.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct, SerializeTuple};
use serde::{Deserializer, Serialize, Serializer};

use super::change::{Change, StoredChange};
use super::clock::Hlc;
use crate::vocab::{ChangeId, Field, FieldValue, ReplicaId, RequestId};

/// A change as an item of a page: what the runs need to know of it.
pub trait Paged {
    fn request_id(&self) -> &RequestId;
    fn change_id(&self) -> &ChangeId;
    fn field(&self) -> Field;
    fn stamps(&self) -> (Hlc, Option<Hlc>);
    /// Writes the value as the wire carries it.
    fn value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

impl Paged for Change {
    fn request_id(&self) -> &RequestId {
        &self.request_id
    }
    fn change_id(&self) -> &ChangeId {
        &self.id
    }
    fn field(&self) -> Field {
        Change::field(self)
    }
    fn stamps(&self) -> (Hlc, Option<Hlc>) {
        (self.hlc, self.replaced)
    }
    fn value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl Paged for StoredChange {
    fn request_id(&self) -> &RequestId {
        &self.request_id
    }
    fn change_id(&self) -> &ChangeId {
        &self.id
    }
    fn field(&self) -> Field {
        self.field.clone()
    }
    fn stamps(&self) -> (Hlc, Option<Hlc>) {
        (self.hlc, self.replaced)
    }
    fn value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// Writes `changes` as runs (`#[serde(serialize_with)]`).
pub fn serialize<C: Paged, S: Serializer>(changes: &[C], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(None)?;
    let mut rest = changes;
    while let Some(head) = rest.first() {
        let same = |c: &C| {
            c.request_id() == head.request_id() && c.change_id().replica == head.change_id().replica
        };
        let n = rest.iter().take_while(|c| same(c)).count();
        seq.serialize_element(&Run(&rest[..n]))?;
        rest = &rest[n..];
    }
    seq.end()
}

struct Run<'a, C>(&'a [C]);

impl<C: Paged> Serialize for Run<'_, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let head = &self.0[0];
        let mut st = s.serialize_struct("Run", 3)?;
        st.serialize_field("request_id", head.request_id())?;
        st.serialize_field("replica", head.change_id().replica.as_str())?;
        st.serialize_field("changes", &Items(self.0))?;
        st.end()
    }
}

struct Items<'a, C>(&'a [C]);

impl<C: Paged> Serialize for Items<'_, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for c in self.0 {
            seq.serialize_element(&Item(c))?;
        }
        seq.end()
    }
}

struct Item<'a, C>(&'a C);

impl<C: Paged> Serialize for Item<'_, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Value<'a, C>(&'a C);
        impl<C: Paged> Serialize for Value<'_, C> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.value(s)
            }
        }
        let c = self.0;
        let (hlc, replaced) = c.stamps();
        let mut t = s.serialize_tuple(if replaced.is_some() { 5 } else { 4 })?;
        t.serialize_element(&c.change_id().counter)?;
        t.serialize_element(&*c.field().name())?;
        t.serialize_element(&Value(c))?;
        t.serialize_element(&hlc.0)?;
        if let Some(r) = replaced {
            t.serialize_element(&r.0)?;
        }
        t.end()
    }
}

/// Reads runs back into changes, each checked as a pushed change is: ids well formed, a known
/// field, a value of its field's shape (`#[serde(deserialize_with)]`).
pub fn deserialize<'de, D: Deserializer<'de>, C: From<Change>>(d: D) -> Result<Vec<C>, D::Error> {
    struct Runs;
    impl<'de> Visitor<'de> for Runs {
        type Value = Vec<Change>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of runs of changes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Change>, A::Error> {
            let mut out = Vec::new();
            while seq.next_element_seed(RunInto(&mut out))?.is_some() {}
            Ok(out)
        }
    }
    Ok(d.deserialize_seq(Runs)?.into_iter().map(C::from).collect())
}

/// A change of a run before it has its ids.
struct Bare {
    counter: u64,
    value: FieldValue,
    hlc: u64,
    replaced: Option<u64>,
}

/// Reads one run and appends its changes to the vector.
struct RunInto<'v>(&'v mut Vec<Change>);

impl<'de> DeserializeSeed<'de> for RunInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RunInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a run of changes: request_id, replica, changes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut request_id, mut replica, mut items) = (None, None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "request_id" => {
                    let text = map.next_value::<Cow<'de, str>>()?;
                    request_id = Some(
                        RequestId::parse(&text)
                            .map_err(|_| A::Error::custom("request_id is not a UUID"))?,
                    );
                }
                "replica" => {
                    let text = map.next_value::<Cow<'de, str>>()?;
                    replica =
                        Some(ReplicaId::parse(&text).ok_or_else(|| {
                            A::Error::custom("a replica id has 1 to 64 characters")
                        })?);
                }
                "changes" => items = Some(map.next_value_seed(ItemsSeed)?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let request_id = request_id.ok_or_else(|| A::Error::missing_field("request_id"))?;
        let replica: ReplicaId = replica.ok_or_else(|| A::Error::missing_field("replica"))?;
        let items: Vec<Bare> = items.ok_or_else(|| A::Error::missing_field("changes"))?;
        self.0.extend(items.into_iter().map(|b| Change {
            id: ChangeId {
                replica: replica.clone(),
                counter: b.counter,
            },
            request_id,
            value: b.value,
            hlc: Hlc(b.hlc),
            replaced: b.replaced.map(Hlc),
        }));
        Ok(())
    }
}

struct ItemsSeed;

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Vec<Bare>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Bare>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Vec<Bare>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of changes")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Bare>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8).min(64));
        while let Some(b) = seq.next_element_seed(BareSeed)? {
            out.push(b);
        }
        Ok(out)
    }
}

struct BareSeed;

impl<'de> DeserializeSeed<'de> for BareSeed {
    type Value = Bare;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Bare, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BareSeed {
    type Value = Bare;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a change: [counter, field, value, hlc, replaced?]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bare, A::Error> {
        let missing = |what: &str| A::Error::custom(format!("a change without its {what}"));
        let counter: u64 = seq.next_element()?.ok_or_else(|| missing("counter"))?;
        let name: Cow<'de, str> = seq.next_element()?.ok_or_else(|| missing("field"))?;
        let field = Field::parse(&name)
            .ok_or_else(|| A::Error::custom(format!("unknown field {name:?}")))?;
        let value = seq
            .next_element_seed(ValueSeed(&field))?
            .ok_or_else(|| missing("value"))?;
        let hlc: u64 = seq.next_element()?.ok_or_else(|| missing("hlc"))?;
        let replaced: Option<u64> = seq.next_element()?;
        Ok(Bare {
            counter,
            value,
            hlc,
            replaced,
        })
    }
}

/// A value decoded straight into its field's type.
struct ValueSeed<'a>(&'a Field);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = FieldValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldValue, D::Error> {
        FieldValue::read(self.0, d).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Note;

    fn change(request: u128, replica: &str, counter: u64, value: FieldValue) -> Change {
        Change {
            id: ChangeId {
                replica: ReplicaId::parse(replica).unwrap(),
                counter,
            },
            request_id: RequestId::parse(
                &uuid::Uuid::from_u128(0x0190_f3a0_0000_7000_8000_0000_0000_0000 | request)
                    .to_string(),
            )
            .unwrap(),
            value,
            hlc: Hlc::new(1_700_000_000_000 + counter, 0),
            replaced: counter
                .is_multiple_of(2)
                .then(|| Hlc::new(1_600_000_000_000, 3)),
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Page<C: Paged> {
        #[serde(serialize_with = "serialize", deserialize_with = "deserialize")]
        #[serde(bound(deserialize = "C: From<Change>"))]
        groups: Vec<C>,
    }

    #[test]
    fn runs_keep_order_and_every_part_of_a_change() {
        let note = |text: &str| {
            FieldValue::Note(Note {
                id: text.into(),
                author: "resident".into(),
                text: text.into(),
                public: true,
                status: None,
            })
        };
        let changes = vec![
            change(
                1,
                "aaaa",
                1,
                FieldValue::Description("a \"quoted\" hole".into()),
            ),
            change(1, "aaaa", 2, note("first")),
            change(1, "bbbb", 7, note("city")),
            change(2, "aaaa", 3, FieldValue::Description("another".into())),
            change(1, "aaaa", 4, note("back to the first")),
        ];
        // The server's form (values as stored) and the client's (typed) write the same page.
        let stored: Vec<StoredChange> = changes.iter().map(StoredChange::from).collect();
        let text = serde_json::to_string(&Page { groups: stored }).unwrap();
        assert_eq!(
            text,
            serde_json::to_string(&Page {
                groups: changes.clone()
            })
            .unwrap()
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let runs = v["groups"].as_array().unwrap();
        assert_eq!(runs.len(), 4, "{text}");
        assert_eq!(runs[0]["changes"].as_array().unwrap().len(), 2);
        assert_eq!(
            runs[0]["changes"][1].as_array().unwrap().len(),
            5,
            "replaced"
        );
        let back: Page<Change> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.groups, changes);
    }

    #[test]
    fn a_bad_run_or_change_is_refused_with_a_reason() {
        let bad = [
            (r#"[{"replica":"a","changes":[]}]"#, "request_id"),
            (r#"[{"request_id":"x","replica":"a","changes":[]}]"#, "UUID"),
            (
                r#"[{"request_id":"0190f3a0-0000-7000-8000-000000000001","replica":"","changes":[]}]"#,
                "replica",
            ),
            (
                r#"[{"request_id":"0190f3a0-0000-7000-8000-000000000001","replica":"a","changes":[[1,"nope",1,2]]}]"#,
                "unknown field",
            ),
            (
                r#"[{"request_id":"0190f3a0-0000-7000-8000-000000000001","replica":"a","changes":[[1,"description",5,2]]}]"#,
                "description",
            ),
            (
                r#"[{"request_id":"0190f3a0-0000-7000-8000-000000000001","replica":"a","changes":[[1,"description","x"]]}]"#,
                "hlc",
            ),
            (
                r#"[{"request_id":"0190f3a0-0000-7000-8000-000000000001","replica":"a","changes":[[1,"description","x",2,3,4]]}]"#,
                "",
            ),
        ];
        for (json, says) in bad {
            let e = deserialize::<_, Change>(&mut serde_json::Deserializer::from_str(json))
                .unwrap_err();
            assert!(e.to_string().contains(says), "{json}: {e}");
        }
        let empty =
            deserialize::<_, Change>(&mut serde_json::Deserializer::from_str("[]")).unwrap();
        assert!(empty.is_empty());
    }
}
