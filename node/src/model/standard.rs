//! Data standards: compiling a standard's JSON Schema (draft 2020-12), validating records
//! against it, and judging whether a new version of a standard is backward compatible.
//!
//! Everything here is pure: no file or network I/O. Remote `$ref`s are never fetched; a schema
//! that needs one is refused.
//!
//! A standard is compiled twice by the same `jsonschema` options: for `serde_json::Value`
//! records, and for records parsed borrowed from their text ([`borrowed_json`]), which is how
//! the publish path and the receiver judge valid records without building a `Value` per line
//! ([`CompiledStandard::check_text`]); reasons always come from the `Value` path.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::borrowed_json::{self, BorrowedJson};
use crate::model::masking::{self, FieldMask, MaskRule};

/// The only `$schema` a standard may declare.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Most record errors reported by [`CompiledStandard::validate`].
pub const MAX_RECORD_ERRORS: usize = 10;

/// Why a standard, or a step between two versions of one, was refused.
#[derive(Debug, thiserror::Error)]
pub enum StandardError {
    /// The schema is not a JSON object.
    #[error("a standard's schema must be a JSON object, found {found}")]
    NotAnObject {
        /// JSON type of what was given.
        found: &'static str,
    },
    /// `$schema` is missing or names another dialect.
    #[error("$schema must be \"{DRAFT_2020_12}\", {}", describe_meta(.found.as_deref()))]
    WrongMetaSchema {
        /// The `$schema` value found, if any (non-strings are shown as JSON).
        found: Option<String>,
    },
    /// The schema does not compile.
    #[error("invalid schema at \"{location}\": {message}")]
    Invalid {
        /// JSON pointer into the schema where the problem is ("" for the root).
        location: String,
        /// The validator's explanation.
        message: String,
    },
    /// A personal field's `x-mask` is not a rule (`redact`, `hash`, `keep:N:M`).
    #[error("property {field:?}: {message}")]
    BadMask {
        /// The property.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The top level is not `"type": "object"`.
    #[error("the top level must be \"type\": \"object\" (records of fields), found {found}")]
    NotARecordSchema {
        /// The top-level `type` found, as JSON, or "no type".
        found: String,
    },
    /// A new version is not greater than the old one.
    #[error("new version {to} must be greater than the current version {from}")]
    VersionNotIncreasing {
        /// The current version.
        from: semver::Version,
        /// The proposed version.
        to: semver::Version,
    },
    /// A minor or patch version breaks records that the old version accepts.
    #[error("{}", describe_incompatible(.from, .to, .list))]
    Incompatible {
        /// The current version.
        from: semver::Version,
        /// The proposed version.
        to: semver::Version,
        /// Every breaking change found.
        list: Vec<Incompatibility>,
    },
}

fn describe_meta(found: Option<&str>) -> String {
    match found {
        None => "but it is missing".to_owned(),
        Some(found) => format!("found {found}"),
    }
}

fn describe_incompatible(
    from: &semver::Version,
    to: &semver::Version,
    list: &[Incompatibility],
) -> String {
    let mut out = format!(
        "version {to} is not backward compatible with {from} \
         ({} breaking change(s); only a new major version may break records):",
        list.len()
    );
    for item in list {
        let _ = write!(out, "\n  {}: {}", display_path(&item.path), item.message);
    }
    out
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// A standard's schema, compiled and ready to judge records.
#[derive(Debug, Clone)]
pub struct CompiledStandard {
    validator: jsonschema::Validator,
    /// The same schema compiled for records parsed without owning their text: the verdict of
    /// [`CompiledStandard::check_text`]'s fast path.
    borrowed: jsonschema::Validator<BorrowedJson>,
    fields: Vec<FieldInfo>,
    /// `fields`' names, kept apart: every query call checks its fields against them.
    names: Vec<String>,
}

/// One top-level property of a standard: an information item (信息项) in the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldInfo {
    /// Property name as it appears in records.
    pub name: String,
    /// The property's `title`, if any.
    pub title: Option<String>,
    /// The property's `description`, if any.
    pub description: Option<String>,
    /// JSON types allowed (`"string"`, `"integer"`, ...); empty when the schema does not say.
    pub types: Vec<String>,
    /// Whether every record must carry this property.
    pub required: bool,
    /// The kind of personal data it holds (`x-personal-data`, e.g. `"id-number"`), if any: the
    /// property or anything inside it carries the annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<String>,
    /// For a personal field, the mask it leaves with unless a grant names it with another rule
    /// (`x-mask`, or the default of its kind: [`masking::default_rule`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskRule>,
}

/// One reason a record does not conform to a standard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordError {
    /// JSON pointer into the record, e.g. `"/id_number"` ("" for the record itself).
    pub path: String,
    /// What is wrong. Record values are masked as `value` so no personal data leaks into logs.
    pub message: String,
}

/// Compile a standard's schema.
///
/// Refuses a non-object, a `$schema` other than [`DRAFT_2020_12`], a schema that does not compile
/// (including unknown `format`s and any `$ref` that would need fetching), and a top level that is
/// not `"type": "object"`. Format assertions (date, date-time, email, uri, ...) are on.
pub fn compile(schema: &Value) -> Result<CompiledStandard, StandardError> {
    let root = schema.as_object().ok_or(StandardError::NotAnObject {
        found: json_type(schema),
    })?;
    match root.get("$schema") {
        Some(Value::String(s)) if s == DRAFT_2020_12 => {}
        Some(other) => {
            return Err(StandardError::WrongMetaSchema {
                found: Some(other.to_string()),
            });
        }
        None => return Err(StandardError::WrongMetaSchema { found: None }),
    }
    let validator = build::<jsonschema::json::SerdeJson>(schema)?;
    // The same options for the borrowed representation: a schema that compiled above compiles
    // here too (compiling does not depend on the instances' representation).
    let borrowed = build::<BorrowedJson>(schema)?;
    match root.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(Value::Array(ts)) if matches!(ts.as_slice(), [t] if t == "object") => {}
        Some(other) => {
            return Err(StandardError::NotARecordSchema {
                found: other.to_string(),
            });
        }
        None => {
            return Err(StandardError::NotARecordSchema {
                found: "no type".to_owned(),
            });
        }
    }
    let fields = field_infos(root)?;
    let names = fields.iter().map(|f| f.name.clone()).collect();
    Ok(CompiledStandard {
        validator,
        borrowed,
        fields,
        names,
    })
}

/// The standard's validator for records in the JSON representation `F`: draft 2020-12, format
/// assertions on, unknown formats refused.
fn build<F: jsonschema::json::Json>(
    schema: &Value,
) -> Result<jsonschema::Validator<F>, StandardError> {
    jsonschema::options_for::<F>()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        // Never fetch: with every retriever feature off this is already so, but feature
        // unification elsewhere in the build must not change it.
        .offline()
        .build(schema)
        .map_err(|e| compile_error(schema, &e))
}

fn compile_error(schema: &Value, e: &jsonschema::ValidationError<'_>) -> StandardError {
    let mut location = e.instance_path().as_str().to_owned();
    let mut message = e.to_string();
    if let jsonschema::error::ValidationErrorKind::Referencing(cause) = e.kind() {
        // The library does not say which `$ref` failed: find the one its message names.
        if let Some(at) = find_ref(schema, &message, &mut String::new(), 0) {
            location = at;
        }
        if let jsonschema::ReferencingError::Unretrievable { uri, .. } = cause {
            message = format!(
                "$ref to {uri} cannot be resolved: references outside this schema are never \
                 fetched, so put the referenced schema under \"$defs\" ({message})"
            );
        }
    }
    StandardError::Invalid { location, message }
}

