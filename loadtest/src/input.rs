//! The request's input tensors: read from an OIP JSON request file or an
//! NPY file, or generated from the model's metadata with a seed. Held as
//! little-endian row-major bytes (the binary extension's and gRPC's raw
//! form); the JSON forms are made from them.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// One input tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    /// OIP datatype name: FP32, INT64, BYTES, …
    pub datatype: String,
    pub shape: Vec<i64>,
    /// Little-endian, row-major; BYTES elements each with a 4-byte length prefix.
    pub raw: Vec<u8>,
}

/// Bytes per element of a fixed-size OIP datatype; `None` for BYTES or an
/// unknown name.
pub fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" | "FP16" | "BF16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

const DATATYPES: &str =
    "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES";

fn check_datatype(datatype: &str) -> Result<()> {
    if datatype == "BYTES" || element_size(datatype).is_some() {
        Ok(())
    } else {
        bail!("unknown datatype {datatype:?}; OIP datatypes are {DATATYPES}")
    }
}

fn elements(shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        let d =
            usize::try_from(d).map_err(|_| anyhow!("shape {shape:?} has a negative dimension"))?;
        n.checked_mul(d)
            .ok_or_else(|| anyhow!("shape {shape:?} is too large"))
    })
}

impl Tensor {
    /// Number of elements the shape holds.
    pub fn elements(&self) -> usize {
        elements(&self.shape).unwrap_or(0)
    }

    /// The elements as flat JSON values (numbers, booleans or strings).
    pub fn json_data(&self) -> Result<Vec<Value>> {
        let raw = &self.raw;
        let fixed = |size: usize, f: &dyn Fn(&[u8]) -> Value| -> Vec<Value> {
            raw.chunks_exact(size).map(f).collect()
        };
        Ok(match self.datatype.as_str() {
            "BOOL" => fixed(1, &|b| json!(b[0] != 0)),
            "UINT8" => fixed(1, &|b| json!(b[0])),
            "INT8" => fixed(1, &|b| json!(b[0] as i8)),
            "UINT16" => fixed(2, &|b| json!(u16::from_le_bytes([b[0], b[1]]))),
            "INT16" => fixed(2, &|b| json!(i16::from_le_bytes([b[0], b[1]]))),
            "UINT32" => fixed(4, &|b| json!(u32::from_le_bytes(b.try_into().unwrap()))),
            "INT32" => fixed(4, &|b| json!(i32::from_le_bytes(b.try_into().unwrap()))),
            "UINT64" => fixed(8, &|b| json!(u64::from_le_bytes(b.try_into().unwrap()))),
            "INT64" => fixed(8, &|b| json!(i64::from_le_bytes(b.try_into().unwrap()))),
            "FP32" => fixed(4, &|b| json!(f32::from_le_bytes(b.try_into().unwrap()))),
            "FP64" => fixed(8, &|b| json!(f64::from_le_bytes(b.try_into().unwrap()))),
            "BYTES" => {
                let mut out = Vec::new();
                let mut rest = &raw[..];
                while rest.len() >= 4 {
                    let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                    let end = (4 + n).min(rest.len());
                    out.push(json!(String::from_utf8_lossy(&rest[4..end])));
                    rest = &rest[end..];
                }
                out
            }
            other => bail!(
                "input {:?} is {other}, which has no JSON form; use --protocol rest-binary or grpc",
                self.name
            ),
        })
    }

    /// The elements nested to the tensor's shape (for MLflow `inputs`).
    pub fn json_nested(&self) -> Result<Value> {
        let flat = self.json_data()?;
        fn nest(flat: &[Value], shape: &[i64]) -> Value {
            match shape.split_first() {
                None => flat.first().cloned().unwrap_or(Value::Null),
                Some((&d, rest)) => {
                    let inner: usize = rest.iter().map(|&x| x.max(0) as usize).product();
                    Value::Array(
                        (0..d.max(0) as usize)
                            .map(|i| nest(&flat[i * inner..(i + 1) * inner], rest))
                            .collect(),
                    )
                }
            }
        }
        Ok(nest(&flat, &self.shape))
    }
}

