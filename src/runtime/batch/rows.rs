//! Tensors joined and split along the batch dimension (dim 0), for every
//! datatype: the requests of a batch are concatenated in order, and each
//! caller gets back exactly its rows of every output.

use crate::tensor::{Tensor, TensorData};

/// Builds `TensorData::$variant(expr)` for whichever variant `$data` is,
/// with `$v` bound to its inner `Vec`.
macro_rules! same_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::Uint8($v) => TensorData::Uint8($body),
            TensorData::Uint16($v) => TensorData::Uint16($body),
            TensorData::Uint32($v) => TensorData::Uint32($body),
            TensorData::Uint64($v) => TensorData::Uint64($body),
            TensorData::Int8($v) => TensorData::Int8($body),
            TensorData::Int16($v) => TensorData::Int16($body),
            TensorData::Int32($v) => TensorData::Int32($body),
            TensorData::Int64($v) => TensorData::Int64($body),
            TensorData::Fp16($v) => TensorData::Fp16($body),
            TensorData::Bf16($v) => TensorData::Bf16($body),
            TensorData::Fp32($v) => TensorData::Fp32($body),
            TensorData::Fp64($v) => TensorData::Fp64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

/// The rows of a request: dim 0 of every input, when they all agree and
/// every input has one. `None`: the request cannot be split by rows.
pub(super) fn rows_of(inputs: &[Tensor]) -> Option<usize> {
    let first = *inputs.first()?.shape.first()?;
    inputs
        .iter()
        .all(|t| t.shape.first() == Some(&first))
        .then_some(first)
        .and_then(|d| usize::try_from(d).ok())
}

/// Every input's shape without dim 0: requests concatenate only with
/// requests whose other dimensions are the same.
pub(super) fn batch_key(inputs: &[Tensor]) -> Vec<Vec<i64>> {
    inputs.iter().map(|t| t.shape[1..].to_vec()).collect()
}

/// Joins the requests' inputs (each in the signature's order, with the same
/// datatypes and [`batch_key`]) into one request of `rows` rows.
pub(super) fn concat<'a>(
    requests: impl Iterator<Item = &'a [Tensor]> + Clone,
    rows: usize,
) -> Vec<Tensor> {
    let Some(first) = requests.clone().next() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, head)| {
            let elements = head.data.len() / head.shape[0].max(1) as usize * rows;
            let data = same_variant!(&head.data, v => {
                let mut out = Vec::with_capacity(elements);
                out.extend_from_slice(v);
                out
            });
            let data = requests
                .clone()
                .skip(1)
                .fold(data, |acc, inputs| append(acc, &inputs[i].data));
            let mut shape = head.shape.clone();
            shape[0] = rows as i64;
            Tensor {
                name: head.name.clone(),
                shape,
                data,
            }
        })
        .collect()
}

/// `acc` with `more`'s elements after its own; `more` has `acc`'s datatype.
fn append(acc: TensorData, more: &TensorData) -> TensorData {
    macro_rules! join {
        ($($variant:ident),*) => {
            match (acc, more) {
                $((TensorData::$variant(mut a), TensorData::$variant(b)) => {
                    a.extend_from_slice(b);
                    TensorData::$variant(a)
                })*
                // Checked against one signature, so never reached; keep `acc`.
                (acc, _) => acc,
            }
        };
    }
    join!(
        Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
        Bytes
    )
}