/// JSON pointer of the first `$ref`/`$dynamicRef` whose target appears in `message`.
fn find_ref(value: &Value, message: &str, path: &mut String, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::Object(map) => {
            for keyword in ["$ref", "$dynamicRef"] {
                if let Some(target) = map.get(keyword).and_then(Value::as_str) {
                    let target = target.trim_start_matches('#');
                    if !target.is_empty() && message.contains(target) {
                        return Some(format!("{path}/{keyword}"));
                    }
                }
            }
            map.iter().find_map(|(key, child)| {
                let len = path.len();
                path.push('/');
                path.push_str(&escape_pointer(key));
                let found = find_ref(child, message, path, depth + 1);
                path.truncate(len);
                found
            })
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, child)| {
            let len = path.len();
            let _ = write!(path, "/{i}");
            let found = find_ref(child, message, path, depth + 1);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

impl CompiledStandard {
    /// The standard's top-level properties, in schema order.
    pub fn fields(&self) -> &[FieldInfo] {
        &self.fields
    }

    /// The JSON types this standard allows for each CSV column, in header order (none for a
    /// column it does not name): what a CSV cell is read as.
    pub fn column_types(&self, headers: &[String]) -> Vec<Vec<String>> {
        headers
            .iter()
            .map(|h| {
                self.fields()
                    .iter()
                    .find(|f| &f.name == h)
                    .map(|f| f.types.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The fields holding personal data (`x-personal-data`), in schema order.
    pub fn personal_fields(&self) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|f| f.personal.is_some())
            .map(|f| f.name.as_str())
            .collect()
    }

    /// The mask each personal field leaves with unless a grant names it with another rule.
    pub fn default_masks(&self) -> Vec<FieldMask> {
        self.fields
            .iter()
            .filter_map(|f| {
                f.mask.map(|rule| FieldMask {
                    field: f.name.clone(),
                    rule,
                })
            })
            .collect()
    }

    /// Every field name, in schema order.
    pub fn field_names(&self) -> &[String] {
        &self.names
    }

    /// Check a record; on failure, the first [`MAX_RECORD_ERRORS`] reasons.
    pub fn validate(&self, record: &Value) -> Result<(), Vec<RecordError>> {
        if self.validator.is_valid(record) {
            return Ok(());
        }
        let errors: Vec<RecordError> = self
            .validator
            .iter_errors(record)
            .take(MAX_RECORD_ERRORS)
            .map(|e| record_error(&e))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Whether a record conforms, without collecting reasons (stops at the first fault).
    pub fn is_valid(&self, record: &Value) -> bool {
        self.validator.is_valid(record)
    }

    /// Check a record given as JSON text (one line of JSON Lines, trimmed): `Err` when it is not
    /// JSON (serde_json's error), else [`CompiledStandard::validate`]'s verdict on the parsed
    /// record, with the same reasons.
    ///
    /// A valid record is judged on a borrowed parse ([`borrowed_json`]), with no owned `Value`
    /// built; anything else (an invalid record, a key twice, text that is not JSON) is parsed
    /// into a `Value` and judged by [`CompiledStandard::validate`].
    pub fn check_text(
        &self,
        text: &str,
    ) -> Result<Result<(), Vec<RecordError>>, serde_json::Error> {
        if self.is_valid_text(text) {
            return Ok(Ok(()));
        }
        let record: Value = serde_json::from_str(text)?;
        Ok(self.validate(&record))
    }

    /// The fast path of [`CompiledStandard::check_text`]: true only when `text` parses borrowed
    /// (see [`borrowed_json::parse`]) and the record conforms. False says nothing more: the
    /// owned path decides.
    pub fn is_valid_text(&self, text: &str) -> bool {
        borrowed_json::parse(text).is_some_and(|raw| self.is_valid_raw(&raw))
    }

    /// Whether a record parsed borrowed conforms: [`CompiledStandard::is_valid`]'s verdict on
    /// the same record as a `Value`.
    pub fn is_valid_raw(&self, record: &borrowed_json::Raw<'_>) -> bool {
        self.borrowed.is_valid(record)
    }
}

fn record_error(e: &jsonschema::ValidationError<'_>) -> RecordError {
    let mut path = e.instance_path().as_str().to_owned();
    if let jsonschema::error::ValidationErrorKind::Required {
        property: Value::String(name),
    } = e.kind()
    {
        path.push('/');
        path.push_str(&escape_pointer(name));
    }
    RecordError {
        path,
        message: e.masked().to_string(),
    }
}

fn field_infos(root: &Map<String, Value>) -> Result<Vec<FieldInfo>, StandardError> {
    let required: Vec<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = root.get("properties").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    props
        .iter()
        .map(|(name, prop)| {
            let text = |key: &str| prop.get(key).and_then(Value::as_str).map(str::to_owned);
            // A property that is only a local `$ref` takes its type from the target.
            let typed = match prop.get("$ref").and_then(Value::as_str) {
                Some(r) if prop.get("type").is_none() => r
                    .strip_prefix('#')
                    .and_then(|pointer| resolve_local(root, pointer))
                    .unwrap_or(prop),
                _ => prop,
            };
            let types = declared_types(typed).unwrap_or_default();
            let personal = personal_kind(prop, 0).or_else(|| personal_kind(typed, 0));
            let mask = match &personal {
                None => None,
                Some(kind) => Some(field_mask(name, prop, kind, &types)?),
            };
            Ok(FieldInfo {
                name: name.clone(),
                title: text("title"),
                description: text("description"),
                types,
                required: required.contains(&name.as_str()),
                personal,
                mask,
            })
        })
        .collect()
}

/// The kind of personal data `schema` or anything inside it is annotated with: the annotation's
/// text, `"personal"` when it is not a string; `false` means not personal. Masking works on
/// top-level fields only, so a personal value nested anywhere makes its whole field personal.
fn personal_kind(schema: &Value, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match schema {
        Value::Object(map) => {
            match map.get(masking::PERSONAL_DATA_KEY) {
                None | Some(Value::Bool(false)) => {}
                Some(Value::String(kind)) => return Some(kind.clone()),
                Some(_) => return Some("personal".to_owned()),
            }
            map.values().find_map(|v| personal_kind(v, depth + 1))
        }
        Value::Array(items) => items.iter().find_map(|v| personal_kind(v, depth + 1)),
        _ => None,
    }
}

/// The default mask of personal field `name`: its `x-mask`, or the default of its kind. An
/// `x-mask` that is not a rule, or a keep or hash on a field whose values may be other than
/// strings and numbers, is refused: a standard cannot let a personal field leave in clear.
fn field_mask(
    name: &str,
    prop: &Value,
    kind: &str,
    types: &[String],
) -> Result<MaskRule, StandardError> {
    let Some(given) = prop.get(masking::MASK_KEY) else {
        return Ok(masking::default_rule(kind, types));
    };
    let bad = |message: String| StandardError::BadMask {
        field: name.to_owned(),
        message,
    };
    let text = given.as_str().ok_or_else(|| {
        bad(format!(
            "{} must be a string such as \"keep:6:4\"",
            masking::MASK_KEY
        ))
    })?;
    let rule: MaskRule = text
        .parse()
        .map_err(|e: masking::MaskError| bad(e.to_string()))?;
    // The default of a known kind is redact only for values other than strings and numbers.
    if rule != MaskRule::Redact && masking::default_rule("name", types) == MaskRule::Redact {
        return Err(bad(format!(
            "{} {text:?}: only redact masks values that are not strings or numbers",
            masking::MASK_KEY
        )));
    }
    Ok(rule)
}

fn resolve_local<'a>(root: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut segments = pointer.strip_prefix('/')?.split('/');
    let first = unescape_pointer(segments.next()?);
    let mut current = root.get(first.as_ref())?;
    for segment in segments {
        let segment = unescape_pointer(segment);
        current = match current {
            Value::Object(map) => map.get(segment.as_ref())?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn declared_types(schema: &Value) -> Option<Vec<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn escape_pointer(segment: &str) -> Cow<'_, str> {
    if segment.contains(['~', '/']) {
        Cow::Owned(segment.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(segment)
    }
}

fn unescape_pointer(segment: &str) -> Cow<'_, str> {
    if segment.contains('~') {
        Cow::Owned(segment.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(segment)
    }
}

// ---------------------------------------------------------------------------------------------
// Compatibility between versions
// ---------------------------------------------------------------------------------------------

/// What kind of breaking change an [`Incompatibility`] is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum IncompatibilityKind {
    /// A property was removed.
    PropertyRemoved,
    /// A property became required (also conditionally, through `dependentRequired`).
    NewlyRequired,
    /// `additionalProperties` went from open (true or absent) to false or to a schema.
    AdditionalPropertiesClosed,
    /// Fewer JSON types are accepted (e.g. `["string","null"]` → `"string"`).
    TypeNarrowed,
    /// An `enum` was added or lost values.
    EnumNarrowed,
    /// A `pattern` was added or changed.
    PatternStricter,
    /// A `format` was added or changed.
    FormatAdded,
    /// A bound was tightened: a max lowered, a min raised, one added, or `uniqueItems` turned on.
    BoundTightened,
    /// `multipleOf` was added or changed to a value the old one is not a multiple of.
    MultipleOfChanged,
    /// A `const` was added or changed.
    ConstAdded,
    /// A keyword this structural check cannot compare (`allOf`, `$ref`, `if`, ...) was added or
    /// changed, so compatibility is unproven.
    Unverifiable,
}

/// One way in which a new version of a standard may reject a record the old version accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incompatibility {
    /// JSON pointer into the schema of the property or subschema concerned, e.g.
    /// `"/properties/address/properties/city"` ("" for the root).
    pub path: String,
    /// What kind of change it is.
    pub kind: IncompatibilityKind,
    /// A plain explanation.
    pub message: String,
}

/// Ways `new` may reject records that `old` accepts; empty when, as far as a structural check can
/// tell, `new` accepts every record `old` accepts.
///
/// Properties that are new in `new` are assumed absent from old records, so adding an optional
/// property is compatible; removing a property is reported even though the removal alone loosens
/// validation, since consumers lose an information item.
pub fn compatibility(old: &Value, new: &Value) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    compare(old, new, &mut String::new(), 0, &mut out);
    out
}

/// Check that `new_version` of a standard may follow `old_version`.
///
/// The version must increase (build metadata does not count). A new major version may change
/// anything; a new minor or patch version must be backward compatible (see [`compatibility`]).
pub fn check_version_step(
    old_version: &semver::Version,
    old: &Value,
    new_version: &semver::Version,
    new: &Value,
) -> Result<(), StandardError> {
    if new_version.cmp_precedence(old_version) != std::cmp::Ordering::Greater {
        return Err(StandardError::VersionNotIncreasing {
            from: old_version.clone(),
            to: new_version.clone(),
        });
    }
    if new_version.major > old_version.major {
        return Ok(());
    }
    let list = compatibility(old, new);
    if list.is_empty() {
        Ok(())
    } else {
        Err(StandardError::Incompatible {
            from: old_version.clone(),
            to: new_version.clone(),
            list,
        })
    }
}

/// Deeper than this, schemas are not compared but reported as unverifiable.
const MAX_DEPTH: usize = 64;

/// Keywords whose effect this check cannot compare structurally: any addition or change in
/// `new` is reported as [`IncompatibilityKind::Unverifiable`]; removal only loosens.
const OPAQUE_KEYWORDS: &[&str] = &[
    "$ref",
    "$dynamicRef",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
    "contains",
];

/// Count bounds: (keyword, what it bounds, is an upper bound, value when absent).
const COUNT_BOUNDS: &[(&str, &str, bool, Option<f64>)] = &[
    ("maxLength", "maximum string length", true, None),
    ("maxItems", "maximum number of items", true, None),
    ("maxProperties", "maximum number of properties", true, None),
    (
        "maxContains",
        "maximum number of matching items",
        true,
        None,
    ),
    ("minLength", "minimum string length", false, Some(0.0)),
    ("minItems", "minimum number of items", false, Some(0.0)),
    (
        "minProperties",
        "minimum number of properties",
        false,
        Some(0.0),
    ),
    (
        "minContains",
        "minimum number of matching items",
        false,
        Some(1.0),
    ),
];

struct Found<'a> {
    out: &'a mut Vec<Incompatibility>,
    path: &'a str,
}

impl Found<'_> {
    fn push(&mut self, kind: IncompatibilityKind, message: String) {
        self.out.push(Incompatibility {
            path: self.path.to_owned(),
            kind,
            message,
        });
    }
}

fn compare(
    old: &Value,
    new: &Value,
    path: &mut String,
    depth: usize,
    out: &mut Vec<Incompatibility>,
) {
    let empty = Map::new();
    let old = match old {
        Value::Bool(false) => return, // old accepts nothing, so anything is compatible
        Value::Object(map) => map,
        _ => &empty,
    };
    let new = match new {
        Value::Object(map) => map,
        Value::Bool(false) => {
            Found { out, path }.push(
                IncompatibilityKind::TypeNarrowed,
                "no value is accepted any more (schema is false)".to_owned(),
            );
            return;
        }
        _ => &empty,
    };
    if depth > MAX_DEPTH {
        if old != new {
            Found { out, path }.push(
                IncompatibilityKind::Unverifiable,
                format!("schema nested deeper than {MAX_DEPTH} levels changed"),
            );
        }
        return;
    }
    {
        let mut found = Found { out, path };
        compare_types(old, new, &mut found);
        compare_values(old, new, &mut found);
        compare_strings(old, new, &mut found);
        compare_bounds(old, new, &mut found);
        compare_required(old, new, &mut found);
        for keyword in OPAQUE_KEYWORDS {
            let Some(new_value) = new.get(*keyword) else {
                continue;
            };
            let change = match old.get(*keyword) {
                Some(old_value) if old_value == new_value => continue,
                Some(_) => "changed",
                None => "added",
            };
            found.push(
                IncompatibilityKind::Unverifiable,
                format!("\"{keyword}\" {change}; compatibility cannot be checked structurally"),
            );
        }
    }
    compare_properties(old, new, path, depth, out);
    let true_schema = Value::Bool(true);
    if let Some(new_items) = new.get("items") {
        let old_items = old.get("items").unwrap_or(&true_schema);
        with_segment(path, "items", |path| {
            compare(old_items, new_items, path, depth + 1, out)
        });
    }
    for defs in ["$defs", "definitions"] {
        let (Some(old_defs), Some(new_defs)) = (
            old.get(defs).and_then(Value::as_object),
            new.get(defs).and_then(Value::as_object),
        ) else {
            continue;
        };
        with_segment(path, defs, |path| {
            for (name, old_def) in old_defs {
                if let Some(new_def) = new_defs.get(name) {
                    with_segment(path, name, |path| {
                        compare(old_def, new_def, path, depth + 1, out);
                    });
                }
            }
        });
    }
}

fn with_segment(path: &mut String, segment: &str, f: impl FnOnce(&mut String)) {
    let len = path.len();
    path.push('/');
    path.push_str(&escape_pointer(segment));
    f(path);
    path.truncate(len);
}

fn compare_properties(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    path: &mut String,
    depth: usize,
    out: &mut Vec<Incompatibility>,
) {
    let empty = Map::new();
    let old_props = old
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new_props = new
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    with_segment(path, "properties", |path| {
        for (name, old_prop) in old_props {
            with_segment(path, name, |path| match new_props.get(name) {
                None => Found { out, path }.push(
                    IncompatibilityKind::PropertyRemoved,
                    format!("property \"{name}\" was removed"),
                ),
                Some(new_prop) => compare(old_prop, new_prop, path, depth + 1, out),
            });
        }
    });

    let is_open = |v: Option<&Value>| match v {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    };
    let old_ap = old.get("additionalProperties");
    let new_ap = new.get("additionalProperties");
    if is_open(new_ap) {
        return;
    }
    if is_open(old_ap) {
        let what = if new_ap == Some(&Value::Bool(false)) {
            "additionalProperties is now false: properties not listed are refused"
        } else {
            "additionalProperties now constrains properties not listed"
        };
        Found { out, path }.push(
            IncompatibilityKind::AdditionalPropertiesClosed,
            what.to_owned(),
        );
    } else if let (Some(old_ap), Some(new_ap)) = (old_ap, new_ap) {
        with_segment(path, "additionalProperties", |path| {
            compare(old_ap, new_ap, path, depth + 1, out);
        });
    }
}

fn compare_required(old: &Map<String, Value>, new: &Map<String, Value>, found: &mut Found<'_>) {
    let names = |schema: &Map<String, Value>| -> Vec<String> {
        schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let old_required = names(old);
    for name in names(new) {
        if !old_required.contains(&name) {
            found.push(
                IncompatibilityKind::NewlyRequired,
                format!("property \"{name}\" is now required"),
            );
        }
    }
    let empty = Map::new();
    let old_dep = old
        .get("dependentRequired")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(new_dep) = new.get("dependentRequired").and_then(Value::as_object) else {
        return;
    };
    for (trigger, new_list) in new_dep {
        let old_list = old_dep.get(trigger).and_then(Value::as_array);
        for name in new_list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !old_list.is_some_and(|l| l.iter().any(|v| v == name)) {
                found.push(
                    IncompatibilityKind::NewlyRequired,
                    format!("property \"{name}\" is now required when \"{trigger}\" is present"),
                );
            }
        }
    }
}

/// The JSON types a schema accepts, `None` meaning all of them.
fn accepted_types(schema: &Map<String, Value>) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn type_accepted(ty: &str, accepted: &[&str]) -> bool {
    accepted.contains(&ty) || (ty == "integer" && accepted.contains(&"number"))
}

fn compare_types(old: &Map<String, Value>, new: &Map<String, Value>, found: &mut Found<'_>) {
    let Some(new_types) = accepted_types(new) else {
        return;
    };
    // When old only allows listed values, only their types matter.
    let old_types: Vec<&str> = match (allowed_values(old), accepted_types(old)) {
        (Some(values), _) => values.iter().map(|v| json_type(v)).collect(),
        (None, Some(types)) => types,
        (None, None) => vec!["null", "boolean", "number", "string", "array", "object"],
    };
    let mut lost: Vec<&str> = Vec::new();
    for ty in old_types {
        let gone = if ty == "number" && new_types.contains(&"integer") {
            "non-integer number"
        } else {
            ty
        };
        if !type_accepted(ty, &new_types) && !lost.contains(&gone) {
            lost.push(gone);
        }
    }
    if !lost.is_empty() {
        found.push(
            IncompatibilityKind::TypeNarrowed,
            format!(
                "type narrowed to {}: {} no longer accepted",
                Value::from(new_types),
                lost.join(", ")
            ),
        );
    }
}

/// The values a schema allows through `const` and `enum`, `None` meaning any.
fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<&Value>> {
    let from_enum = schema.get("enum").and_then(Value::as_array);
    match (schema.get("const"), from_enum) {
        (Some(c), None) => Some(vec![c]),
        (Some(c), Some(e)) => Some(if e.iter().any(|v| json_eq(v, c)) {
            vec![c]
        } else {
            vec![]
        }),
        (None, Some(e)) => Some(e.iter().collect()),
        (None, None) => None,
    }
}

/// JSON equality as JSON Schema defines it: numbers compare by value (1 equals 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn compare_values(old: &Map<String, Value>, new: &Map<String, Value>, found: &mut Found<'_>) {
    let Some(new_values) = allowed_values(new) else {
        return;
    };
    let kind = if new.contains_key("const") {
        IncompatibilityKind::ConstAdded
    } else {
        IncompatibilityKind::EnumNarrowed
    };
    let keyword = if kind == IncompatibilityKind::ConstAdded {
        "const"
    } else {
        "enum"
    };
    match allowed_values(old) {
        None => found.push(
            kind,
            format!(
                "{keyword} added: only {} allowed now",
                list_values(&new_values)
            ),
        ),
        Some(old_values) => {
            let removed: Vec<&Value> = old_values
                .into_iter()
                .filter(|v| !new_values.iter().any(|n| json_eq(v, n)))
                .collect();
            if !removed.is_empty() {
                found.push(
                    kind,
                    format!("{keyword} no longer allows {}", list_values(&removed)),
                );
            }
        }
    }
}

fn list_values(values: &[&Value]) -> String {
    const SHOWN: usize = 10;
    let mut out = values
        .iter()
        .take(SHOWN)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        let _ = write!(out, " and {} more", values.len() - SHOWN);
    }
    if out.is_empty() {
        "no value".to_owned()
    } else {
        out
    }
}

