//! Features and predictions from the logged payloads: the OIP JSON the
//! table holds for REST and gRPC calls (`inputs` of the request, `outputs`
//! of the response), one column per tensor element of a row.
//!
//! A tensor `x` of shape `[n, F]` gives the columns `x[0]` … `x[F-1]`, one
//! value per batch row; shape `[n]` gives the column `x`; higher ranks are
//! flattened row-major (`x[0]` … `x[k-1]`, k the product of the trailing
//! dimensions).

use serde_json::Value;

/// One value of one column in one batch row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Text(String),
    /// A JSON null or a non-finite number.
    Null,
}

/// The columns of one tensor list, in tensor order: (name, a cell per row).
pub type Columns = Vec<(String, Vec<Cell>)>;

/// The columns of `body`'s tensor list `key` (`"inputs"` or `"outputs"`);
/// `None` when the body is not OIP JSON with such a list.
pub fn columns(body: &str, key: &str) -> Option<Columns> {
    let value: Value = serde_json::from_str(body).ok()?;
    let tensors = value.get(key)?.as_array()?;
    let mut out = Vec::new();
    for tensor in tensors {
        let name = tensor.get("name")?.as_str()?;
        let shape: Vec<u64> = tensor
            .get("shape")?
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect::<Option<_>>()?;
        let mut flat = Vec::new();
        flatten(tensor.get("data")?, &mut flat);
        let total: u64 = shape.iter().product();
        if flat.len() as u64 != total {
            return None;
        }
        let (rows, width) = match shape.as_slice() {
            [] => (1, None),
            [n] => (*n as usize, None),
            [n, rest @ ..] => (*n as usize, Some(rest.iter().product::<u64>() as usize)),
        };
        match width {
            None => out.push((name.to_string(), flat)),
            Some(width) => {
                for j in 0..width {
                    let cells = (0..rows).map(|r| flat[r * width + j].clone()).collect();
                    out.push((format!("{name}[{j}]"), cells));
                }
            }
        }
    }
    Some(out)
}

fn flatten(data: &Value, out: &mut Vec<Cell>) {
    match data {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        Value::Number(n) => out.push(match n.as_f64() {
            Some(x) if x.is_finite() => Cell::Number(x),
            _ => Cell::Null,
        }),
        Value::Bool(b) => out.push(Cell::Number(if *b { 1.0 } else { 0.0 })),
        Value::String(s) => out.push(Cell::Text(s.clone())),
        Value::Null | Value::Object(_) => out.push(Cell::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_input_gives_one_column_per_feature() {
        let body = r#"{"id":"1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32",
            "data":[[1,2,3],[4,5,6]]},{"name":"tag","shape":[2],"datatype":"BYTES","data":["a","b"]}]}"#;
        let cols = columns(body, "inputs").unwrap();
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x[0]", "x[1]", "x[2]", "tag"]);
        assert_eq!(cols[1].1, vec![Cell::Number(2.0), Cell::Number(5.0)]);
        assert_eq!(
            cols[3].1,
            vec![Cell::Text("a".into()), Cell::Text("b".into())]
        );
    }

    #[test]
    fn outputs_and_flat_data_and_bad_bodies() {
        let body = r#"{"model_name":"fraud","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[1]},
            {"name":"probabilities","shape":[1,2],"datatype":"FP32","data":[0.25,0.75]}]}"#;
        let cols = columns(body, "outputs").unwrap();
        assert_eq!(cols[0], ("label".into(), vec![Cell::Number(1.0)]));
        assert_eq!(
            cols[2],
            ("probabilities[1]".into(), vec![Cell::Number(0.75)])
        );
        assert!(columns("dataframe_split=1", "inputs").is_none());
        assert!(columns(
            r#"{"inputs":[{"name":"x","shape":[2,2],"data":[1,2,3]}]}"#,
            "inputs"
        )
        .is_none());
    }
}
