//! Config errors as values an operator can act on: every problem in every file, each with the
//! file, line and column, the field path, what was expected and what was found. A reload that
//! fails prints all of them at once instead of making the operator fix one problem per restart.

use std::fmt;

use serde_saphyr::Location;

/// One problem in a rules file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Rendered(self))]
pub struct ConfigError {
    /// The file the problem is in, as given to the loader.
    pub file: String,
    /// 1-based line of the offending YAML node, when known.
    pub line: Option<usize>,
    /// 1-based column of the offending YAML node, when known.
    pub column: Option<usize>,
    /// Path of the field, e.g. `descriptors[0].rate_limit.unit` (empty for the whole file).
    pub field: String,
    /// What a valid value looks like.
    pub expected: String,
    /// What the file actually holds.
    pub found: String,
}

impl ConfigError {
    /// An error at a YAML location (line 0 means the parser did not know it).
    pub(crate) fn at(
        file: &str,
        location: Location,
        field: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        let line = usize::try_from(location.line()).ok().filter(|&l| l > 0);
        let column = usize::try_from(location.column()).ok().filter(|&c| c > 0);
        Self {
            file: file.to_owned(),
            line,
            column: line.and(column),
            field: field.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// An error about a whole file or directory (I/O, size), with no position inside it.
    pub(crate) fn whole_file(
        file: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            field: String::new(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}

/// Formats `file:line:col: field: expected …, found …`, leaving out the parts that are unknown.
struct Rendered<'a>(&'a ConfigError);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(&e.file)?;
        if let Some(line) = e.line {
            write!(f, ":{line}")?;
            if let Some(column) = e.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !e.field.is_empty() {
            write!(f, "{}: ", e.field)?;
        }
        write!(f, "expected {}, found {}", e.expected, e.found)
    }
}

/// Every problem found while loading rules; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps collected errors (callers only build this when there is at least one).
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        Self { errors }
    }

    /// The errors, in file order and then in the order they were found.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are no errors (never true for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self::new(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, column: Option<usize>, field: &str) -> ConfigError {
        ConfigError {
            file: "config/api.yaml".into(),
            line,
            column,
            field: field.into(),
            expected: "one of second, minute".into(),
            found: "\"fortnight\"".into(),
        }
    }

    #[test]
    fn display_has_location_field_expected_and_found() {
        let full = error(Some(12), Some(7), "descriptors[0].rate_limit.unit");
        assert_eq!(
            full.to_string(),
            "config/api.yaml:12:7: descriptors[0].rate_limit.unit: \
             expected one of second, minute, found \"fortnight\""
        );
        assert_eq!(
            error(None, None, "").to_string(),
            "config/api.yaml: expected one of second, minute, found \"fortnight\""
        );
    }

    #[test]
    fn errors_print_one_per_line() {
        let errors = ConfigErrors::new(vec![error(Some(1), Some(1), "a"), error(None, None, "b")]);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors.to_string().lines().count(), 2);
    }
}
