//! Loading a policy file: TOML syntax, deserialization and semantic validation, with every
//! problem reported as `file:line: field: message`. It turns text into a `Policy`; it never
//! reads a file itself.

use std::fmt;

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Policy, PolicyDocument, validate};

/// The fields that identify an element of an array of tables, in the order they are tried.
pub(crate) const ID_FIELDS: [&str; 4] = ["id", "key", "category", "kind"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Item { index: usize, id: Option<String> },
}

/// Where a value sits in the policy, shown as `purposes[account].categories[2]`: an element of
/// an array of tables is named by its id, other elements by their index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        self.with(Segment::Key(key.to_owned()))
    }

    pub(crate) fn item(&self, index: usize, id: Option<&str>) -> FieldPath {
        let id = id.map(str::to_owned);
        self.with(Segment::Item { index, id })
    }

    /// The field names along the path, outermost first.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Item { .. } => None,
        })
    }

    fn with(&self, segment: Segment) -> FieldPath {
        let mut path = self.clone();
        path.0.push(segment);
        path
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Item { id: Some(id), .. } => write!(f, "[{id}]")?,
                Segment::Item { index, id: None } => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyProblem {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PolicyProblem {
            file,
            line,
            field,
            message,
        } = self;
        write!(f, "{file}:{line}: {field}: {message}")
    }
}

/// Everything wrong with a policy file: one problem for a syntax or type error, every
/// problem found for a file that parses but does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    problems: Vec<PolicyProblem>,
}

impl PolicyError {
    pub fn problems(&self) -> &[PolicyProblem] {
        &self.problems
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for PolicyError {}

pub(super) fn load(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let problem = |offset: usize, field: String, message: &str| PolicyProblem {
        file: file.to_owned(),
        line: line_at(text, offset),
        field,
        message: message.to_owned(),
    };
    let tree = DeTable::parse(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let field = key_on_line(text, offset).unwrap_or_else(|| "(document)".to_owned());
        PolicyError {
            problems: vec![problem(offset, field, error.message())],
        }
    })?;
    let document: PolicyDocument = toml::from_str(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let mut path = path_at(&tree, offset);
        if let Some(missing) = missing_field(error.message()) {
            path = path.key(missing);
        }
        PolicyError {
            problems: vec![problem(offset, path.to_string(), error.message())],
        }
    })?;
    let problems: Vec<PolicyProblem> = validate::validate(&document)
        .into_iter()
        .map(|(path, message)| problem(offset_of(&tree, &path), path.to_string(), &message))
        .collect();
    if problems.is_empty() {
        Ok(Policy(document))
    } else {
        Err(PolicyError { problems })
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

/// For a syntax error there is no tree to walk: the key written on the line, under the
/// nearest table header above it, is the best name for the field.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().take(line_at(text, offset)).collect();
    let (key, _) = lines.last()?.split_once('=')?;
    let key = key.trim();
    if key.is_empty() {
        return None;
    }
    let header = lines
        .iter()
        .rev()
        .skip(1)
        .map(|line| line.trim())
        .find(|line| line.starts_with('['));
    match header.map(|header| header.trim_matches(['[', ']'])) {
        Some(table) => Some(format!("{table}.{key}")),
        None => Some(key.to_owned()),
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The path of the last key or element that starts at or before `offset`. Spans cannot be
/// nested here: the body of a `[[table]]` lies outside the span of its header.
fn path_at(tree: &Spanned<DeTable<'_>>, offset: usize) -> FieldPath {
    fn table_starts(table: &DeTable<'_>, path: &FieldPath, starts: &mut Vec<(usize, FieldPath)>) {
        for (key, value) in table.iter() {
            let path = path.key(key.get_ref());
            starts.push((key.span().start, path.clone()));
            value_starts(value.get_ref(), &path, starts);
        }
    }
    fn value_starts(value: &DeValue<'_>, path: &FieldPath, starts: &mut Vec<(usize, FieldPath)>) {
        match value {
            DeValue::Table(table) => table_starts(table, path, starts),
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let path = path.item(index, element_id(item.get_ref()));
                    starts.push((item.span().start, path.clone()));
                    value_starts(item.get_ref(), &path, starts);
                }
            }
            _ => {}
        }
    }
    let mut starts = Vec::new();
    table_starts(tree.get_ref(), &FieldPath::default(), &mut starts);
    starts
        .into_iter()
        .filter(|(start, _)| *start <= offset)
        .max_by_key(|(start, _)| *start)
        .map(|(_, path)| path)
        .unwrap_or_default()
}

/// Where the path's innermost existing key or element starts; a field that is missing
/// points at the table that lacks it.
fn offset_of(tree: &Spanned<DeTable<'_>>, path: &FieldPath) -> usize {
    let mut offset = tree.span().start;
    let mut table = Some(tree.get_ref());
    let mut items = None;
    for segment in &path.0 {
        let found = match segment {
            Segment::Key(name) => table
                .and_then(|table| table.iter().find(|(key, _)| key.get_ref() == name))
                .map(|(key, value)| (key.span().start, value)),
            Segment::Item { index, .. } => items
                .and_then(|items: &[Spanned<DeValue<'_>>]| items.get(*index))
                .map(|item| (item.span().start, item)),
        };
        let Some((start, value)) = found else { break };
        offset = start;
        table = value.get_ref().as_table();
        items = value.get_ref().as_array().map(|array| &array[..]);
    }
    offset
}

fn element_id<'a>(value: &'a DeValue<'_>) -> Option<&'a str> {
    let table = value.as_table()?;
    ID_FIELDS.iter().find_map(|field| {
        let (_, value) = table.iter().find(|(key, _)| key.get_ref() == field)?;
        value.get_ref().as_str()
    })
}
