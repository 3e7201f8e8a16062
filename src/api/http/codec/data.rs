//! A tensor's JSON `data` → its typed element buffer, in one streaming pass.
//!
//! Each number, string or boolean goes from serde's visitor straight into
//! the `Vec` of the declared datatype: no `serde_json::Value` per element,
//! so a body decodes within a small constant × its size. Nested ("natural")
//! lists are flattened row-major while their shape is checked: every list at
//! a depth must have the length of the first one there, and values and lists
//! never share a depth. The first problem in document order is the one
//! reported, naming the element (`data[1][0]`, `element 7`).
//!
//! The same decoder reads from the request text ([`decode`] over a
//! `serde_json::Deserializer`) and from an already parsed `Value` (MLflow's
//! frames, which are reshaped before they become tensors).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;
use crate::tensor::{DataType, TensorData};

/// Lists nested deeper than this are refused: a tensor needs one list level
/// per dimension, and the decoder recurses once per level.
pub const MAX_DEPTH: usize = 100;

/// Decodes `data` of input `name` as `datatype`, reserving room for
/// `capacity` elements up front (a caller's estimate bounded by the body
/// size, never a bare client-declared shape).
pub fn decode<'de, D: Deserializer<'de>>(
    name: &str,
    datatype: DataType,
    capacity: usize,
    data: D,
) -> Result<TensorData, Error> {
    let mut state = State {
        name,
        datatype,
        out: with_capacity(datatype, capacity),
        levels: Vec::new(),
        leaf_depth: None,
        path: Vec::new(),
        count: 0,
        error: None,
    };
    match Node(&mut state).deserialize(data) {
        Ok(()) => Ok(state.out),
        Err(e) => Err(state
            .error
            .take()
            .unwrap_or_else(|| Error::InvalidInput(format!("input \"{name}\" data: {e}")))),
    }
}

/// Decodes an already parsed `value` (see [`decode`]).
pub fn decode_value(name: &str, datatype: DataType, value: &Value) -> Result<TensorData, Error> {
    decode(name, datatype, 0, value)
}

/// What the walk knows so far about the data's nesting, and where it is.
struct State<'a> {
    name: &'a str,
    datatype: DataType,
    out: TensorData,
    /// The length every list at each depth must have; `None` while the first
    /// list at that depth (the one along first elements) is still open.
    levels: Vec<Option<usize>>,
    /// The depth where values live, once the first value (or the first
    /// empty list along first elements) has been seen.
    leaf_depth: Option<usize>,
    /// Indexes from the top to the node being visited.
    path: Vec<usize>,
    /// Values decoded so far: the row-major index of the next one.
    count: usize,
    /// The error to report; serde's own error only says "stop".
    error: Option<Error>,
}

