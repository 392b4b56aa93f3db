//! A shape-only view of a YAML document (maps, lists, scalars, each with its location), used to
//! turn a parser error's line and column into a field path such as `descriptors[1].rate_limit`
//! and to quote the offending text. serde reports where a typed parse failed but not the path.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// One YAML node; scalar text is read back from the source through the node's span.
#[derive(Debug)]
pub(crate) enum Shape {
    Scalar,
    Map(Vec<(Spanned<Shape>, Spanned<Shape>)>),
    List(Vec<Spanned<Shape>>),
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape, D::Error> {
        Shape::deserialize(deserializer)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Shape>>()? {
            entries.push((key, map.next_value::<Spanned<Shape>>()?));
        }
        Ok(Shape::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Shape>>()? {
            items.push(item);
        }
        Ok(Shape::List(items))
    }
}

/// The source text a location's span covers (empty for collections, whose spans are empty).
pub(crate) fn source_text(source: &str, location: Location) -> &str {
    let span = location.span();
    let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else {
        return "";
    };
    let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
        return "";
    };
    source.get(start..start.saturating_add(len)).unwrap_or("")
}

/// The field path and source text of the node (key or value) at `line`:`column`, if any.
pub(crate) fn locate(
    source: &str,
    root: &Spanned<Shape>,
    line: u64,
    column: u64,
) -> Option<(String, String)> {
    let mut path = String::new();
    find(source, root, line, column, &mut path)
}

fn is_at(node: &Spanned<Shape>, line: u64, column: u64) -> bool {
    node.referenced.line() == line && node.referenced.column() == column
}

fn find(
    source: &str,
    node: &Spanned<Shape>,
    line: u64,
    column: u64,
    path: &mut String,
) -> Option<(String, String)> {
    // Children first: a collection starts where its first child does, and the child is the
    // more precise answer.
    let here = path.len();
    match &node.value {
        Shape::Scalar => {}
        Shape::Map(entries) => {
            for (key, value) in entries {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(source_text(source, key.referenced));
                if is_at(key, line, column) {
                    return Some((path.clone(), format!("key {}", quoted_key(source, key))));
                }
                if let Some(found) = find(source, value, line, column, path) {
                    return Some(found);
                }
                path.truncate(here);
            }
        }
        Shape::List(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push_str(&format!("[{index}]"));
                if let Some(found) = find(source, item, line, column, path) {
                    return Some(found);
                }
                path.truncate(here);
            }
        }
    }
    if is_at(node, line, column) {
        return Some((path.clone(), describe(source, node)));
    }
    None
}

fn quoted_key(source: &str, key: &Spanned<Shape>) -> String {
    format!("{:?}", source_text(source, key.referenced))
}

/// How a node reads in a "found" message: its text for scalars, its kind for collections.
fn describe(source: &str, node: &Spanned<Shape>) -> String {
    match &node.value {
        Shape::Map(_) => "a mapping".to_owned(),
        Shape::List(_) => "a list".to_owned(),
        Shape::Scalar => match source_text(source, node.referenced) {
            "" => "nothing".to_owned(),
            text => text.to_owned(),
        },
    }
}