fn compare_strings(old: &Map<String, Value>, new: &Map<String, Value>, found: &mut Found<'_>) {
    for (keyword, kind) in [
        ("pattern", IncompatibilityKind::PatternStricter),
        ("format", IncompatibilityKind::FormatAdded),
    ] {
        let Some(new_value) = new.get(keyword) else {
            continue;
        };
        match old.get(keyword) {
            None => found.push(kind, format!("{keyword} {new_value} added")),
            Some(old_value) if old_value != new_value => found.push(
                kind,
                format!("{keyword} changed from {old_value} to {new_value}"),
            ),
            Some(_) => {}
        }
    }
}

/// A numeric bound: the limit and whether it is exclusive.
type Bound = (f64, bool);

/// The tightest of `inclusive` and `exclusive` keywords; `upper` picks the smaller limit.
fn numeric_bound(
    schema: &Map<String, Value>,
    inclusive: &str,
    exclusive: &str,
    upper: bool,
) -> Option<Bound> {
    let inc = schema
        .get(inclusive)
        .and_then(Value::as_f64)
        .map(|v| (v, false));
    let exc = schema
        .get(exclusive)
        .and_then(Value::as_f64)
        .map(|v| (v, true));
    match (inc, exc) {
        (Some(i), Some(e)) => Some(if tighter(e, i, upper) { e } else { i }),
        (a, b) => a.or(b),
    }
}

