//! The `/usage` query string, parsed by hand from its raw text: split on `&`, on `,` and on the
//! first `=`, and only then percent-decode each piece, so a `,` or `=` inside a key or value
//! survives as `%2C` / `%3D` (a generic form decoder would decode first and lose that).

use std::fmt;

use crate::service::UsageQuery;

/// Where in the query a problem is; descriptors and entries count from 0, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) descriptor: Option<usize>,
    pub(super) entry: Option<usize>,
    part: &'static str,
}

impl Location {
    const NAME: Location = Location::top("a parameter name");
    const DOMAIN: Location = Location::top("domain");

    const fn top(part: &'static str) -> Self {
        Self {
            descriptor: None,
            entry: None,
            part,
        }
    }

    const fn entry(descriptor: usize, entry: usize, part: &'static str) -> Self {
        Self {
            descriptor: Some(descriptor),
            entry: Some(entry),
            part,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(descriptor) = self.descriptor {
            write!(f, "descriptor {descriptor} ")?;
        }
        if let Some(entry) = self.entry {
            write!(f, "entry {entry} ")?;
        }
        f.write_str(self.part)
    }
}

/// Why a `/usage` query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum QueryError {
    /// No `domain` parameter.
    #[error("missing domain: expected ?domain=NAME&descriptor=KEY=VALUE[,KEY=VALUE...]")]
    MissingDomain,
    /// `domain` given more than once.
    #[error("domain is given more than once; give it once")]
    RepeatedDomain,
    /// No `descriptor` parameter.
    #[error("missing descriptor: expected at least one descriptor=KEY=VALUE[,KEY=VALUE...]")]
    NoDescriptors,
    /// A parameter other than `domain` and `descriptor`.
    #[error("unknown parameter {name:?}: expected domain and descriptor")]
    UnknownParameter {
        /// The parameter's name, decoded.
        name: String,
    },
    /// A `descriptor` with nothing in it.
    #[error("descriptor {descriptor} is empty: expected KEY=VALUE[,KEY=VALUE...]")]
    EmptyDescriptor {
        /// Which descriptor.
        descriptor: usize,
    },
    /// An entry without a literal `=`.
    #[error(
        "descriptor {descriptor} entry {entry} is {text:?}: expected KEY=VALUE (percent-encode \
         a ',' or '=' inside a key or value, never the separators)"
    )]
    MissingEquals {
        /// Which descriptor.
        descriptor: usize,
        /// Which entry of it.
        entry: usize,
        /// The entry as sent.
        text: String,
    },
    /// An entry with an empty key.
    #[error("descriptor {descriptor} entry {entry} has an empty key: expected KEY=VALUE")]
    EmptyKey {
        /// Which descriptor.
        descriptor: usize,
        /// Which entry of it.
        entry: usize,
    },
    /// A `%` not followed by two hex digits.
    #[error("{location} is {text:?}: '%' must be followed by two hex digits")]
    BadEscape {
        /// Where.
        location: Location,
        /// The piece as sent.
        text: String,
    },
    /// Percent-decoded bytes that are not UTF-8.
    #[error("{location} is {text:?}: it does not decode to UTF-8")]
    NotUtf8 {
        /// Where.
        location: Location,
        /// The piece as sent.
        text: String,
    },
}

impl QueryError {
    /// The descriptor and entry the problem is in, when it is in one.
    pub(super) fn position(&self) -> (Option<usize>, Option<usize>) {
        match self {
            QueryError::EmptyDescriptor { descriptor } => (Some(*descriptor), None),
            QueryError::MissingEquals {
                descriptor, entry, ..
            }
            | QueryError::EmptyKey { descriptor, entry } => (Some(*descriptor), Some(*entry)),
            QueryError::BadEscape { location, .. } | QueryError::NotUtf8 { location, .. } => {
                (location.descriptor, location.entry)
            }
            _ => (None, None),
        }
    }
}

/// Parses `domain=NAME&descriptor=KEY=VALUE[,KEY=VALUE...]` (descriptor repeated as needed).
pub(super) fn parse(raw: &str) -> Result<UsageQuery, QueryError> {
    let mut domain = None;
    let mut descriptors = Vec::new();
    for parameter in raw.split('&').filter(|parameter| !parameter.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match decode(name, Location::NAME)?.as_str() {
            "domain" if domain.is_some() => return Err(QueryError::RepeatedDomain),
            "domain" => domain = Some(decode(value, Location::DOMAIN)?),
            "descriptor" => descriptors.push(descriptor(descriptors.len(), value)?),
            other => {
                return Err(QueryError::UnknownParameter {
                    name: other.to_owned(),
                });
            }
        }
    }
    let domain = domain.ok_or(QueryError::MissingDomain)?;
    if descriptors.is_empty() {
        return Err(QueryError::NoDescriptors);
    }
    Ok(UsageQuery {
        domain,
        descriptors,
    })
}