/// Element `v` of a JSON tensor as little-endian bytes of `datatype`.
fn push_json(out: &mut Vec<u8>, datatype: &str, v: &Value) -> Result<()> {
    let number = || {
        v.as_f64()
            .or_else(|| v.as_bool().map(|b| b as u8 as f64))
            .ok_or_else(|| anyhow!("{v} is not a number"))
    };
    let integer = || -> Result<i128> {
        if let Some(i) = v.as_i64() {
            return Ok(i as i128);
        }
        if let Some(u) = v.as_u64() {
            return Ok(u as i128);
        }
        if let Some(b) = v.as_bool() {
            return Ok(b as i128);
        }
        bail!("{v} is not an integer")
    };
    let ranged = |lo: i128, hi: i128| -> Result<i128> {
        let i = integer()?;
        if i < lo || i > hi {
            bail!("{v} is out of range for {datatype}");
        }
        Ok(i)
    };
    match datatype {
        "BOOL" => out.push(match v {
            Value::Bool(b) => *b as u8,
            _ => (number()? != 0.0) as u8,
        }),
        "UINT8" => out.push(ranged(0, u8::MAX as i128)? as u8),
        "INT8" => out.extend((ranged(i8::MIN as i128, i8::MAX as i128)? as i8).to_le_bytes()),
        "UINT16" => out.extend((ranged(0, u16::MAX as i128)? as u16).to_le_bytes()),
        "INT16" => out.extend((ranged(i16::MIN as i128, i16::MAX as i128)? as i16).to_le_bytes()),
        "UINT32" => out.extend((ranged(0, u32::MAX as i128)? as u32).to_le_bytes()),
        "INT32" => out.extend((ranged(i32::MIN as i128, i32::MAX as i128)? as i32).to_le_bytes()),
        "UINT64" => out.extend((ranged(0, u64::MAX as i128)? as u64).to_le_bytes()),
        "INT64" => out.extend((ranged(i64::MIN as i128, i64::MAX as i128)? as i64).to_le_bytes()),
        "FP32" => out.extend((number()? as f32).to_le_bytes()),
        "FP64" => out.extend(number()?.to_le_bytes()),
        "BYTES" => {
            let s = v.as_str().ok_or_else(|| {
                anyhow!("{v} is not a string (BYTES elements are strings in JSON)")
            })?;
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        }
        other => bail!("{other} inputs cannot be given in JSON; use an NPY file"),
    }
    Ok(())
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// Reads an OIP REST request body (`{"inputs": [{"name", "shape",
/// "datatype", "data"}, …]}`; data flat or nested).
pub fn from_json(text: &[u8]) -> Result<Vec<Tensor>> {
    let v: Value = serde_json::from_slice(text).context("the input file is not JSON")?;
    let inputs = v
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("expected an OIP request: {{\"inputs\": [{{\"name\": ..., \"shape\": [...], \"datatype\": ..., \"data\": [...]}}]}}"))?;
    if inputs.is_empty() {
        bail!("the input file's \"inputs\" list is empty");
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let field = |k: &str| {
                t.get(k)
                    .ok_or_else(|| anyhow!("inputs[{i}] has no \"{k}\""))
            };
            let name = field("name")?
                .as_str()
                .ok_or_else(|| anyhow!("inputs[{i}].name is not a string"))?
                .to_string();
            let datatype = field("datatype")?
                .as_str()
                .ok_or_else(|| anyhow!("inputs[{i}].datatype is not a string"))?
                .to_string();
            check_datatype(&datatype).with_context(|| format!("input {name:?}"))?;
            let shape: Vec<i64> = serde_json::from_value(field("shape")?.clone())
                .map_err(|_| anyhow!("input {name:?}: shape is not a list of integers"))?;
            let mut flat = Vec::new();
            flatten(field("data")?, &mut flat);
            let want = elements(&shape).with_context(|| format!("input {name:?}"))?;
            if flat.len() != want {
                bail!(
                    "input {name:?} has {} elements; its shape {shape:?} holds {want}",
                    flat.len()
                );
            }
            let mut raw = Vec::with_capacity(want * element_size(&datatype).unwrap_or(8));
            for (j, v) in flat.into_iter().enumerate() {
                push_json(&mut raw, &datatype, v)
                    .with_context(|| format!("input {name:?}, element {j}"))?;
            }
            Ok(Tensor {
                name,
                datatype,
                shape,
                raw,
            })
        })
        .collect()
}

