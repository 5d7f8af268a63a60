//! Typed reading of configuration documents, so that every error carries
//! the parser's own position and names the field: a document path picks the
//! document's type (node, server, cluster, balancer), and in the TOML form a table's
//! key stands for the document's `name`.

use dure_core::model::canonical_json;
use dure_core::model::paths::{self, DocumentPath};
use dure_core::{ClusterSpec, DomainSettings, LbSpec, NodeSpec, ServerSpec};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// Reads the document at `path` as its type and returns it as canonical JSON.
pub fn document_value<'de, D: Deserializer<'de>>(path: &str, d: D) -> Result<Value, D::Error> {
    let value = match paths::parse(path) {
        Some(DocumentPath::Domain) => serde_json::to_value(DomainSettings::deserialize(d)?),
        Some(DocumentPath::Node { .. }) => serde_json::to_value(NodeSpec::deserialize(d)?),
        Some(DocumentPath::Server { .. }) => serde_json::to_value(ServerSpec::deserialize(d)?),
        Some(DocumentPath::Cluster { .. }) => serde_json::to_value(ClusterSpec::deserialize(d)?),
        Some(DocumentPath::Lb { .. }) => serde_json::to_value(LbSpec::deserialize(d)?),
        None => {
            return Err(de::Error::custom(format!(
                "`{path}` is not a configuration document: use /domain.json, /nodes/<node>/node.json, /nodes/<node>/servers/<server>/server.json, /clusters/<cluster>/cluster.json or /lbs/<lb>/lb.json"
            )))
        }
    };
    value.map_err(de::Error::custom)
}

/// Returns the document at `path` as the controller stores it: canonical
/// JSON in its type's own field order (`name` first), not the sorted keys
/// of a plain JSON value. A document no type reads is written as it is.
pub fn canonical_document(path: &str, value: &Value) -> Vec<u8> {
    let typed = match paths::parse(path) {
        Some(DocumentPath::Domain) => {
            DomainSettings::deserialize(value).map(|d| canonical_json(&d))
        }
        Some(DocumentPath::Node { .. }) => NodeSpec::deserialize(value).map(|d| canonical_json(&d)),
        Some(DocumentPath::Server { .. }) => {
            ServerSpec::deserialize(value).map(|d| canonical_json(&d))
        }
        Some(DocumentPath::Cluster { .. }) => {
            ClusterSpec::deserialize(value).map(|d| canonical_json(&d))
        }
        Some(DocumentPath::Lb { .. }) => LbSpec::deserialize(value).map(|d| canonical_json(&d)),
        None => Ok(canonical_json(value)),
    };
    typed.unwrap_or_else(|_| canonical_json(value))
}

/// A `{path: document}` map, each document read as the type its path names.
#[derive(Debug, Default)]
pub struct Documents(pub BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for Documents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DocumentsVisitor;
        impl<'de> Visitor<'de> for DocumentsVisitor {
            type Value = Documents;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of document paths to documents")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Documents, A::Error> {
                let mut docs = BTreeMap::new();
                while let Some(path) = map.next_key::<String>()? {
                    let value = map.next_value_seed(DocumentSeed { path: &path })?;
                    docs.insert(path, value);
                }
                Ok(Documents(docs))
            }
        }
        d.deserialize_map(DocumentsVisitor)
    }
}

struct DocumentSeed<'a> {
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        document_value(self.path, d)
    }
}

/// A map from names to documents whose `name` is the key: the tables of
/// the TOML form (`[servers.web1]`).
#[derive(Debug)]
pub struct NamedMap<T>(pub BTreeMap<String, T>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        NamedMap(BTreeMap::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = NamedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of named documents")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NamedMap<T>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value_seed(Named {
                        name: name.clone(),
                        kind: PhantomData,
                    })?;
                    out.insert(name, value);
                }
                Ok(NamedMap(out))
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Reads a `T` from a map that lacks the `name` field, supplying it.
struct Named<T> {
    name: String,
    kind: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Named<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::deserialize(WithName {
            inner: d,
            name: self.name,
        })
    }
}

/// A deserializer that reads a map with one more entry, `name`, first.
struct WithName<D> {
    inner: D,
    name: String,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithName<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(InjectName {
            visitor,
            name: self.name,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            InjectName {
                visitor,
                name: self.name,
            },
        )
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct InjectName<V> {
    visitor: V,
    name: String,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for InjectName<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(NameFirst {
            map,
            key: true,
            value: Some(self.name),
        })
    }
}

/// Yields `name` = the key first, then the real entries.
struct NameFirst<A> {
    map: A,
    /// The `name` key is still to be yielded.
    key: bool,
    /// The `name` value is still to be yielded.
    value: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for NameFirst<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if self.key {
            self.key = false;
            let key: de::value::StrDeserializer<'_, A::Error> = "name".into_deserializer();
            return seed.deserialize(key).map(Some);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match self.value.take() {
            Some(name) => {
                let value: de::value::StringDeserializer<A::Error> = name.into_deserializer();
                seed.deserialize(value)
            }
            None => self.map.next_value_seed(seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_tables_get_their_key_as_name() {
        #[derive(Deserialize)]
        struct Tree {
            clusters: NamedMap<ClusterSpec>,
        }
        let tree: Tree = toml::from_str("[clusters.shop]\nmembers = [\"web1\"]\n").unwrap();
        assert_eq!(tree.clusters.0["shop"].name, "shop");
        assert_eq!(tree.clusters.0["shop"].members, ["web1"]);
    }

    #[test]
    fn a_name_inside_a_table_is_a_duplicate() {
        #[derive(Debug, Deserialize)]
        struct Tree {
            #[allow(dead_code)]
            nodes: NamedMap<NodeSpec>,
        }
        let err = toml::from_str::<Tree>("[nodes.n1]\nname = \"n2\"\n").unwrap_err();
        assert!(err.to_string().contains("duplicate field `name`"), "{err}");
    }

    #[test]
    fn documents_are_written_in_their_stored_form() {
        let node = NodeSpec {
            name: "n1".into(),
            address: "10.0.0.5".into(),
            agent_port: Some(7171),
            backup_of: None,
            shared_dirs: Vec::new(),
        };
        let stored = canonical_json(&node);
        let value: Value = serde_json::from_slice(&stored).unwrap();
        let written = canonical_document("/nodes/n1/node.json", &value);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(stored).unwrap()
        );
        let cluster = serde_json::json!({"members": ["a"], "name": "c"});
        let written = canonical_document("/clusters/c/cluster.json", &cluster);
        let text = String::from_utf8(written).unwrap();
        assert!(text.starts_with("{\n  \"name\": \"c\","), "{text}");
        // What no type reads is kept whole rather than dropped.
        let odd = serde_json::json!({"b": 1, "a": 2});
        assert_eq!(
            canonical_document("/clusters/c/cluster.json", &odd),
            canonical_json(&odd)
        );
    }

    #[test]
    fn document_paths_pick_the_type() {
        let text = r#"{"/clusters/c/cluster.json": {"name": "c", "members": ["a"]}}"#;
        let docs: Documents = serde_json::from_str(text).unwrap();
        assert_eq!(docs.0["/clusters/c/cluster.json"]["members"][0], "a");
        let text = "{\n\"/etc/passwd\": {}\n}";
        let err = serde_json::from_str::<Documents>(text).unwrap_err();
        assert!(
            err.to_string()
                .contains("`/etc/passwd` is not a configuration document"),
            "{err}"
        );
        assert_eq!(err.line(), 2);
    }
}