/// Whether bound `a` admits strictly fewer values than bound `b`.
fn tighter(a: Bound, b: Bound, upper: bool) -> bool {
    if a.0 == b.0 {
        a.1 && !b.1
    } else if upper {
        a.0 < b.0
    } else {
        a.0 > b.0
    }
}

fn show_bound(bound: Option<Bound>, upper: bool) -> String {
    match bound {
        None => "none".to_owned(),
        Some((v, exclusive)) => {
            let op = match (upper, exclusive) {
                (true, false) => "<=",
                (true, true) => "<",
                (false, false) => ">=",
                (false, true) => ">",
            };
            format!("{op} {}", show_number(Some(v)))
        }
    }
}

/// A limit for messages: integers without a fraction, "none" when absent.
fn show_number(value: Option<f64>) -> String {
    match value {
        None => "none".to_owned(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => v.to_string(),
    }
}

fn compare_bounds(old: &Map<String, Value>, new: &Map<String, Value>, found: &mut Found<'_>) {
    for (inclusive, exclusive, upper) in [
        ("maximum", "exclusiveMaximum", true),
        ("minimum", "exclusiveMinimum", false),
    ] {
        let Some(new_bound) = numeric_bound(new, inclusive, exclusive, upper) else {
            continue;
        };
        let old_bound = numeric_bound(old, inclusive, exclusive, upper);
        if old_bound.is_none_or(|old_bound| tighter(new_bound, old_bound, upper)) {
            found.push(
                IncompatibilityKind::BoundTightened,
                format!(
                    "{inclusive} tightened from {} to {}",
                    show_bound(old_bound, upper),
                    show_bound(Some(new_bound), upper)
                ),
            );
        }
    }
    for &(keyword, what, upper, default) in COUNT_BOUNDS {
        let Some(new_limit) = new.get(keyword).and_then(Value::as_f64) else {
            continue;
        };
        let old_limit = old.get(keyword).and_then(Value::as_f64).or(default);
        let stricter = match old_limit {
            None => true,
            Some(old_limit) if upper => new_limit < old_limit,
            Some(old_limit) => new_limit > old_limit,
        };
        if stricter {
            found.push(
                IncompatibilityKind::BoundTightened,
                format!(
                    "{keyword} ({what}) changed from {} to {}",
                    show_number(old_limit),
                    show_number(Some(new_limit))
                ),
            );
        }
    }
    if new.get("uniqueItems") == Some(&Value::Bool(true))
        && old.get("uniqueItems") != Some(&Value::Bool(true))
    {
        found.push(
            IncompatibilityKind::BoundTightened,
            "uniqueItems turned on: repeated items are refused".to_owned(),
        );
    }
    if let Some(new_step) = new.get("multipleOf").and_then(Value::as_f64) {
        let old_step = old.get("multipleOf").and_then(Value::as_f64);
        if !old_step.is_some_and(|old_step| is_multiple(old_step, new_step)) {
            found.push(
                IncompatibilityKind::MultipleOfChanged,
                format!(
                    "multipleOf changed from {} to {}",
                    show_number(old_step),
                    show_number(Some(new_step))
                ),
            );
        }
    }
}

/// Whether every multiple of `old` is a multiple of `new` (old is an integer multiple of new).
fn is_multiple(old: f64, new: f64) -> bool {
    if new <= 0.0 || old <= 0.0 {
        return false;
    }
    let ratio = old / new;
    ratio >= 1.0 - 1e-9 && (ratio - ratio.round()).abs() <= 1e-9 * ratio.max(1.0)
}

/// The schema a masked delivery's records satisfy: the standard restricted to the granted
/// `fields` (no others allowed), each `masked` field's own rule replaced by "a string or null"
/// (masking turns values into strings and keeps nulls), and only granted fields required.
/// `$defs` and the other top-level keywords are kept, so unmasked fields are checked exactly as
/// the standard says.
pub fn project_schema(schema: &Value, fields: &[String], masked: &[String]) -> Value {
    let mut out = match schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let original = out
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut properties = Map::new();
    for f in fields {
        let rule = if masked.contains(f) {
            serde_json::json!({"type": ["string", "null"]})
        } else {
            original.get(f).cloned().unwrap_or(Value::Bool(true))
        };
        properties.insert(f.clone(), rule);
    }
    out.insert("properties".into(), Value::Object(properties));
    let required: Vec<Value> = out
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter(|v| v.as_str().is_some_and(|s| fields.iter().any(|f| f == s)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    out.insert("required".into(), Value::Array(required));
    out.insert("additionalProperties".into(), Value::Bool(false));
    for k in [
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "allOf",
        "anyOf",
        "oneOf",
        "if",
        "then",
        "else",
        "not",
        "unevaluatedProperties",
        "minProperties",
        "maxProperties",
    ] {
        // Whole-record rules may name fields that were not delivered.
        out.remove(k);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn person() -> Value {
        json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": {
                "id_number": {
                    "title": "公民身份号码",
                    "type": "string",
                    "pattern": "^[0-9]{17}[0-9X]$"
                },
                "name": { "title": "姓名", "type": "string", "maxLength": 50 },
                "birth_date": { "type": "string", "format": "date" },
                "email": { "type": ["string", "null"], "format": "email" },
                "address": {
                    "type": "object",
                    "properties": { "city": { "type": "string" }, "zip": { "type": "integer" } },
                    "required": ["city"]
                },
                "code": { "$ref": "#/$defs/code" }
            },
            "required": ["id_number", "name"],
            "$defs": { "code": { "type": "string", "description": "a code" } }
        })
    }

    fn refused(schema: &Value) -> Result<StandardError, Box<dyn std::error::Error>> {
        match compile(schema) {
            Ok(_) => Err(format!("schema was accepted: {schema}").into()),
            Err(e) => Ok(e),
        }
    }

    fn record_errors(standard: &CompiledStandard, record: &Value) -> Vec<RecordError> {
        standard.validate(record).err().unwrap_or_default()
    }

    #[test]
    fn compiled_standard_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<CompiledStandard>();
    }

    #[test]
    fn valid_schema_compiles_and_lists_fields() -> TestResult {
        let standard = compile(&person())?;
        let fields = standard.fields();
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id_number",
                "name",
                "birth_date",
                "email",
                "address",
                "code"
            ]
        );
        assert_eq!(fields[0].title.as_deref(), Some("公民身份号码"));
        assert!(fields[0].required);
        assert!(!fields[2].required);
        assert_eq!(fields[3].types, ["string", "null"]);
        assert_eq!(fields[4].types, ["object"]);
        assert_eq!(
            fields[5].types,
            ["string"],
            "type taken from the $ref target"
        );
        Ok(())
    }

    #[test]
    fn personal_fields_carry_their_default_mask() -> TestResult {
        let text = crate::samples::schema_json("enterprise-licence").ok_or("no sample")?;
        let compiled = compile(&serde_json::from_str(text)?)?;
        assert_eq!(
            compiled.personal_fields(),
            ["legal_representative", "legal_representative_id_number"]
        );
        let masks: Vec<String> = compiled
            .default_masks()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            masks,
            [
                "legal_representative=keep:1:0",
                "legal_representative_id_number=keep:6:4"
            ]
        );
        let id = &compiled.fields()[4];
        assert_eq!(id.personal.as_deref(), Some("id-number"));
        assert!(compiled.fields()[0].personal.is_none() && compiled.fields()[0].mask.is_none());
        Ok(())
    }

    #[test]
    fn x_mask_chooses_the_default_and_a_nested_mark_makes_the_field_personal() -> TestResult {
        let mut schema = person();
        schema["properties"]["id_number"]["x-personal-data"] = json!("id-number");
        schema["properties"]["id_number"]["x-mask"] = json!("keep:3:4");
        schema["properties"]["name"]["x-personal-data"] = json!(true);
        schema["properties"]["address"]["properties"]["city"]["x-personal-data"] = json!("address");
        schema["properties"]["email"]["x-personal-data"] = json!(false);
        let compiled = compile(&schema)?;
        let masks: Vec<String> = compiled
            .default_masks()
            .iter()
            .map(ToString::to_string)
            .collect();
        // The name's kind is unknown (`true`): redacted; the address may be an object: redacted.
        assert_eq!(
            masks,
            ["id_number=keep:3:4", "name=redact", "address=redact"]
        );
        Ok(())
    }

    #[test]
    fn an_x_mask_that_is_no_rule_or_cannot_mask_the_field_is_refused() -> TestResult {
        for (field, mask, says) in [
            ("id_number", json!("clear"), "unknown rule"),
            ("id_number", json!(6), "must be a string"),
            ("address", json!("hash"), "only redact"),
        ] {
            let mut schema = person();
            schema["properties"][field]["x-personal-data"] = json!("x");
            schema["properties"][field]["x-mask"] = mask;
            match compile(&schema) {
                Err(e @ StandardError::BadMask { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(says) && text.contains(field), "{text}");
                }
                other => return Err(format!("{field}: {other:?}").into()),
            }
        }
        Ok(())
    }

    #[test]
    fn missing_or_wrong_meta_schema_is_refused() -> TestResult {
        let mut schema = person();
        if let Some(map) = schema.as_object_mut() {
            map.remove("$schema");
        }
        let e = refused(&schema)?;
        assert!(
            matches!(e, StandardError::WrongMetaSchema { found: None }),
            "{e}"
        );
        assert!(e.to_string().contains("missing"), "{e}");

        schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        let e = refused(&schema)?;
        assert!(e.to_string().contains("draft-07"), "{e}");
        Ok(())
    }

    #[test]
    fn non_object_schema_is_refused() -> TestResult {
        let e = refused(&json!([1, 2]))?;
        assert!(
            matches!(e, StandardError::NotAnObject { found: "array" }),
            "{e}"
        );
        let e = refused(&json!(true))?;
        assert!(e.to_string().contains("boolean"), "{e}");
        Ok(())
    }

    #[test]
    fn schema_that_does_not_compile_is_refused_with_location() -> TestResult {
        let e = refused(&json!({ "$schema": DRAFT_2020_12, "type": 5 }))?;
        match &e {
            StandardError::Invalid { location, message } => {
                assert_eq!(location, "/type", "{e}");
                assert!(!message.is_empty());
            }
            other => return Err(format!("unexpected error: {other}").into()),
        }
        assert!(e.to_string().contains("/type"), "{e}");

        let nested = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": { "a": { "minLength": -1 } }
        });
        let e = refused(&nested)?;
        assert!(e.to_string().contains("/properties/a/minLength"), "{e}");
        Ok(())
    }

    #[test]
    fn remote_ref_is_refused_not_fetched() -> TestResult {
        let schema = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": { "a": { "$ref": "https://example.invalid/schemas/a.json" } }
        });
        let e = refused(&schema)?;
        let text = e.to_string();
        match &e {
            StandardError::Invalid { location, message } => {
                assert_eq!(location, "/properties/a/$ref", "{text}");
                assert!(
                    message.contains("https://example.invalid/schemas/a.json"),
                    "{text}"
                );
                assert!(message.contains("never fetched"), "{text}");
            }
            other => return Err(format!("unexpected error: {other}").into()),
        }

        let file =
            json!({ "$schema": DRAFT_2020_12, "type": "object", "$ref": "file:///etc/passwd" });
        let e = refused(&file)?;
        assert!(e.to_string().contains("file:///etc/passwd"), "{e}");
        Ok(())
    }

    #[test]
    fn unresolvable_local_ref_and_unknown_format_are_refused() -> TestResult {
        let schema = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": { "a": { "$ref": "#/$defs/missing" } }
        });
        let e = refused(&schema)?;
        assert!(e.to_string().contains("/properties/a/$ref"), "{e}");
        let schema = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": { "a": { "type": "string", "format": "data-time" } }
        });
        let e = refused(&schema)?;
        assert!(e.to_string().contains("data-time"), "{e}");
        Ok(())
    }

    #[test]
    fn top_level_must_be_an_object_type() -> TestResult {
        let e = refused(&json!({ "$schema": DRAFT_2020_12, "type": "string" }))?;
        assert!(matches!(e, StandardError::NotARecordSchema { .. }), "{e}");
        let e = refused(&json!({ "$schema": DRAFT_2020_12, "properties": {} }))?;
        assert!(e.to_string().contains("no type"), "{e}");
        compile(&json!({ "$schema": DRAFT_2020_12, "type": ["object"] }))?;
        Ok(())
    }

    #[test]
    fn valid_record_passes() -> TestResult {
        let standard = compile(&person())?;
        let record = json!({
            "id_number": "11010519491231002X",
            "name": "张三",
            "birth_date": "1949-12-31",
            "email": null,
            "address": { "city": "上海", "zip": 200000 },
            "code": "A1"
        });
        assert_eq!(standard.validate(&record), Ok(()));
        assert!(standard.is_valid(&record));
        Ok(())
    }

    #[test]
    fn record_errors_carry_pointer_paths() -> TestResult {
        let standard = compile(&person())?;
        let record = json!({
            "id_number": "12345",
            "birth_date": "1949-13-45",
            "email": "not an email",
            "address": { "city": 7 }
        });
        assert!(!standard.is_valid(&record));
        let errors = record_errors(&standard, &record);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "/id_number",
            "/name",
            "/birth_date",
            "/email",
            "/address/city",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {errors:?}"
            );
        }
        let message = |path: &str| {
            errors
                .iter()
                .find(|e| e.path == path)
                .map(|e| e.message.clone())
                .unwrap_or_default()
        };
        assert!(message("/name").contains("required"), "{errors:?}");
        assert!(message("/birth_date").contains("date"), "{errors:?}");
        assert!(
            message("/id_number").contains("^[0-9]{17}[0-9X]$"),
            "{errors:?}"
        );
        assert!(message("/address/city").contains("string"), "{errors:?}");
        // Record values (personal data) do not appear in messages.
        for e in &errors {
            assert!(
                !e.message.contains("12345") && !e.message.contains("1949"),
                "{e:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn patterns_use_ecma_semantics_and_formats_assert() -> TestResult {
        let schema = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": {
                "digits": { "type": "string", "pattern": "^\\d{3}$" },
                "day": { "type": "string", "format": "date" },
                "at": { "type": "string", "format": "date-time" },
                "link": { "type": "string", "format": "uri" }
            }
        });
        let standard = compile(&schema)?;
        assert!(standard.is_valid(&json!({ "digits": "123", "day": "2024-02-29" })));
        // `\d` is ASCII digits only, as in ECMA-262: full-width digits do not match.
        assert!(!standard.is_valid(&json!({ "digits": "１２３" })));
        assert!(!standard.is_valid(&json!({ "day": "2023-02-29" })));
        assert!(!standard.is_valid(&json!({ "at": "2024-01-01 08:00" })));
        assert!(standard.is_valid(&json!({ "at": "2024-01-01T08:00:00+08:00" })));
        assert!(!standard.is_valid(&json!({ "link": "not a uri" })));
        Ok(())
    }

    #[test]
    fn at_most_ten_errors_are_reported() -> TestResult {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for i in 0..30 {
            properties.insert(format!("f{i}"), json!({ "type": "string" }));
            required.push(json!(format!("f{i}")));
        }
        let schema = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": properties,
            "required": required
        });
        let standard = compile(&schema)?;
        assert_eq!(
            record_errors(&standard, &json!({})).len(),
            MAX_RECORD_ERRORS
        );
        Ok(())
    }

    // ---- compatibility -------------------------------------------------------------------

    fn schema_with(properties: Value, extra: Value) -> Value {
        let mut schema = json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": properties
        });
        if let (Some(map), Value::Object(extra)) = (schema.as_object_mut(), extra) {
            map.extend(extra);
        }
        schema
    }

    /// Compatibility of a one-property schema `{"p": old}` → `{"p": new}`.
    fn prop_change(old: Value, new: Value) -> Vec<Incompatibility> {
        compatibility(
            &schema_with(json!({ "p": old }), json!({})),
            &schema_with(json!({ "p": new }), json!({})),
        )
    }

    fn assert_one(found: &[Incompatibility], kind: IncompatibilityKind, path: &str) {
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, kind, "{found:#?}");
        assert_eq!(found[0].path, path, "{found:#?}");
        assert!(!found[0].message.is_empty());
    }

    #[test]
    fn identical_schemas_are_compatible() {
        assert_eq!(compatibility(&person(), &person()), []);
    }

    #[test]
    fn property_removed() {
        let old = schema_with(json!({ "a": { "type": "string" }, "b": {} }), json!({}));
        let new = schema_with(json!({ "a": { "type": "string" } }), json!({}));
        let found = compatibility(&old, &new);
        assert_one(
            &found,
            IncompatibilityKind::PropertyRemoved,
            "/properties/b",
        );
        assert!(found[0].message.contains("\"b\""));
    }

    #[test]
    fn property_newly_required() {
        let props = json!({ "a": { "type": "string" } });
        let old = schema_with(props.clone(), json!({}));
        let new = schema_with(props, json!({ "required": ["a"] }));
        assert_one(
            &compatibility(&old, &new),
            IncompatibilityKind::NewlyRequired,
            "",
        );

        let old = schema_with(json!({}), json!({ "dependentRequired": { "a": ["b"] } }));
        let new = schema_with(
            json!({}),
            json!({ "dependentRequired": { "a": ["b", "c"] } }),
        );
        assert_one(
            &compatibility(&old, &new),
            IncompatibilityKind::NewlyRequired,
            "",
        );
    }

    #[test]
    fn additional_properties_closed() {
        let props = json!({ "a": { "type": "string" } });
        let old = schema_with(props.clone(), json!({}));
        for closed in [json!(false), json!({ "type": "string" })] {
            let new = schema_with(props.clone(), json!({ "additionalProperties": closed }));
            assert_one(
                &compatibility(&old, &new),
                IncompatibilityKind::AdditionalPropertiesClosed,
                "",
            );
        }
        let old_true = schema_with(props.clone(), json!({ "additionalProperties": true }));
        let new = schema_with(props, json!({ "additionalProperties": false }));
        assert_one(
            &compatibility(&old_true, &new),
            IncompatibilityKind::AdditionalPropertiesClosed,
            "",
        );
    }

    #[test]
    fn type_narrowed() {
        let found = prop_change(
            json!({ "type": ["string", "null"] }),
            json!({ "type": "string" }),
        );
        assert_one(&found, IncompatibilityKind::TypeNarrowed, "/properties/p");
        assert!(found[0].message.contains("null"), "{found:?}");

        let found = prop_change(json!({ "type": "number" }), json!({ "type": "integer" }));
        assert_one(&found, IncompatibilityKind::TypeNarrowed, "/properties/p");
        assert!(found[0].message.contains("non-integer"), "{found:?}");

        let found = prop_change(json!({}), json!({ "type": "string" }));
        assert_one(&found, IncompatibilityKind::TypeNarrowed, "/properties/p");

        let found = prop_change(json!({ "type": "string" }), json!(false));
        assert_one(&found, IncompatibilityKind::TypeNarrowed, "/properties/p");
    }

    #[test]
    fn enum_values_removed() {
        let found = prop_change(
            json!({ "enum": ["a", "b", "c"] }),
            json!({ "enum": ["a", "c"] }),
        );
        assert_one(&found, IncompatibilityKind::EnumNarrowed, "/properties/p");
        assert!(found[0].message.contains("\"b\""), "{found:?}");
        // Adding values, or reordering, is fine; 1 and 1.0 are the same value.
        assert_eq!(
            prop_change(
                json!({ "enum": ["a", 1] }),
                json!({ "enum": [1.0, "b", "a"] })
            ),
            []
        );
        // An enum where there was none narrows too.
        let found = prop_change(
            json!({ "type": "string" }),
            json!({ "type": "string", "enum": ["x"] }),
        );
        assert_one(&found, IncompatibilityKind::EnumNarrowed, "/properties/p");
    }

    #[test]
    fn pattern_added_or_changed() {
        let found = prop_change(
            json!({ "type": "string" }),
            json!({ "type": "string", "pattern": "^a" }),
        );
        assert_one(
            &found,
            IncompatibilityKind::PatternStricter,
            "/properties/p",
        );
        let found = prop_change(json!({ "pattern": "^a" }), json!({ "pattern": "^ab" }));
        assert_one(
            &found,
            IncompatibilityKind::PatternStricter,
            "/properties/p",
        );
    }

    #[test]
    fn format_added() {
        let found = prop_change(
            json!({ "type": "string" }),
            json!({ "type": "string", "format": "date" }),
        );
        assert_one(&found, IncompatibilityKind::FormatAdded, "/properties/p");
        let found = prop_change(
            json!({ "format": "date" }),
            json!({ "format": "date-time" }),
        );
        assert_one(&found, IncompatibilityKind::FormatAdded, "/properties/p");
    }

    #[test]
    fn bounds_tightened() {
        let cases = [
            (json!({ "maxLength": 10 }), json!({ "maxLength": 5 })),
            (json!({}), json!({ "maxLength": 5 })),
            (json!({ "minLength": 1 }), json!({ "minLength": 2 })),
            (json!({ "maximum": 100 }), json!({ "maximum": 99.5 })),
            (
                json!({ "maximum": 100 }),
                json!({ "exclusiveMaximum": 100 }),
            ),
            (json!({ "minimum": 0 }), json!({ "minimum": 1 })),
            (json!({}), json!({ "exclusiveMinimum": 0 })),
            (json!({ "maxItems": 3 }), json!({ "maxItems": 2 })),
            (json!({ "minItems": 0 }), json!({ "minItems": 1 })),
            (
                json!({ "type": "array" }),
                json!({ "type": "array", "uniqueItems": true }),
            ),
        ];
        for (old, new) in cases {
            let found = prop_change(old.clone(), new.clone());
            assert_eq!(found.len(), 1, "{old} -> {new}: {found:#?}");
            assert_eq!(
                found[0].kind,
                IncompatibilityKind::BoundTightened,
                "{old} -> {new}"
            );
        }
    }

    #[test]
    fn multiple_of_changed() {
        let found = prop_change(json!({ "multipleOf": 2 }), json!({ "multipleOf": 3 }));
        assert_one(
            &found,
            IncompatibilityKind::MultipleOfChanged,
            "/properties/p",
        );
        let found = prop_change(
            json!({ "type": "number" }),
            json!({ "type": "number", "multipleOf": 0.5 }),
        );
        assert_one(
            &found,
            IncompatibilityKind::MultipleOfChanged,
            "/properties/p",
        );
        // Every multiple of 0.02 is a multiple of 0.01: not a break.
        assert_eq!(
            prop_change(json!({ "multipleOf": 0.02 }), json!({ "multipleOf": 0.01 })),
            []
        );
    }

    #[test]
    fn const_added() {
        let found = prop_change(
            json!({ "type": "string" }),
            json!({ "type": "string", "const": "x" }),
        );
        assert_one(&found, IncompatibilityKind::ConstAdded, "/properties/p");
        let found = prop_change(json!({ "const": "x" }), json!({ "const": "y" }));
        assert_one(&found, IncompatibilityKind::ConstAdded, "/properties/p");
        assert_eq!(
            prop_change(json!({ "enum": ["x"] }), json!({ "const": "x" })),
            []
        );
    }

    #[test]
    fn opaque_keyword_added_is_unverifiable() {
        let found = prop_change(
            json!({}),
            json!({ "anyOf": [{ "type": "string" }, { "type": "null" }] }),
        );
        assert_one(&found, IncompatibilityKind::Unverifiable, "/properties/p");
        // Unchanged or removed is fine.
        let any_of = json!({ "anyOf": [{ "type": "string" }] });
        assert_eq!(prop_change(any_of.clone(), any_of.clone()), []);
        assert_eq!(prop_change(any_of, json!({})), []);
    }

    #[test]
    fn nested_objects_arrays_and_defs_are_compared() {
        let old = schema_with(
            json!({
                "address": {
                    "type": "object",
                    "properties": { "city": { "type": "string" }, "street": { "type": "string" } }
                },
                "tags": { "type": "array", "items": { "type": "string", "maxLength": 20 } },
                "code": { "$ref": "#/$defs/code" }
            }),
            json!({ "$defs": { "code": { "type": ["string", "integer"] } } }),
        );
        let new = schema_with(
            json!({
                "address": {
                    "type": "object",
                    "properties": { "city": { "type": "string", "pattern": "^.+市$" } }
                },
                "tags": { "type": "array", "items": { "type": "string", "maxLength": 10 } },
                "code": { "$ref": "#/$defs/code" }
            }),
            json!({ "$defs": { "code": { "type": "string" } } }),
        );
        let found = compatibility(&old, &new);
        let got: Vec<(&str, IncompatibilityKind)> =
            found.iter().map(|i| (i.path.as_str(), i.kind)).collect();
        assert_eq!(
            got,
            [
                (
                    "/properties/address/properties/city",
                    IncompatibilityKind::PatternStricter
                ),
                (
                    "/properties/address/properties/street",
                    IncompatibilityKind::PropertyRemoved
                ),
                (
                    "/properties/tags/items",
                    IncompatibilityKind::BoundTightened
                ),
                ("/$defs/code", IncompatibilityKind::TypeNarrowed),
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn property_names_are_escaped_in_paths() {
        let old = schema_with(json!({ "a/b~c": {} }), json!({}));
        let new = schema_with(json!({}), json!({}));
        assert_one(
            &compatibility(&old, &new),
            IncompatibilityKind::PropertyRemoved,
            "/properties/a~1b~0c",
        );
    }

    #[test]
    fn adding_an_optional_property_is_compatible() {
        let mut new = person();
        new["properties"]["nickname"] = json!({ "type": "string", "maxLength": 10 });
        assert_eq!(compatibility(&person(), &new), []);
    }

    #[test]
    fn widening_is_compatible() {
        let old =
            json!({ "type": "integer", "pattern": "x", "maxLength": 5, "minimum": 1, "enum": [1] });
        let new = json!({ "type": ["number", "null"], "maxLength": 8, "minimum": 0 });
        assert_eq!(prop_change(old, new), []);
        assert_eq!(
            prop_change(
                json!({ "type": "string", "pattern": "^[0-9]+$" }),
                json!({ "type": "string" })
            ),
            []
        );
        assert_eq!(
            prop_change(json!({ "maxLength": 10 }), json!({ "maxLength": 20 })),
            []
        );
        assert_eq!(
            prop_change(json!({ "exclusiveMaximum": 10 }), json!({ "maximum": 10 })),
            []
        );
        // Making a required property optional and opening additionalProperties loosen too.
        let old = schema_with(
            json!({ "a": {} }),
            json!({ "required": ["a"], "additionalProperties": false }),
        );
        let new = schema_with(json!({ "a": {} }), json!({}));
        assert_eq!(compatibility(&old, &new), []);
    }

    // ---- version steps -------------------------------------------------------------------

    fn removal_pair() -> (Value, Value) {
        let old = schema_with(
            json!({ "a": { "type": "string" }, "b": { "type": "string" } }),
            json!({}),
        );
        let new = schema_with(json!({ "a": { "type": "string" } }), json!({}));
        (old, new)
    }

    #[test]
    fn major_bump_allows_breaking_change() -> TestResult {
        let (old, new) = removal_pair();
        check_version_step(&"1.4.2".parse()?, &old, &"2.0.0".parse()?, &new)?;
        Ok(())
    }

    #[test]
    fn minor_bump_with_removal_is_refused_and_listed() -> TestResult {
        let (old, mut new) = removal_pair();
        new["required"] = json!(["a"]);
        let result = check_version_step(&"1.4.2".parse()?, &old, &"1.5.0".parse()?, &new);
        let Err(e @ StandardError::Incompatible { .. }) = result else {
            return Err(format!("expected Incompatible, got {result:?}").into());
        };
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("1.5.0") && lines[0].contains("1.4.2"),
            "{text}"
        );
        assert!(
            lines[1].contains("(root)") && lines[1].contains("required"),
            "{text}"
        );
        assert!(
            lines[2].contains("/properties/b") && lines[2].contains("removed"),
            "{text}"
        );
        if let StandardError::Incompatible { list, .. } = e {
            assert_eq!(list.len(), 2);
        }
        Ok(())
    }

    #[test]
    fn compatible_minor_and_patch_bumps_pass() -> TestResult {
        let mut new = person();
        new["properties"]["nickname"] = json!({ "type": "string" });
        check_version_step(&"1.0.0".parse()?, &person(), &"1.1.0".parse()?, &new)?;
        check_version_step(&"1.0.0".parse()?, &person(), &"1.0.1".parse()?, &new)?;
        Ok(())
    }

    #[test]
    fn version_must_increase() -> TestResult {
        for (old, new) in [
            ("1.2.0", "1.2.0"),
            ("1.2.0", "1.1.9"),
            ("1.2.0", "1.2.0+build.7"),
        ] {
            let result = check_version_step(&old.parse()?, &person(), &new.parse()?, &person());
            assert!(
                matches!(result, Err(StandardError::VersionNotIncreasing { .. })),
                "{old} -> {new}: {result:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn incompatibility_round_trips_through_json() -> TestResult {
        let (old, new) = removal_pair();
        let found = compatibility(&old, &new);
        let text = serde_json::to_string(&found)?;
        assert!(text.contains("\"property_removed\""), "{text}");
        let back: Vec<Incompatibility> = serde_json::from_str(&text)?;
        assert_eq!(back, found);
        Ok(())
    }
}