/// Reads a NumPy `.npy` file (little-endian, C order) as the input `name`.
pub fn from_npy(name: &str, bytes: &[u8]) -> Result<Tensor> {
    let bad = |why: &str| anyhow!("not a usable .npy file: {why}");
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("format version {v} is unknown"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let value_of = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(&format!("header has no '{key}'")))?;
        let rest = header[at + key.len() + 2..].trim_start();
        Ok(rest.strip_prefix(':').unwrap_or(rest).trim_start())
    };
    let descr = value_of("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad("descr is not a string"))?;
    if value_of("fortran_order")?.starts_with("True") {
        bail!("the .npy array is in Fortran order; save it with np.ascontiguousarray first");
    }
    let shape_text = value_of("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let shape: Vec<i64> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| bad("shape has a non-integer")))
        .collect::<Result<_>>()?;
    let datatype = match descr {
        "|b1" => "BOOL",
        "|u1" => "UINT8",
        "|i1" => "INT8",
        "<u2" => "UINT16",
        "<i2" => "INT16",
        "<u4" => "UINT32",
        "<i4" => "INT32",
        "<u8" => "UINT64",
        "<i8" => "INT64",
        "<f2" => "FP16",
        "<f4" => "FP32",
        "<f8" => "FP64",
        other => bail!(
            "the .npy dtype {other:?} is not supported; use a little-endian bool, int, uint or float array"
        ),
    };
    let data = &bytes[start + header_len..];
    let want = elements(&shape)? * element_size(datatype).unwrap_or(1);
    if data.len() != want {
        bail!(
            "the .npy data is {} bytes; shape {shape:?} of {datatype} needs {want}",
            data.len()
        );
    }
    Ok(Tensor {
        name: name.to_string(),
        datatype: datatype.to_string(),
        shape,
        raw: data.to_vec(),
    })
}

/// splitmix64: a small, seedable generator (the same seed gives the same
/// input on every machine).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Inputs for the model described by `metadata` (the answer to `GET
/// /v2/models/{m}`): each variable dimension (-1) is `batch` if it is the
/// first one, else 1; floats uniform in [-1, 1), integers in [0, 10),
/// booleans random, strings "x".
pub fn generate(metadata: &Value, batch: u64, seed: u64) -> Result<Vec<Tensor>> {
    let inputs = metadata
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the model metadata has no \"inputs\" list: {metadata}"))?;
    if inputs.is_empty() {
        bail!("the model metadata lists no inputs");
    }
    let mut rng = Rng::new(seed);
    inputs
        .iter()
        .map(|t| {
            let name = t["name"]
                .as_str()
                .ok_or_else(|| anyhow!("an input in the metadata has no name: {t}"))?
                .to_string();
            let datatype = t["datatype"]
                .as_str()
                .ok_or_else(|| anyhow!("input {name:?} has no datatype in the metadata"))?
                .to_string();
            check_datatype(&datatype).with_context(|| format!("input {name:?}"))?;
            let declared: Vec<i64> = serde_json::from_value(t["shape"].clone()).map_err(|_| {
                anyhow!("input {name:?}: the metadata's shape is not a list of integers")
            })?;
            let shape: Vec<i64> = declared
                .iter()
                .enumerate()
                .map(|(i, &d)| match (d < 0, i) {
                    (true, 0) => batch as i64,
                    (true, _) => 1,
                    (false, _) => d,
                })
                .collect();
            let n = elements(&shape)?;
            let mut raw = Vec::with_capacity(n * element_size(&datatype).unwrap_or(5));
            for _ in 0..n {
                let x = rng.unit();
                let small = (rng.next_u64() % 10) as i64;
                let v = match datatype.as_str() {
                    "FP32" | "FP64" => json!(x),
                    "FP16" | "BF16" => {
                        // Half floats have no JSON form: their bits directly.
                        let bits = half_bits(&datatype, x as f32);
                        raw.extend(bits.to_le_bytes());
                        continue;
                    }
                    "BOOL" => json!(x >= 0.0),
                    "BYTES" => json!("x"),
                    _ => json!(small),
                };
                push_json(&mut raw, &datatype, &v)?;
            }
            Ok(Tensor {
                name,
                datatype,
                shape,
                raw,
            })
        })
        .collect()
}

