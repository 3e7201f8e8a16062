//! Protocol-free tensors: the datatypes of the Open Inference Protocol and
//! the element buffers Podium moves between the wire and the model.
//!
//! A [`Tensor`] is always consistent: its shape's element count equals the
//! number of elements it holds. The check happens once, in [`Tensor::new`],
//! for every protocol, and it never allocates from a client-declared shape.

use std::fmt;

use half::{bf16, f16};

use crate::error::Error;

/// An OIP datatype (the names on the wire: `FP32`, `INT64`, `BYTES`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    /// Variable-length byte strings; ONNX `string` tensors.
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The OIP wire name.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses an OIP wire name; the error lists the valid names.
    pub fn parse(name: &str) -> Result<DataType, Error> {
        DataType::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = DataType::ALL.iter().map(|d| d.name()).collect();
                Error::InvalidInput(format!(
                    "unknown datatype \"{name}\"; use one of {}",
                    valid.join(", ")
                ))
            })
    }

    /// FP16, BF16, FP32 or FP64.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64
        )
    }

    /// Bytes per element in the binary (raw) form; `None` for BYTES.
    pub fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a tensor, flattened row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Bf16(Vec<bf16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any variant.
#[macro_export]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::Uint8($v) => $body,
            $crate::tensor::TensorData::Uint16($v) => $body,
            $crate::tensor::TensorData::Uint32($v) => $body,
            $crate::tensor::TensorData::Uint64($v) => $body,
            $crate::tensor::TensorData::Int8($v) => $body,
            $crate::tensor::TensorData::Int16($v) => $body,
            $crate::tensor::TensorData::Int32($v) => $body,
            $crate::tensor::TensorData::Int64($v) => $body,
            $crate::tensor::TensorData::Fp16($v) => $body,
            $crate::tensor::TensorData::Bf16($v) => $body,
            $crate::tensor::TensorData::Fp32($v) => $body,
            $crate::tensor::TensorData::Fp64($v) => $body,
            $crate::tensor::TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Bf16(_) => DataType::Bf16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes the raw (binary) form: little-endian, row-major, no padding;
    /// BYTES as a 4-byte little-endian length before each element.
    pub fn from_raw(datatype: DataType, raw: &[u8]) -> Result<TensorData, String> {
        fn chunks<const N: usize, T>(
            raw: &[u8],
            f: impl Fn([u8; N]) -> T,
        ) -> Result<Vec<T>, String> {
            if !raw.len().is_multiple_of(N) {
                return Err(format!(
                    "{} bytes is not a whole number of {N}-byte elements",
                    raw.len()
                ));
            }
            Ok(raw
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
                .collect())
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(
                raw.iter()
                    .map(|&b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        other => Err(format!("BOOL bytes must be 0 or 1, found {other}")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
            DataType::Int8 => TensorData::Int8(raw.iter().map(|&b| b as i8).collect()),
            DataType::Uint16 => TensorData::Uint16(chunks(raw, u16::from_le_bytes)?),
            DataType::Int16 => TensorData::Int16(chunks(raw, i16::from_le_bytes)?),
            DataType::Fp16 => TensorData::Fp16(chunks(raw, f16::from_le_bytes)?),
            DataType::Bf16 => TensorData::Bf16(chunks(raw, bf16::from_le_bytes)?),
            DataType::Uint32 => TensorData::Uint32(chunks(raw, u32::from_le_bytes)?),
            DataType::Int32 => TensorData::Int32(chunks(raw, i32::from_le_bytes)?),
            DataType::Fp32 => TensorData::Fp32(chunks(raw, f32::from_le_bytes)?),
            DataType::Uint64 => TensorData::Uint64(chunks(raw, u64::from_le_bytes)?),
            DataType::Int64 => TensorData::Int64(chunks(raw, i64::from_le_bytes)?),
            DataType::Fp64 => TensorData::Fp64(chunks(raw, f64::from_le_bytes)?),
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut rest = raw;
                while !rest.is_empty() {
                    let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                        return Err(format!(
                            "BYTES element {} has a truncated 4-byte length prefix",
                            out.len()
                        ));
                    };
                    let len = u32::from_le_bytes(*len) as usize;
                    if tail.len() < len {
                        return Err(format!(
                            "BYTES element {} declares {len} bytes but only {} remain",
                            out.len(),
                            tail.len()
                        ));
                    }
                    let (elem, tail) = tail.split_at(len);
                    out.push(elem.to_vec());
                    rest = tail;
                }
                TensorData::Bytes(out)
            }
        })
    }

    /// Appends the raw (binary) form to `out`; see [`TensorData::from_raw`].
    pub fn write_raw(&self, out: &mut Vec<u8>) {
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::Uint8(v) => out.extend_from_slice(v),
            TensorData::Int8(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::Uint16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Int16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Fp16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Bf16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Uint32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Int32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Fp32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Uint64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Int64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Fp64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Bytes(v) => {
                for elem in v {
                    out.extend_from_slice(&(elem.len() as u32).to_le_bytes());
                    out.extend_from_slice(elem);
                }
            }
        }
    }

    /// Size of the raw form in bytes.
    pub fn raw_len(&self) -> usize {
        match self {
            TensorData::Bytes(v) => v.iter().map(|e| 4 + e.len()).sum(),
            other => other.len() * other.datatype().element_size().unwrap_or(0),
        }
    }
}