impl State<'_> {
    fn fail<E: serde::de::Error>(&mut self, message: String) -> E {
        self.error = Some(Error::InvalidInput(message));
        E::custom("invalid tensor data")
    }

    fn ragged<E: serde::de::Error>(&mut self, why: String) -> E {
        let message = format!("input \"{}\" data is ragged: {why}", self.name);
        self.fail(message)
    }

    fn at(&self) -> String {
        at(&self.path)
    }

    /// A list has started at the current depth.
    fn open_list<E: serde::de::Error>(&mut self) -> Result<(), E> {
        let depth = self.path.len();
        if depth >= MAX_DEPTH {
            let message = format!(
                "input \"{}\" data nests lists more than {MAX_DEPTH} deep (the recursion limit); a tensor needs one list level per dimension",
                self.name
            );
            return Err(self.fail(message));
        }
        if depth < self.levels.len() {
            return Ok(());
        }
        if self.leaf_depth.is_some() {
            let why = format!(
                "data{} is a list where the other elements at its depth are values; nested lists must be rectangular",
                self.at()
            );
            return Err(self.ragged(why));
        }
        // Still on the chain of first elements: this depth holds lists.
        self.levels.push(None);
        Ok(())
    }

    /// The list at the current depth has ended after `len` elements.
    fn close_list<E: serde::de::Error>(&mut self, len: usize) -> Result<(), E> {
        let depth = self.path.len();
        match self.levels[depth] {
            None => {
                self.levels[depth] = Some(len);
                if len == 0 && self.leaf_depth.is_none() {
                    self.leaf_depth = Some(depth + 1);
                }
                Ok(())
            }
            Some(expected) if expected == len => Ok(()),
            Some(expected) => Err(self.wrong_length(len, expected)),
        }
    }

    fn wrong_length<E: serde::de::Error>(&mut self, len: usize, expected: usize) -> E {
        let mut first = self.path.clone();
        if let Some(last) = first.last_mut() {
            *last = 0;
        }
        let why = format!(
            "data{} has {len} elements but data{} has {expected}; nested lists must be rectangular",
            self.at(),
            at(&first)
        );
        self.ragged(why)
    }

    /// A value at the current depth: checked against the nesting, then
    /// converted into the buffer.
    fn leaf<E: serde::de::Error>(&mut self, leaf: Leaf<'_>) -> Result<(), E> {
        let depth = self.path.len();
        if depth < self.levels.len() {
            let why = format!(
                "data{} is a value where the other elements at its depth are lists; nested lists must be rectangular",
                self.at()
            );
            return Err(self.ragged(why));
        }
        self.leaf_depth.get_or_insert(depth);
        match push(&mut self.out, &leaf) {
            Ok(()) => {
                self.count += 1;
                Ok(())
            }
            Err(problem) => {
                let what = match problem {
                    Problem::NotValid => "which is not a valid",
                    Problem::OutOfRange => "which is out of range for",
                };
                let message = format!(
                    "input \"{}\" element {} is {leaf}, {what} {}",
                    self.name, self.count, self.datatype
                );
                Err(self.fail(message))
            }
        }
    }
}

/// `[0][2]`: where a node sits, as the client would index it.
fn at(path: &[usize]) -> String {
    path.iter().map(|i| format!("[{i}]")).collect()
}