/// FP16 or BF16 bits of `x` (round toward zero; enough for load).
fn half_bits(datatype: &str, x: f32) -> u16 {
    let bits = x.to_bits();
    if datatype == "BF16" {
        return (bits >> 16) as u16;
    }
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = ((bits >> 13) & 0x3ff) as u16;
    if exp <= 0 {
        sign
    } else if exp >= 31 {
        sign | 0x7c00
    } else {
        sign | ((exp as u16) << 10) | mantissa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_files_flat_or_nested() {
        let body = br#"{"inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, -4]]},
            {"name": "b", "shape": [3], "datatype": "INT64", "data": [1, -2, 3]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hi"]}
        ]}"#;
        let t = from_json(body).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(t[0].raw.len(), 16);
        assert_eq!(
            t[0].json_data().unwrap(),
            vec![json!(1.0), json!(2.5), json!(3.0), json!(-4.0)]
        );
        assert_eq!(
            t[0].json_nested().unwrap(),
            json!([[1.0, 2.5], [3.0, -4.0]])
        );
        assert_eq!(
            t[1].json_data().unwrap(),
            vec![json!(1), json!(-2), json!(3)]
        );
        assert_eq!(t[2].raw, b"\x02\x00\x00\x00hi");
        assert_eq!(t[2].json_data().unwrap(), vec![json!("hi")]);
    }

    #[test]
    fn json_request_files_that_do_not_add_up() {
        let err = |body: &str| from_json(body.as_bytes()).unwrap_err().to_string();
        assert!(err("[1, 2]").contains("expected an OIP request"));
        let e = format!(
            "{:#}",
            from_json(
                br#"{"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#
            )
            .unwrap_err()
        );
        assert!(e.contains("has 2 elements; its shape [3] holds 3"), "{e}");
        let e = format!(
            "{:#}",
            from_json(
                br#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FLOAT", "data": [1]}]}"#
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown datatype \"FLOAT\""), "{e}");
        let e = format!(
            "{:#}",
            from_json(
                br#"{"inputs": [{"name": "a", "shape": [1], "datatype": "UINT8", "data": [300]}]}"#
            )
            .unwrap_err()
        );
        assert!(e.contains("out of range for UINT8"), "{e}");
    }

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn npy_files() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let t = from_npy("input", &npy("<f4", "(2, 3)", &data)).unwrap();
        assert_eq!((t.datatype.as_str(), t.shape.clone()), ("FP32", vec![2, 3]));
        assert_eq!(t.raw, data);
        let t = from_npy("x", &npy("<i8", "(2,)", &[0; 16])).unwrap();
        assert_eq!((t.datatype.as_str(), t.shape.clone()), ("INT64", vec![2]));

        let e = from_npy("x", &npy("<f4", "(2, 3)", &data[..20]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 24"), "{e}");
        let e = from_npy("x", &npy(">f4", "(1,)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = from_npy("x", b"hello world").unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn generated_inputs_follow_the_metadata_and_the_seed() {
        let meta = json!({"name": "fraud", "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [-1, 30]},
            {"name": "ids", "datatype": "INT64", "shape": [-1, -1]}
        ]});
        let a = generate(&meta, 4, 7).unwrap();
        let b = generate(&meta, 4, 7).unwrap();
        let c = generate(&meta, 4, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a[0].shape, vec![4, 30]);
        assert_eq!(a[0].raw.len(), 4 * 30 * 4);
        assert_eq!(a[1].shape, vec![4, 1]);
        for v in a[0].json_data().unwrap() {
            let x = v.as_f64().unwrap();
            assert!((-1.0..1.0).contains(&x));
        }
        for v in a[1].json_data().unwrap() {
            assert!((0..10).contains(&v.as_i64().unwrap()));
        }
        assert!(generate(&json!({"inputs": []}), 1, 0).is_err());
    }
}
