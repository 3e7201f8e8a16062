//! How the inference table renders decoded payloads: the OIP JSON form,
//! binary tensors as `data`, whatever protocol carried them.

use super::http::codec;
use crate::inference_table::RenderPayload;
use crate::request::{InferRequest, InferResponse};

/// Renders table payloads as OIP JSON; handed to the table at start-up.
pub struct OipJson;

impl RenderPayload for OipJson {
    fn request(&self, request: &InferRequest) -> Vec<u8> {
        codec::encode_request_json(request)
    }

    fn response(&self, response: &InferResponse) -> Vec<u8> {
        codec::encode(response, &Default::default()).body
    }
}