/// Rows `start..start + rows` of `output`, whose dim 0 counts the rows of
/// the whole batch.
pub(super) fn slice(output: &Tensor, start: usize, rows: usize) -> Tensor {
    let total = output.shape[0].max(1) as usize;
    let per_row = output.data.len() / total;
    let range = start * per_row..(start + rows) * per_row;
    let mut shape = output.shape.clone();
    shape[0] = rows as i64;
    Tensor {
        name: output.name.clone(),
        shape,
        data: same_variant!(&output.data, v => v[range.clone()].to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    fn t(shape: Vec<i64>, data: TensorData) -> Tensor {
        Tensor::new("x".into(), shape, data).unwrap()
    }

    #[test]
    fn every_datatype_round_trips_through_concat_and_slice() {
        let pairs = vec![
            (
                TensorData::Bool(vec![true, false]),
                TensorData::Bool(vec![false, false, true, true]),
            ),
            (
                TensorData::Uint8(vec![1, 2]),
                TensorData::Uint8(vec![3, 4, 5, 6]),
            ),
            (
                TensorData::Uint16(vec![1, 2]),
                TensorData::Uint16(vec![3, 4, 5, 6]),
            ),
            (
                TensorData::Uint32(vec![1, 2]),
                TensorData::Uint32(vec![3, 4, 5, 6]),
            ),
            (
                TensorData::Uint64(vec![1, 2]),
                TensorData::Uint64(vec![3, 4, 5, u64::MAX]),
            ),
            (
                TensorData::Int8(vec![-1, 2]),
                TensorData::Int8(vec![3, 4, 5, 6]),
            ),
            (
                TensorData::Int16(vec![-1, 2]),
                TensorData::Int16(vec![3, 4, 5, 6]),
            ),
            (
                TensorData::Int32(vec![-1, 2]),
                TensorData::Int32(vec![3, 4, 5, 6]),
            ),
            (
                TensorData::Int64(vec![-1, 2]),
                TensorData::Int64(vec![3, 4, 5, i64::MIN]),
            ),
            (
                TensorData::Fp16(vec![f16::from_f32(0.5); 2]),
                TensorData::Fp16(vec![f16::from_f32(-1.5); 4]),
            ),
            (
                TensorData::Bf16(vec![bf16::from_f32(0.5); 2]),
                TensorData::Bf16(vec![bf16::from_f32(-1.5); 4]),
            ),
            (
                TensorData::Fp32(vec![0.5, 1.5]),
                TensorData::Fp32(vec![2.5, 3.5, 4.5, 5.5]),
            ),
            (
                TensorData::Fp64(vec![0.5, 1.5]),
                TensorData::Fp64(vec![2.5, 3.5, 4.5, 5.5]),
            ),
            (
                TensorData::Bytes(vec![b"a".to_vec(), b"".to_vec()]),
                TensorData::Bytes(vec![
                    b"bc".to_vec(),
                    "é".into(),
                    b"d".to_vec(),
                    b"e".to_vec(),
                ]),
            ),
        ];
        for (one, two) in pairs {
            let dtype = one.datatype();
            // One request of 1 row and one of 2 rows, 2 columns each.
            let a = vec![t(vec![1, 2], one)];
            let b = vec![t(vec![2, 2], two)];
            assert_eq!(rows_of(&a), Some(1));
            assert_eq!(rows_of(&b), Some(2));
            assert_eq!(batch_key(&a), batch_key(&b));
            let joined = concat([a.as_slice(), b.as_slice()].into_iter(), 3);
            assert_eq!(joined[0].shape, vec![3, 2], "{dtype}");
            assert_eq!(joined[0].data.len(), 6, "{dtype}");
            assert_eq!(slice(&joined[0], 0, 1), a[0], "{dtype}");
            assert_eq!(slice(&joined[0], 1, 2), b[0], "{dtype}");
        }
    }

    #[test]
    fn rows_need_every_input_to_agree_on_dim_0() {
        let a = t(vec![2, 1], TensorData::Fp32(vec![0.0; 2]));
        let b = t(vec![3], TensorData::Int64(vec![0; 3]));
        assert_eq!(rows_of(&[a.clone(), b]), None);
        let scalar = t(vec![], TensorData::Fp32(vec![0.0]));
        assert_eq!(rows_of(&[scalar]), None);
        assert_eq!(rows_of(&[]), None);
        assert_eq!(rows_of(&[a]), Some(2));
    }
}
