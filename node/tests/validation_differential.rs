//! The oracle of the borrowed validation path (issue 16): for generated records, the verdict
//! `CompiledStandard::is_valid_text` reaches on a borrowed parse equals the `jsonschema` crate's
//! on the owned `serde_json::Value` of the same text, and `check_text` (what the publish path and
//! the receiver run per line) gives exactly the reasons `validate` gives on that `Value`.
//!
//! Records are made from the shipped standards' sample records (valid ones, then each mutated:
//! a field dropped, added, or given a value of another type, an edge of a bound, a bad date, a
//! string one character too long, an escaped key or string, a key twice, ...) and from randomly
//! generated schemas (flat and nested properties, every type and array of types, `enum`/`const`,
//! string lengths, patterns, formats, number bounds and `multipleOf`, arrays, `allOf`/`anyOf`/
//! `oneOf`/`not`/`if`, `additionalProperties`, `propertyNames`) with records near their edges.
//! Seeded, so a failure repeats; a few seconds in a debug build.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use yrd_node::model::standard::{self, CompiledStandard};
use yrd_node::samples;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Checks one record text against both paths; returns whether the owned path found it valid.
fn agree(standard: &CompiledStandard, text: &str, what: &str) -> Result<bool, String> {
    let fast = standard.is_valid_text(text);
    let checked = standard.check_text(text);
    let owned = serde_json::from_str::<Value>(text);
    match (&owned, &checked) {
        (Err(a), Err(b)) if a.to_string() == b.to_string() => {
            if fast {
                Err(format!(
                    "{what}: not JSON, yet valid on the fast path: {text}"
                ))
            } else {
                Ok(false)
            }
        }
        (Ok(value), Ok(verdict)) => {
            let expected = standard.validate(value);
            if &expected != verdict {
                return Err(format!(
                    "{what}: check_text {verdict:?} but validate {expected:?}: {text}"
                ));
            }
            let valid = standard.is_valid(value);
            // A key twice is left to the owned path by design (the borrowed parse refuses it),
            // so there the fast path may only say "not known valid".
            let parsed = yrd_node::model::borrowed_json::parse(text).is_some();
            if (parsed && fast != valid) || (!parsed && fast) {
                return Err(format!(
                    "{what}: fast path says valid={fast}, jsonschema says valid={valid}: {text}"
                ));
            }
            Ok(valid)
        }
        _ => Err(format!("{what}: the paths disagree on parsing: {text}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Record text with optional escapes and spacing
// ---------------------------------------------------------------------------------------------

/// JSON text of `value`, with some keys and strings written with `\u` escapes and some spacing,
/// so that the parse takes its copying paths too.
fn write_text(value: &Value, rng: &mut StdRng, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if rng.gen_bool(0.05) {
                    out.push(' ');
                }
                write_string(k, rng, out);
                out.push(':');
                write_text(v, rng, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_text(v, rng, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, rng, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, rng: &mut StdRng, out: &mut String) {
    if !rng.gen_bool(0.08) {
        out.push_str(&Value::String(s.to_owned()).to_string());
        return;
    }
    out.push('"');
    for c in s.chars() {
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Values near the edges
// ---------------------------------------------------------------------------------------------

/// Values of every type, near the bounds and formats the schemas use.
fn interesting() -> Vec<Value> {
    let mut v: Vec<Value> = vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(3),
        json!(1.0),
        json!(-0.0),
        json!(0.5),
        json!(0.01),
        json!(0.005),
        json!(0.1),
        json!(0.3),
        json!(100.1),
        json!(100.25),
        json!(100.255),
        json!(1e15),
        json!(123456789.12),
        json!(1.7976931348623157e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("a"),
        json!("ab"),
        json!("abc"),
        json!("abcd"),
        json!("é"),
        json!("😀"),
        json!("😀😀😀"),
        json!("存续"),
        json!("CNY"),
        json!("12"),
        json!("1234"),
        json!("2024-02-29"),
        json!("2023-02-29"),
        json!("2024-13-01"),
        json!("2024-1-01"),
        json!("2024-01-01T00:00:00Z"),
        json!("2024-01-01T23:59:60Z"),
        json!("2024-01-01t00:00:00+08:00"),
        json!("2024-01-01T25:00:00Z"),
        json!("12:30:00Z"),
        json!("x@y.z"),
        json!("not an email"),
        json!("192.168.0.1"),
        json!("256.1.1.1"),
        json!("::1"),
        json!("123e4567-e89b-12d3-a456-426614174000"),
        json!("P1D"),
        json!("example.com"),
        json!("310101"),
        json!("3101011"),
        json!([]),
        json!([1, 1]),
        json!([1, "a"]),
        json!(["a", "b"]),
        json!({}),
        json!({"a": 1}),
        json!({"a": "x", "b": [1]}),
    ];
    v.push(Value::String("x".repeat(40)));
    v
}

/// A value near `current` (a string one character shorter or longer or changed, a number just
/// off), or one of [`interesting`].
fn mutate(current: &Value, pool: &[Value], rng: &mut StdRng) -> Value {
    match current {
        Value::String(s) if rng.gen_bool(0.5) => {
            let mut chars: Vec<char> = s.chars().collect();
            match rng.gen_range(0..5) {
                0 => {
                    chars.pop();
                }
                1 => chars.push(*['0', 'X', 'é', '😀'].choose(rng).unwrap_or(&'0')),
                2 if !chars.is_empty() => {
                    let i = rng.gen_range(0..chars.len());
                    chars[i] = *['0', 'X', 'I', '9', 'a', '-'].choose(rng).unwrap_or(&'0');
                }
                3 => chars.insert(0, ' '),
                _ => chars.clear(),
            }
            Value::String(chars.into_iter().collect())
        }
        Value::Number(n) if rng.gen_bool(0.5) => {
            let f = n.as_f64().unwrap_or(0.0);
            let g = match rng.gen_range(0..6) {
                0 => f + 0.01,
                1 => f + 0.001,
                2 => -f,
                3 => f * 10.0,
                4 => f.trunc(),
                _ => f - 0.01,
            };
            if rng.gen_bool(0.3) && g.fract() == 0.0 && g.abs() < 1e15 {
                json!(g as i64)
            } else {
                json!(g)
            }
        }
        _ => pool.choose(rng).cloned().unwrap_or(Value::Null),
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped standards
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_standards_fast_verdict_equals_jsonschema() -> TestResult {
    let pool = interesting();
    let mut rng = StdRng::seed_from_u64(16);
    let (mut cases, mut valid, mut dups) = (0usize, 0usize, 0usize);
    for info in samples::STANDARDS {
        let schema: Value = serde_json::from_str(samples::schema_json(info.id).ok_or("schema")?)?;
        let compiled = standard::compile(&schema)?;
        for record in samples::generate(info.id, 120, 7)? {
            let Value::Object(map) = record else {
                return Err("a sample record is not an object".into());
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            // The record as generated (valid), then ten mutations of it.
            for round in 0..11 {
                let mut m = map.clone();
                let mutations = if round == 0 { 0 } else { rng.gen_range(1..=2) };
                for _ in 0..mutations {
                    let key = keys.choose(&mut rng).ok_or("no fields")?;
                    match rng.gen_range(0..10) {
                        0 => {
                            m.shift_remove(key);
                        }
                        1 => {
                            m.insert("extra".into(), json!("x"));
                        }
                        _ => {
                            let current = m.get(key).cloned().unwrap_or(Value::Null);
                            m.insert(key.clone(), mutate(&current, &pool, &mut rng));
                        }
                    }
                }
                let value = Value::Object(m);
                let mut text = String::new();
                write_text(&value, &mut rng, &mut text);
                if round > 0 && rng.gen_bool(0.03) {
                    // A key twice: the last value wins on the owned path.
                    let key = keys.choose(&mut rng).ok_or("no fields")?;
                    text.pop();
                    text.push_str(&format!(",{}:null}}", Value::String(key.clone())));
                    dups += 1;
                }
                let ok = agree(&compiled, &text, info.id)?;
                if round == 0 && !ok {
                    return Err(format!("a generated {} record is invalid", info.id).into());
                }
                valid += usize::from(ok);
                cases += 1;
            }
        }
    }
    println!("{cases} records ({valid} valid, {dups} with a key twice)");
    assert!(cases >= 7_000 && valid * 10 > cases && valid * 5 < cases * 4);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random schemas
// ---------------------------------------------------------------------------------------------

const TYPES: &[&str] = &[
    "string", "integer", "number", "boolean", "null", "array", "object",
];
const PATTERNS: &[&str] = &[
    "^[a-c]+$",
    "^[0-9]{2,4}$",
    "é",
    "^3[1-4][0-9]{4}$",
    "^\\d+$",
    "^\\w*$",
    "^(ab|x)*$",
    "^.{1,3}$",
];
const FORMATS: &[&str] = &[
    "date",
    "date-time",
    "time",
    "email",
    "ipv4",
    "ipv6",
    "uuid",
    "duration",
    "hostname",
];
const MULTIPLES: &[f64] = &[0.01, 0.5, 3.0, 1.0, 0.1, 2.5];

fn pick<'a>(items: &'a [&'a str], rng: &mut StdRng) -> &'a str {
    items.choose(rng).copied().unwrap_or("string")
}

/// A random property schema; `depth` bounds nesting.
fn gen_schema(rng: &mut StdRng, pool: &[Value], depth: u32) -> Value {
    let mut s = Map::new();
    match rng.gen_range(0..10) {
        0 => {}
        1 | 2 => {
            let mut ts: Vec<&str> = (0..rng.gen_range(1..=3))
                .map(|_| pick(TYPES, rng))
                .collect();
            ts.sort_unstable();
            ts.dedup();
            s.insert("type".into(), json!(ts));
        }
        _ => {
            s.insert("type".into(), json!(pick(TYPES, rng)));
        }
    }
    let keyword_count = rng.gen_range(0..=3);
    for _ in 0..keyword_count {
        match rng.gen_range(0..19) {
            0 => {
                s.insert("minLength".into(), json!(rng.gen_range(0..4)));
            }
            1 => {
                s.insert("maxLength".into(), json!(rng.gen_range(1..5)));
            }
            2 => {
                s.insert("pattern".into(), json!(pick(PATTERNS, rng)));
            }
            3 => {
                s.insert("format".into(), json!(pick(FORMATS, rng)));
            }
            4 => {
                let values: Vec<Value> = (0..rng.gen_range(1..5))
                    .filter_map(|_| pool.choose(rng).cloned())
                    .collect();
                s.insert("enum".into(), Value::Array(values));
            }
            5 => {
                s.insert(
                    "const".into(),
                    pool.choose(rng).cloned().unwrap_or(json!(1)),
                );
            }
            6 => {
                s.insert("minimum".into(), json!(rng.gen_range(-2..3)));
            }
            7 => {
                s.insert("maximum".into(), json!(rng.gen_range(0..200) as f64 / 2.0));
            }
            8 => {
                s.insert("exclusiveMinimum".into(), json!(0));
            }
            9 => {
                s.insert("exclusiveMaximum".into(), json!(100.25));
            }
            10 => {
                let m = *MULTIPLES.choose(rng).unwrap_or(&0.01);
                s.insert("multipleOf".into(), json!(m));
            }
            11 if depth < 2 => {
                s.insert("items".into(), gen_schema(rng, pool, depth + 1));
            }
            12 => {
                s.insert("minItems".into(), json!(rng.gen_range(0..3)));
                s.insert("uniqueItems".into(), json!(rng.gen_bool(0.5)));
            }
            13 if depth < 2 => {
                let (props, required) = gen_properties(rng, pool, depth + 1, 3);
                s.insert("properties".into(), props);
                s.insert("required".into(), required);
            }
            14 if depth < 2 => {
                let key = *["allOf", "anyOf", "oneOf"].choose(rng).unwrap_or(&"allOf");
                let subs: Vec<Value> = (0..rng.gen_range(1..3))
                    .map(|_| gen_schema(rng, pool, depth + 1))
                    .collect();
                s.insert(key.into(), Value::Array(subs));
            }
            15 if depth < 2 => {
                s.insert("not".into(), gen_schema(rng, pool, depth + 1));
            }
            16 if depth < 2 => {
                s.insert("if".into(), gen_schema(rng, pool, depth + 1));
                s.insert("then".into(), gen_schema(rng, pool, depth + 1));
                s.insert("else".into(), gen_schema(rng, pool, depth + 1));
            }
            17 => {
                s.insert("maxProperties".into(), json!(rng.gen_range(0..3)));
            }
            _ => {
                s.insert("additionalProperties".into(), json!(rng.gen_bool(0.5)));
            }
        }
    }
    Value::Object(s)
}

fn gen_properties(rng: &mut StdRng, pool: &[Value], depth: u32, most: usize) -> (Value, Value) {
    let mut props = Map::new();
    let mut required = Vec::new();
    for i in 0..rng.gen_range(1..=most) {
        let name = if rng.gen_bool(0.1) {
            format!("名{i}")
        } else {
            format!("p{i}")
        };
        props.insert(name.clone(), gen_schema(rng, pool, depth));
        if rng.gen_bool(0.5) {
            required.push(json!(name));
        }
    }
    (Value::Object(props), Value::Array(required))
}

/// A random value for `schema` (by its declared type, its enum or const, nested properties),
/// or anything from the pool.
fn gen_value(schema: &Value, pool: &[Value], rng: &mut StdRng, depth: u32) -> Value {
    if rng.gen_bool(0.25) || depth > 3 {
        return pool.choose(rng).cloned().unwrap_or(Value::Null);
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if rng.gen_bool(0.7) {
            return values.choose(rng).cloned().unwrap_or(Value::Null);
        }
    }
    if let Some(c) = schema.get("const") {
        if rng.gen_bool(0.7) {
            return c.clone();
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .choose(rng)
            .and_then(Value::as_str)
            .unwrap_or("null")
            .to_owned(),
        _ => pick(TYPES, rng).to_owned(),
    };
    match ty.as_str() {
        "object" => {
            let mut m = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if rng.gen_bool(0.85) {
                        m.insert(k.clone(), gen_value(sub, pool, rng, depth + 1));
                    }
                }
            }
            if rng.gen_bool(0.15) {
                m.insert("zz".into(), json!(1));
            }
            Value::Object(m)
        }
        "array" => {
            let items = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array(
                (0..rng.gen_range(0..4))
                    .map(|_| gen_value(&items, pool, rng, depth + 1))
                    .collect(),
            )
        }
        "string" => {
            let alphabet = ['a', 'b', 'c', 'x', '1', '2', '3', 'é', '😀', ' '];
            let len = rng.gen_range(0..6);
            Value::String((0..len).filter_map(|_| alphabet.choose(rng)).collect())
        }
        "integer" => json!(rng.gen_range(-3..300)),
        "number" => {
            let n = rng.gen_range(-300..30_000) as f64 / 100.0;
            if rng.gen_bool(0.2) {
                json!(n.trunc())
            } else {
                json!(n)
            }
        }
        "boolean" => json!(rng.gen_bool(0.5)),
        _ => Value::Null,
    }
}

#[test]
fn random_schemas_fast_verdict_equals_jsonschema() -> TestResult {
    let pool = interesting();
    let mut rng = StdRng::seed_from_u64(1616);
    let (mut schemas, mut refused, mut cases, mut valid) = (0usize, 0usize, 0usize, 0usize);
    for _ in 0..400 {
        let (props, required) = gen_properties(&mut rng, &pool, 0, 6);
        let mut root = json!({
            "$schema": standard::DRAFT_2020_12,
            "type": "object",
            "properties": props,
            "required": required,
        });
        match rng.gen_range(0..6) {
            0 | 1 => root["additionalProperties"] = json!(false),
            2 => root["additionalProperties"] = json!({"type": "string"}),
            3 => root["propertyNames"] = json!({"maxLength": 2}),
            4 => root["minProperties"] = json!(2),
            _ => {}
        }
        let compiled = match standard::compile(&root) {
            Ok(c) => c,
            // A random schema the crate refuses (e.g. an invalid pattern) is not a case.
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        schemas += 1;
        for _ in 0..25 {
            let record = gen_value(&root, &pool, &mut rng, 0);
            let mut text = String::new();
            write_text(&record, &mut rng, &mut text);
            valid += usize::from(agree(&compiled, &text, &root.to_string())?);
            cases += 1;
        }
    }
    println!("{schemas} schemas ({refused} refused), {cases} records ({valid} valid)");
    assert!(schemas >= 350 && cases >= 8_000 && valid * 10 > cases && valid * 10 < cases * 9);
    Ok(())
}

#[test]
fn what_the_fast_path_leaves_to_the_owned_path_gets_the_owned_verdict() -> TestResult {
    let schema: Value =
        serde_json::from_str(samples::schema_json("enterprise-licence").ok_or("schema")?)?;
    let compiled = standard::compile(&schema)?;
    let record = samples::generate("enterprise-licence", 1, 3)?
        .pop()
        .ok_or("no record")?;
    let text = record.to_string();
    assert!(compiled.is_valid_text(&text));
    // A key twice: the owned path keeps the last value, so a bad last value is reported there.
    let twice = format!("{},\"currency\":\"XYZ\"}}", &text[..text.len() - 1]);
    assert!(!compiled.is_valid_text(&twice));
    let Ok(Err(errors)) = compiled.check_text(&twice) else {
        return Err("a bad last value of a key given twice was accepted".into());
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/currency");
    // ... and a good last value passes.
    let good = format!("{},\"currency\":\"USD\"}}", &text[..text.len() - 1]);
    assert!(matches!(compiled.check_text(&good), Ok(Ok(()))));
    // Counted as members, a key twice would satisfy a bound its `Value` does not.
    let two = standard::compile(&json!({
        "$schema": standard::DRAFT_2020_12, "type": "object", "minProperties": 2
    }))?;
    assert!(matches!(two.check_text(r#"{"a":1,"a":2}"#), Ok(Err(_))));
    assert!(matches!(two.check_text(r#"{"a":1,"b":2}"#), Ok(Ok(()))));
    // Not JSON: serde_json's own error.
    let Err(e) = compiled.check_text("{\"uscc\":") else {
        return Err("a truncated record parsed".into());
    };
    assert_eq!(
        e.to_string(),
        serde_json::from_str::<Value>("{\"uscc\":")
            .err()
            .ok_or("parsed")?
            .to_string()
    );
    Ok(())
}
