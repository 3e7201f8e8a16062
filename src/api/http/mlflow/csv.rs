//! `/invocations` CSV bodies: a header row, then data rows (RFC 4180:
//! commas, double quotes around text with commas, quotes or line breaks).

use serde_json::Value;

use super::frame::Parsed;
use crate::error::Error;

/// Parses a CSV body into a frame; cells become numbers, booleans, text, or
/// null when empty (NaN for a float model, as pandas reads it).
pub fn parse(body: &[u8]) -> Result<Parsed, Error> {
    let invalid = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Utf8 { .. } => Error::InvalidInput("the CSV body is not UTF-8".into()),
        _ => Error::InvalidInput(format!("the CSV body cannot be read: {e}")),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let columns: Vec<String> = reader
        .headers()
        .map_err(invalid)?
        .iter()
        .map(str::to_string)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(Error::InvalidInput(
            "the CSV body is empty; send a header row and data rows".into(),
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(invalid)?;
        // A line of blanks only is no row (as a blank line is not).
        if record.iter().all(str::is_empty) {
            continue;
        }
        rows.push(record.iter().map(cell).collect());
    }
    Ok(Parsed::Frame { columns, rows })
}

/// One cell as the JSON value the tensor conversion understands.
fn cell(cell: &str) -> Value {
    if let Ok(i) = cell.parse::<i64>() {
        return Value::from(i);
    }
    if cell.is_empty() {
        return Value::Null;
    }
    match cell.parse::<f64>() {
        Ok(f) if f.is_nan() => Value::String("NaN".into()),
        Ok(f) if f.is_infinite() => {
            Value::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
        }
        Ok(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Err(_) => match cell {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            _ => Value::String(cell.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &str) -> (Vec<String>, Vec<Vec<Value>>) {
        match parse(body.as_bytes()).expect("parses") {
            Parsed::Frame { columns, rows } => (columns, rows),
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn quoted_cells_keep_commas_quotes_and_line_breaks() {
        let (columns, rows) = frame("a, b ,c\n1,\"x, \"\"y\"\"\nz\",2.5\n\n3,,NaN\n");
        assert_eq!(columns, ["a", "b", "c"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], Value::from(1));
        assert_eq!(rows[0][1], Value::String("x, \"y\"\nz".into()));
        assert_eq!(rows[0][2], serde_json::json!(2.5));
        assert_eq!(rows[1][1], Value::Null);
        assert_eq!(rows[1][2], Value::String("NaN".into()));
    }

    #[test]
    fn empty_and_non_utf8_bodies_are_refused_with_the_reason() {
        let empty = parse(b"").unwrap_err().to_string();
        assert!(empty.contains("the CSV body is empty"), "{empty}");
        let latin1 = parse(b"a\n\xe9\n").unwrap_err().to_string();
        assert!(latin1.contains("not UTF-8"), "{latin1}");
        // Ragged rows are reported against the columns later, not here.
        let (_, rows) = frame("a,b\n1\n");
        assert_eq!(rows[0].len(), 1);
    }
}
