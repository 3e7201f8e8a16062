//! What every decoder's generated-input ("fuzz") properties share: how long
//! a run is, its seed, hostile building blocks, and the check that an error
//! names the problem.
//!
//! The properties live beside each decoder in a child module named `fuzz`
//! (`api::http::codec::fuzz`, `api::grpc::codec::fuzz`,
//! `api::http::mlflow::{json,csv,frame}::fuzz`, `config::fuzz`,
//! `registry::local::fuzz`), so `cargo test fuzz` runs exactly them and
//! `cargo test` (so `.ci/run`) runs them too.
//!
//! A run is bounded and reproducible: each property runs [`DEFAULT_CASES`]
//! cases (or `PROPTEST_CASES`) from the fixed seed [`DEFAULT_SEED`] (or
//! `PROPTEST_RNG_SEED`). A failure prints the shrunk input and is saved
//! under `proptest-regressions/`, where later runs replay it first.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::error::Error;
use crate::tensor::{DataType, TensorData};

/// Cases per property when `PROPTEST_CASES` is unset: the whole suite then
/// takes about a minute in a debug build on two cores.
pub const DEFAULT_CASES: u32 = 1024;

/// The seed when `PROPTEST_RNG_SEED` is unset, so CI explores the same
/// inputs on every run and a red build is red for the change, not the dice.
pub const DEFAULT_SEED: u64 = 0x0d1c_e5ee_d000_0017;

/// The run's configuration: `cases_scale` multiplies [`DEFAULT_CASES`] for
/// properties that are much cheaper (or dearer) than the rest; the
/// `PROPTEST_CASES` and `PROPTEST_RNG_SEED` variables override both.
pub fn config(cases_scale: f64) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = ((DEFAULT_CASES as f64 * cases_scale) as u32).max(1);
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    config
}

/// Asserts that `err` says something, and, when `needles` is not empty,
/// that it names at least one of them (the tensor, field or file at fault).
pub fn assert_names(err: &Error, needles: &[String]) -> Result<(), TestCaseError> {
    let message = err.to_string();
    prop_assert!(!message.trim().is_empty(), "empty error: {err:?}");
    if !needles.is_empty() {
        prop_assert!(
            needles.iter().any(|n| message.contains(n.as_str())),
            "error {message:?} names none of {needles:?}"
        );
    }
    Ok(())
}

/// OIP datatype names: every valid one, and near misses.
pub fn datatype_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(DataType::ALL.to_vec())
            .prop_map(|d| d.name().to_string()),
        1 => proptest::sample::select(vec!["FLOAT", "fp32", "INT", "STRING", "", "BYTES ", "UINT128"])
            .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// One dimension: mostly small, sometimes zero, negative or absurd.
pub fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0i64..5,
        1 => proptest::sample::select(vec![-1, i64::MIN, i64::MAX, 1 << 32, 1 << 62, 4_000_000_000]),
        1 => any::<i64>(),
    ]
}

/// A shape of rank 0 to 4 built from [`dim`].
pub fn shape() -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::vec(dim(), 0..5)
}

/// Names clients send: plain, with quotes or spaces, non-ASCII, empty.
pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z][a-z0-9_]{0,8}",
        1 => Just(String::new()),
        1 => "[\"\\\\ é€\u{1F600}a-z]{1,6}",
        1 => any::<String>(),
    ]
}

/// Bytes, with a bias towards the values that matter in raw tensors
/// (0 and 1 for BOOL, 0xff for lengths and NaN bit patterns).
pub fn bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![4 => any::<u8>(), 1 => Just(0u8), 1 => Just(1u8), 1 => Just(0xffu8)],
        0..max_len,
    )
}

/// A JSON scalar as text, including what JSON cannot say exactly: floats out
/// of every tensor type's range, big integers, bare `NaN`/`Infinity`.
pub fn json_scalar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<i64>().prop_map(|v| v.to_string()),
        2 => (-300i64..300).prop_map(|v| v.to_string()),
        2 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|v| format!("{v:?}")),
        2 => proptest::sample::select(vec![
            "0", "-0", "1e39", "-1e39", "3.5e38", "65504", "65520", "1e308", "1e400", "-1e400",
            "18446744073709551615", "18446744073709551616", "-9223372036854775809",
            "1e-400", "0.1", "true", "false", "null", "\"NaN\"", "\"Infinity\"",
            "\"-Infinity\"", "\"nan\"", "\"\"", "\"x\"", "\"\\u00e9\"", "\"\\ud800\"",
            "NaN", "Infinity", "-Infinity", "{}", "[]",
        ]).prop_map(String::from),
    ]
}

/// JSON text: scalars, arrays (ragged or not) and objects, nested up to
/// `depth` levels.
pub fn json_text(depth: u32) -> impl Strategy<Value = String> {
    json_scalar_text().prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((name(), inner), 0..4).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Arrays nested deeper than serde_json follows (128 levels): `[[[…]]]`.
pub fn deep_nesting() -> impl Strategy<Value = String> {
    (130usize..3000).prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth)))
}

/// A well-formed tensor: datatype, shape (product ≤ 64) and matching data.
pub fn tensor() -> impl Strategy<Value = (DataType, Vec<i64>, TensorData)> {
    (
        proptest::sample::select(DataType::ALL.to_vec()),
        proptest::collection::vec(0i64..4, 0..4),
    )
        .prop_flat_map(|(datatype, shape)| {
            let n = shape.iter().product::<i64>() as usize;
            (Just(datatype), Just(shape), data(datatype, n))
        })
}

/// `n` elements of `datatype`; BYTES are UTF-8 so they survive JSON.
pub fn data(datatype: DataType, n: usize) -> BoxedStrategy<TensorData> {
    use proptest::collection::vec;
    match datatype {
        DataType::Bool => vec(any::<bool>(), n).prop_map(TensorData::Bool).boxed(),
        DataType::Uint8 => vec(any::<u8>(), n).prop_map(TensorData::Uint8).boxed(),
        DataType::Uint16 => vec(any::<u16>(), n).prop_map(TensorData::Uint16).boxed(),
        DataType::Uint32 => vec(any::<u32>(), n).prop_map(TensorData::Uint32).boxed(),
        DataType::Uint64 => vec(any::<u64>(), n).prop_map(TensorData::Uint64).boxed(),
        DataType::Int8 => vec(any::<i8>(), n).prop_map(TensorData::Int8).boxed(),
        DataType::Int16 => vec(any::<i16>(), n).prop_map(TensorData::Int16).boxed(),
        DataType::Int32 => vec(any::<i32>(), n).prop_map(TensorData::Int32).boxed(),
        DataType::Int64 => vec(any::<i64>(), n).prop_map(TensorData::Int64).boxed(),
        DataType::Fp16 => vec(any::<u16>().prop_map(half::f16::from_bits), n)
            .prop_map(TensorData::Fp16)
            .boxed(),
        DataType::Bf16 => vec(any::<u16>().prop_map(half::bf16::from_bits), n)
            .prop_map(TensorData::Bf16)
            .boxed(),
        DataType::Fp32 => vec(any::<f32>(), n).prop_map(TensorData::Fp32).boxed(),
        DataType::Fp64 => vec(any::<f64>(), n).prop_map(TensorData::Fp64).boxed(),
        DataType::Bytes => vec(".{0,6}".prop_map(String::into_bytes), n)
            .prop_map(TensorData::Bytes)
            .boxed(),
    }
}

/// Debug text compares NaN with NaN and keeps -0 apart from 0.
pub fn same(a: &TensorData, b: &TensorData) -> bool {
    format!("{a:?}") == format!("{b:?}")
}
