//! `/invocations` JSON bodies: exactly one of `dataframe_split`,
//! `dataframe_records`, `instances` or `inputs`, plus optional
//! `client_request_id` and `params`.

use serde_json::{Map, Value};

use super::frame::Parsed;
use crate::error::Error;

const JSON_KEYS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// A JSON body, parsed.
#[derive(Debug)]
pub struct JsonBody {
    pub parsed: Parsed,
    pub client_request_id: Option<String>,
    /// Request-level parameters (a sticky key may be one).
    pub params: Option<Map<String, Value>>,
}

/// Parses a JSON body (MLflow's client's bare `NaN`/`Infinity` included).
pub fn parse(body: &[u8]) -> Result<JsonBody, Error> {
    let body = quote_non_finite(body);
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidInput(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(Error::InvalidInput(format!(
            "the input must be a JSON dictionary with exactly one of the input fields {JSON_KEYS:?}"
        )));
    };
    let client_request_id = match object.remove("client_request_id") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let params = match object.remove("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => {
            return Err(Error::InvalidInput(
                "\"params\" must be a JSON object".into(),
            ))
        }
    };
    let present: Vec<&str> = JSON_KEYS
        .iter()
        .copied()
        .filter(|k| object.contains_key(*k))
        .collect();
    if present.len() != 1 || object.len() != 1 {
        let extra: Vec<&String> = object
            .keys()
            .filter(|k| !JSON_KEYS.contains(&k.as_str()))
            .collect();
        return Err(Error::InvalidInput(format!(
            "the input must be a JSON dictionary with exactly one of the input fields {JSON_KEYS:?}; got {}{}",
            if present.is_empty() { "none".to_string() } else { present.join(", ") },
            if extra.is_empty() { String::new() } else { format!(" and unknown keys {extra:?}") }
        )));
    }
    let key = present[0];
    let value = object.remove(key).unwrap_or(Value::Null);
    let parsed = match key {
        "dataframe_split" => {
            let Value::Object(split) = value else {
                return Err(Error::InvalidInput(
                    "dataframe_split must be {\"columns\": [...], \"data\": [[...], ...]}".into(),
                ));
            };
            let columns = match split.get("columns") {
                Some(Value::Array(c)) => c
                    .iter()
                    .map(|c| {
                        c.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| c.to_string())
                    })
                    .collect(),
                None => Vec::new(),
                Some(_) => {
                    return Err(Error::InvalidInput(
                        "dataframe_split.columns must be a list of names".into(),
                    ))
                }
            };
            let rows = match split.get("data") {
                Some(Value::Array(rows)) => rows
                    .iter()
                    .map(|r| r.as_array().cloned().unwrap_or_else(|| vec![r.clone()]))
                    .collect(),
                _ => {
                    return Err(Error::InvalidInput(
                        "dataframe_split.data must be a list of rows".into(),
                    ))
                }
            };
            Parsed::Frame { columns, rows }
        }
        "dataframe_records" => Parsed::Records {
            value,
            field: "dataframe_records",
        },
        "instances" => match &value {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => Parsed::Records {
                value,
                field: "instances",
            },
            _ => Parsed::Tensors {
                value,
                field: "instances",
            },
        },
        _ => Parsed::Tensors {
            value,
            field: "inputs",
        },
    };
    Ok(JsonBody {
        parsed,
        client_request_id,
        params,
    })
}

/// Python's `json.dumps` (so MLflow's client) writes NaN and infinities as
/// bare `NaN`, `Infinity`, `-Infinity`, which are not JSON; MLflow's server
/// reads them. They become the strings the float conversion understands.
fn quote_non_finite(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    if !TOKENS
        .iter()
        .any(|t| body.windows(t.len()).any(|w| w == *t))
    {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        } else if let Some(t) = TOKENS.iter().find(|t| body[i..].starts_with(t)) {
            out.push(b'"');
            out.extend_from_slice(t);
            out.push(b'"');
            i += t.len();
            continue;
        }
        out.push(b);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::quote_non_finite;

    #[test]
    fn bare_non_finite_tokens_are_quoted_outside_strings_only() {
        let body = br#"{"a": [NaN, -Infinity, Infinity, 1.5], "s": "NaN \" Infinity"}"#;
        let fixed = quote_non_finite(body);
        assert_eq!(
            std::str::from_utf8(&fixed).unwrap(),
            r#"{"a": ["NaN", "-Infinity", "Infinity", 1.5], "s": "NaN \" Infinity"}"#
        );
        let plain = br#"{"a": [1, 2]}"#;
        assert!(matches!(
            quote_non_finite(plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