/// One node of the data (a list or a value) at `State::path`.
struct Node<'s, 'a>(&'s mut State<'a>);

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tensor data: a list (possibly nested) or a single value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        state.open_list()?;
        let depth = state.path.len();
        let mut len = 0;
        loop {
            if let Some(expected) = state.levels[depth] {
                if len == expected {
                    // Any further element makes the list too long: count
                    // them for the message without decoding them.
                    let mut extra = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        extra += 1;
                    }
                    if extra > 0 {
                        return Err(state.wrong_length(len + extra, expected));
                    }
                    break;
                }
            }
            state.path.push(len);
            let more = seq.next_element_seed(Node(state))?;
            state.path.pop();
            if more.is_none() {
                break;
            }
            len += 1;
        }
        state.close_list(len)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.leaf(Leaf::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.0.leaf(Leaf::I64(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.leaf(Leaf::U64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.0.leaf(Leaf::F64(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.leaf(Leaf::Str(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.leaf(Leaf::Other(Value::Null))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        // Never a valid element; read it whole so the message can show it.
        let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.0.leaf(Leaf::Other(value))
    }
}

/// One JSON value where a tensor element belongs.
enum Leaf<'a> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
    Other(Value),
}

/// As JSON, the way the client wrote it (for error messages).
impl fmt::Display for Leaf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Bool(b) => write!(f, "{b}"),
            Leaf::I64(x) => write!(f, "{x}"),
            Leaf::U64(x) => write!(f, "{x}"),
            Leaf::F64(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
            Leaf::Str(s) => write!(f, "{}", Value::String((*s).to_string())),
            Leaf::Other(v) => write!(f, "{v}"),
        }
    }
}

enum Problem {
    NotValid,
    OutOfRange,
}

/// An integer element: any JSON integer that fits `T` exactly.
fn int<T: TryFrom<i64> + TryFrom<u64>>(leaf: &Leaf) -> Result<T, Problem> {
    match *leaf {
        Leaf::I64(x) => T::try_from(x).map_err(|_| Problem::NotValid),
        Leaf::U64(x) => T::try_from(x).map_err(|_| Problem::NotValid),
        _ => Err(Problem::NotValid),
    }
}

/// A float element: a JSON number, or the strings "NaN", "Infinity",
/// "-Infinity" (JSON has no tokens for them; MLflow's and pandas' writers
/// emit these names). A finite number too large for the type is refused
/// rather than silently becoming infinity.
fn float<T>(
    leaf: &Leaf,
    convert: impl Fn(f64) -> T,
    is_finite: impl Fn(&T) -> bool,
) -> Result<T, Problem> {
    let x = match *leaf {
        Leaf::F64(x) => x,
        Leaf::I64(x) => x as f64,
        Leaf::U64(x) => x as f64,
        Leaf::Str("NaN" | "nan") => f64::NAN,
        Leaf::Str("Infinity" | "inf") => f64::INFINITY,
        Leaf::Str("-Infinity" | "-inf") => f64::NEG_INFINITY,
        _ => return Err(Problem::NotValid),
    };
    let y = convert(x);
    if x.is_finite() && !is_finite(&y) {
        return Err(Problem::OutOfRange);
    }
    Ok(y)
}

fn push(out: &mut TensorData, leaf: &Leaf) -> Result<(), Problem> {
    match out {
        TensorData::Bool(v) => match *leaf {
            Leaf::Bool(b) => v.push(b),
            _ => return Err(Problem::NotValid),
        },
        TensorData::Uint8(v) => v.push(int(leaf)?),
        TensorData::Uint16(v) => v.push(int(leaf)?),
        TensorData::Uint32(v) => v.push(int(leaf)?),
        TensorData::Uint64(v) => v.push(int(leaf)?),
        TensorData::Int8(v) => v.push(int(leaf)?),
        TensorData::Int16(v) => v.push(int(leaf)?),
        TensorData::Int32(v) => v.push(int(leaf)?),
        TensorData::Int64(v) => v.push(int(leaf)?),
        TensorData::Fp16(v) => v.push(float(leaf, half::f16::from_f64, |y| y.is_finite())?),
        TensorData::Bf16(v) => v.push(float(leaf, half::bf16::from_f64, |y| y.is_finite())?),
        TensorData::Fp32(v) => v.push(float(leaf, |x| x as f32, |y| y.is_finite())?),
        TensorData::Fp64(v) => v.push(float(leaf, |x| x, |y| y.is_finite())?),
        TensorData::Bytes(v) => match *leaf {
            Leaf::Str(s) => v.push(s.as_bytes().to_vec()),
            _ => return Err(Problem::NotValid),
        },
    }
    Ok(())
}

fn with_capacity(datatype: DataType, n: usize) -> TensorData {
    match datatype {
        DataType::Bool => TensorData::Bool(Vec::with_capacity(n)),
        DataType::Uint8 => TensorData::Uint8(Vec::with_capacity(n)),
        DataType::Uint16 => TensorData::Uint16(Vec::with_capacity(n)),
        DataType::Uint32 => TensorData::Uint32(Vec::with_capacity(n)),
        DataType::Uint64 => TensorData::Uint64(Vec::with_capacity(n)),
        DataType::Int8 => TensorData::Int8(Vec::with_capacity(n)),
        DataType::Int16 => TensorData::Int16(Vec::with_capacity(n)),
        DataType::Int32 => TensorData::Int32(Vec::with_capacity(n)),
        DataType::Int64 => TensorData::Int64(Vec::with_capacity(n)),
        DataType::Fp16 => TensorData::Fp16(Vec::with_capacity(n)),
        DataType::Bf16 => TensorData::Bf16(Vec::with_capacity(n)),
        DataType::Fp32 => TensorData::Fp32(Vec::with_capacity(n)),
        DataType::Fp64 => TensorData::Fp64(Vec::with_capacity(n)),
        // Each element is its own allocation; a large up-front list of
        // empty ones would only cost memory.
        DataType::Bytes => TensorData::Bytes(Vec::with_capacity(n.min(1024))),
    }
}