/// One named tensor of a request or response.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor after checking the shape: non-negative dimensions
    /// whose product equals the number of elements sent.
    pub fn new(name: String, shape: Vec<i64>, data: TensorData) -> Result<Tensor, Error> {
        let expected = element_count(&shape).map_err(|why| {
            Error::InvalidInput(format!(
                "input \"{name}\" has shape {}: {why}",
                fmt_shape(&shape)
            ))
        })?;
        if expected != data.len() as u64 {
            return Err(Error::InvalidInput(format!(
                "input \"{name}\" has shape {} ({expected} elements) but {} {} values were sent",
                fmt_shape(&shape),
                data.len(),
                data.datatype(),
            )));
        }
        Ok(Tensor { name, shape, data })
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// The number of elements a shape holds, or why it cannot hold any.
pub fn element_count(shape: &[i64]) -> Result<u64, String> {
    shape.iter().try_fold(1u64, |acc, &d| {
        let d = u64::try_from(d).map_err(|_| format!("dimension {d} is negative"))?;
        acc.checked_mul(d)
            .ok_or_else(|| "its element count overflows 64 bits".to_string())
    })
}

/// `[1,30]` / `[-1,30]`: how shapes appear in error messages.
pub fn fmt_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_every_datatype() {
        let samples = vec![
            TensorData::Bool(vec![true, false]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![1, u16::MAX]),
            TensorData::Uint32(vec![1, u32::MAX]),
            TensorData::Uint64(vec![1, u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![i16::MIN, 3]),
            TensorData::Int32(vec![i32::MIN, 3]),
            TensorData::Int64(vec![i64::MIN, 3]),
            TensorData::Fp16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::Bf16(vec![bf16::from_f32(1.5), bf16::from_f32(-2.0)]),
            TensorData::Fp32(vec![1.25, -0.5]),
            TensorData::Fp64(vec![1e300, -0.5]),
            TensorData::Bytes(vec![b"".to_vec(), "héllo".as_bytes().to_vec()]),
        ];
        for data in samples {
            let mut raw = Vec::new();
            data.write_raw(&mut raw);
            assert_eq!(raw.len(), data.raw_len(), "{}", data.datatype());
            let back = TensorData::from_raw(data.datatype(), &raw).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn bytes_raw_layout_is_length_prefixed() {
        let mut raw = Vec::new();
        TensorData::Bytes(vec![b"ab".to_vec()]).write_raw(&mut raw);
        assert_eq!(raw, vec![2, 0, 0, 0, b'a', b'b']);
    }

    #[test]
    fn raw_errors_name_the_problem() {
        let err = TensorData::from_raw(DataType::Fp32, &[0; 7]).unwrap_err();
        assert!(err.contains("7 bytes"), "{err}");
        let err = TensorData::from_raw(DataType::Bytes, &[9, 0, 0, 0, b'a']).unwrap_err();
        assert!(err.contains("declares 9 bytes"), "{err}");
        let err = TensorData::from_raw(DataType::Bool, &[2]).unwrap_err();
        assert!(err.contains("0 or 1"), "{err}");
    }

    #[test]
    fn absurd_shapes_are_rejected_without_allocating() {
        let err = Tensor::new(
            "x".into(),
            vec![1_000_000_000, 8],
            TensorData::Fp32(vec![0.0; 8]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[1000000000,8] (8000000000 elements) but 8 FP32 values"),
            "{err}"
        );
        let err = Tensor::new("x".into(), vec![i64::MAX, 4], TensorData::Fp32(vec![]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("overflows"), "{err}");
        let err = Tensor::new("x".into(), vec![-1, 4], TensorData::Fp32(vec![]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative"), "{err}");
    }

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.name()).unwrap(), d);
        }
        let err = DataType::parse("FLOAT").unwrap_err().to_string();
        assert!(err.contains("FP32"), "{err}");
    }
}
