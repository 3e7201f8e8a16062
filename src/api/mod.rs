//! The protocols: each decodes to [`crate::request::InferRequest`] and
//! encodes [`crate::request::InferResponse`]; nothing below knows about them.

pub mod error;
pub mod http;