/// One descriptor's entries from its raw text.
fn descriptor(index: usize, raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    if raw.is_empty() {
        return Err(QueryError::EmptyDescriptor { descriptor: index });
    }
    raw.split(',')
        .enumerate()
        .map(|(entry, text)| {
            let Some((key, value)) = text.split_once('=') else {
                return Err(QueryError::MissingEquals {
                    descriptor: index,
                    entry,
                    text: text.to_owned(),
                });
            };
            if key.is_empty() {
                return Err(QueryError::EmptyKey {
                    descriptor: index,
                    entry,
                });
            }
            Ok((
                decode(key, Location::entry(index, entry, "key"))?,
                decode(value, Location::entry(index, entry, "value"))?,
            ))
        })
        .collect()
}

/// Percent-decodes `raw` as a form value (`+` is a space, as browsers' form encoding writes it).
fn decode(raw: &str, location: Location) -> Result<String, QueryError> {
    if !raw.contains(['%', '+']) {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(QueryError::BadEscape {
                        location,
                        text: raw.to_owned(),
                    });
                };
                decoded.push((high << 4) | low);
                index += 2;
            }
            other => decoded.push(other),
        }
        index += 1;
    }
    String::from_utf8(decoded).map_err(|_| QueryError::NotUtf8 {
        location,
        text: raw.to_owned(),
    })
}

const fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(query: &UsageQuery) -> Vec<Vec<(&str, &str)>> {
        query
            .descriptors
            .iter()
            .map(|entries| {
                entries
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn descriptors_keep_their_order_and_encoded_separators() {
        let query =
            parse("domain=api&descriptor=plan=pro,api_key=K&descriptor=a%2Cb%3Dc=x%3Dy%2Cz+w%25")
                .unwrap();
        assert_eq!(query.domain, "api");
        assert_eq!(
            entries(&query),
            [
                vec![("plan", "pro"), ("api_key", "K")],
                vec![("a,b=c", "x=y,z w%")]
            ]
        );
        let query = parse("descriptor=k=a=b,e=&domain=d%C3%A9mo&").unwrap();
        assert_eq!(query.domain, "démo");
        assert_eq!(entries(&query), [vec![("k", "a=b"), ("e", "")]]);
    }

    #[test]
    fn malformed_queries_say_what_and_where() {
        let cases: [(&str, QueryError); 8] = [
            ("", QueryError::MissingDomain),
            ("descriptor=k=v", QueryError::MissingDomain),
            ("domain=api", QueryError::NoDescriptors),
            (
                "domain=a&domain=b&descriptor=k=v",
                QueryError::RepeatedDomain,
            ),
            (
                "domain=api&descriptors=k=v",
                QueryError::UnknownParameter {
                    name: "descriptors".into(),
                },
            ),
            (
                "domain=api&descriptor=k=v&descriptor=",
                QueryError::EmptyDescriptor { descriptor: 1 },
            ),
            (
                "domain=api&descriptor=k=v,plan%3Dpro",
                QueryError::MissingEquals {
                    descriptor: 0,
                    entry: 1,
                    text: "plan%3Dpro".into(),
                },
            ),
            (
                "domain=api&descriptor=k=v,=x",
                QueryError::EmptyKey {
                    descriptor: 0,
                    entry: 1,
                },
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse(raw), Err(expected), "{raw:?}");
        }
        let bad = parse("domain=api&descriptor=k=v&descriptor=a=1,b=%zz").unwrap_err();
        assert_eq!(bad.position(), (Some(1), Some(1)));
        assert_eq!(
            bad.to_string(),
            "descriptor 1 entry 1 value is \"%zz\": '%' must be followed by two hex digits"
        );
        let truncated = parse("domain=api%4&descriptor=k=v").unwrap_err();
        assert!(
            truncated.to_string().starts_with("domain is"),
            "{truncated}"
        );
        let latin1 = parse("domain=api&descriptor=k=%E9").unwrap_err();
        assert!(matches!(latin1, QueryError::NotUtf8 { .. }), "{latin1:?}");
    }
}
