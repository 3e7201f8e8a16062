//! MLflow's scoring protocol over the wire: every input format, CSV, one-
//! and multi-output models, every error, and routing on a split endpoint.

mod common;

use common::{client, Server, FRAUD_ROW};
use serde_json::{json, Value};

const P0_V1: f64 = 0.620_603_44;

fn columns() -> Vec<String> {
    (0..30).map(|i| format!("f{i}")).collect()
}

async fn post(
    s: &Server,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .post(s.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}")),
    )
}

fn assert_fraud_v1(v: &Value, rows: usize) {
    let p = &v["predictions"];
    assert_eq!(p["label"], json!(vec![0; rows]), "{v}");
    let probs = p["probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), rows);
    for row in probs {
        assert!((row[0].as_f64().unwrap() - P0_V1).abs() < 1e-5, "{v}");
    }
}

#[tokio::test]
async fn every_json_format_and_csv_give_the_same_predictions() {
    let s = Server::demo(&[]);
    let path = "/serving-endpoints/fraud/invocations";
    let row = json!(FRAUD_ROW.to_vec());
    let record: serde_json::Map<String, Value> = columns()
        .into_iter()
        .zip(FRAUD_ROW.iter().map(|&x| json!(x)))
        .collect();
    let bodies = [
        json!({"dataframe_split": {"columns": columns(), "data": [row, row]}}),
        json!({"dataframe_split": {"columns": columns(), "index": [7, 8], "data": [row, row]}}),
        json!({"dataframe_records": [record, record]}),
        json!({"instances": [row, row]}),
        json!({"instances": [record, record]}),
        json!({"inputs": [row, row]}),
        json!({"inputs": {"input": [row, row]}}),
        json!({"inputs": {"input": [row, row]}, "params": {"anything": 1}, "client_request_id": "abc"}),
    ];
    for body in bodies {
        let (status, headers, v) = post(&s, path, "application/json", body.to_string()).await;
        assert_eq!(status, 200, "{body}: {v}");
        assert_fraud_v1(&v, 2);
        assert_eq!(headers["x-podium-model-version"], "1");
    }
    // Shortest float form, as OIP prints it.
    let (_, _, v) = post(
        &s,
        path,
        "application/json; charset=utf-8",
        json!({"inputs": [row]}).to_string(),
    )
    .await;
    assert_eq!(v["predictions"]["probabilities"][0][0], json!(0.62060344));

    let csv_row: Vec<String> = FRAUD_ROW.iter().map(|x| x.to_string()).collect();
    let csv = format!(
        "{}\n{}\n{}\n",
        columns().join(","),
        csv_row.join(","),
        csv_row.join(",")
    );
    let (status, _, v) = post(&s, path, "text/csv", csv).await;
    assert_eq!(status, 200, "{v}");
    assert_fraud_v1(&v, 2);
}

#[tokio::test]
async fn one_output_comes_back_as_rows_and_columns_can_name_inputs() {
    let s = Server::demo(&[]);
    // mlp has one output: predictions are its rows.
    let row = vec![0.5f32; 64];
    let (status, _, v) = post(
        &s,
        "/serving-endpoints/mlp/invocations",
        "application/json",
        json!({"dataframe_split": {"columns": (0..64).map(|i| format!("x{i}")).collect::<Vec<_>>(), "data": [row, row, row]}}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let rows = v["predictions"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.as_array().unwrap().len() == 10));
    assert_eq!(rows[0], rows[2]);
    // A column named after the input fills it (fixed: x [2,3] -> y = 2x).
    let (status, _, v) = post(
        &s,
        "/serving-endpoints/fixed/invocations",
        "application/json",
        json!({"dataframe_records": [{"x": [1, 2, 3]}, {"x": [4, 5, 6]}]}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["predictions"],
        json!([[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]])
    );
}

#[tokio::test]
async fn errors_come_in_mlflow_shape_and_name_the_fix() {
    let s = Server::demo(&[]);
    let path = "/serving-endpoints/fraud/invocations";
    let row = json!(FRAUD_ROW.to_vec());
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        (
            "list body",
            "application/json",
            "[1, 2]".into(),
            400,
            "BAD_REQUEST",
            "must be a JSON dictionary with exactly one of the input fields",
        ),
        (
            "two keys",
            "application/json",
            json!({"inputs": [row], "instances": [row]}).to_string(),
            400,
            "BAD_REQUEST",
            "got instances, inputs",
        ),
        (
            "no key",
            "application/json",
            json!({"data": [row]}).to_string(),
            400,
            "BAD_REQUEST",
            "got none and unknown keys [\"data\"]",
        ),
        (
            "not JSON",
            "application/json",
            "{".into(),
            400,
            "BAD_REQUEST",
            "not valid JSON",
        ),
        (
            "wrong width",
            "application/json",
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}).to_string(),
            400,
            "BAD_REQUEST",
            "stacked in order into it: that gives 2 columns but it takes 30",
        ),
        (
            "ragged rows",
            "application/json",
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}).to_string(),
            400,
            "BAD_REQUEST",
            "row 1 has 1 values for 2 columns",
        ),
        (
            "duplicate columns",
            "application/json",
            json!({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}).to_string(),
            400,
            "BAD_REQUEST",
            "column \"a\" appears twice",
        ),
        (
            "missing column",
            "application/json",
            json!({"dataframe_records": [{"a": 1}, {"b": 2}]}).to_string(),
            400,
            "BAD_REQUEST",
            "record 0 has no column \"b\"",
        ),
        (
            "unknown input",
            "application/json",
            json!({"inputs": {"features": [row]}}).to_string(),
            400,
            "BAD_REQUEST",
            "names \"features\", which is not an input of the model",
        ),
        (
            "text value",
            "application/json",
            json!({"inputs": [vec!["a"; 30]]}).to_string(),
            400,
            "BAD_REQUEST",
            "element 0 is \"a\", which is not a valid FP32",
        ),
        (
            "form post",
            "application/x-www-form-urlencoded",
            "x=1".into(),
            415,
            "BAD_REQUEST",
            "send application/json or text/csv",
        ),
        (
            "latin-1",
            "text/csv; charset=latin-1",
            "a\n1\n".into(),
            415,
            "BAD_REQUEST",
            "only charset=utf-8",
        ),
        (
            "empty csv",
            "text/csv",
            "".into(),
            400,
            "BAD_REQUEST",
            "the CSV body is empty",
        ),
    ];
    for (what, content_type, body, status, code, want) in cases {
        let (got, _, v) = post(&s, path, content_type, body).await;
        assert_eq!(got, status, "{what}: {v}");
        assert_eq!(v["error_code"], code, "{what}: {v}");
        assert!(v["message"].as_str().unwrap().contains(want), "{what}: {v}");
    }
    let (status, _, v) = post(
        &s,
        "/serving-endpoints/nope/invocations",
        "application/json",
        json!({"inputs": [row]}).to_string(),
    )
    .await;
    assert_eq!(
        (status, v["error_code"].clone()),
        (404, json!("RESOURCE_DOES_NOT_EXIST"))
    );
    // Several models and no --default-endpoint: /invocations says what to do.
    let (status, _, v) = post(
        &s,
        "/invocations",
        "application/json",
        json!({"inputs": [row]}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("start it with --default-endpoint NAME"),
        "{v}"
    );
    for path in ["/ping", "/health", "/version"] {
        assert_eq!(s.get_status(path).await, 200, "{path}");
    }
}

#[tokio::test]
async fn invocations_follow_the_endpoint_split_and_the_default_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        "[[endpoint]]\nname = \"fraud-ab\"\nmodel = \"fraud\"\nsticky_key = { header = \"x-user-id\" }\narms = [{ alias = \"champion\", weight = 50 }, { alias = \"challenger\", weight = 50 }]\n",
    )
    .unwrap();
    let s = Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--default-endpoint",
            "fraud-ab",
        ],
    );
    let body = json!({"inputs": [FRAUD_ROW.to_vec()]}).to_string();
    let mut seen = std::collections::HashMap::new();
    for i in 0..40 {
        let resp = client()
            .post(s.url("/invocations"))
            .header("content-type", "application/json")
            .header("x-user-id", format!("user-{i}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-podium-endpoint"], "fraud-ab");
        let arm = resp.headers()["x-podium-arm"].to_str().unwrap().to_string();
        let version = resp.headers()["x-podium-model-version"]
            .to_str()
            .unwrap()
            .to_string();
        let v: Value = resp.json().await.unwrap();
        let p0 = v["predictions"]["probabilities"][0][0].as_f64().unwrap();
        let want = if arm == "champion" {
            ("1", P0_V1)
        } else {
            ("2", 0.881_607_65)
        };
        assert_eq!(version, want.0, "{arm}");
        assert!((p0 - want.1).abs() < 1e-5, "{arm}: {p0}");
        *seen.entry(arm).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "a 50/50 split over 40 users used one arm: {seen:?}"
    );
    // The override header works here too.
    let resp = client()
        .post(s.url("/serving-endpoints/fraud-ab/invocations"))
        .header("content-type", "application/json")
        .header("x-podium-arm", "challenger")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-podium-arm"], "challenger");
    assert_eq!(resp.headers()["x-podium-model-version"], "2");
}

#[tokio::test]
async fn missing_values_are_nan_as_mlflow_reads_them() {
    let s = Server::demo(&[]);
    let path = "/serving-endpoints/fraud/invocations";
    // Python's json.dumps writes NaN bare; MLflow's client sends it so.
    let mut cells: Vec<String> = FRAUD_ROW.iter().map(|x| x.to_string()).collect();
    cells[3] = "NaN".into();
    cells[4] = "-Infinity".into();
    let body = format!(
        "{{\"dataframe_split\": {{\"columns\": {}, \"data\": [[{}]]}}, \"params\": {{\"note\": \"NaN in a string stays text\"}}}}",
        json!(columns()),
        cells.join(", ")
    );
    let (status, _, v) = post(&s, path, "application/json", body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"]["label"].as_array().unwrap().len(), 1);
    // CSV: "nan" and an empty cell are missing values too.
    cells[3] = "nan".into();
    cells[4] = String::new();
    let csv = format!("{}\n{}\n", columns().join(","), cells.join(","));
    let (status, _, v) = post(&s, path, "text/csv", csv).await;
    assert_eq!(status, 200, "{v}");
    // An empty frame is named as such.
    let body = json!({"dataframe_split": {"columns": [], "data": []}}).to_string();
    let (status, _, v) = post(&s, path, "application/json", body).await;
    assert_eq!(status, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the data frame is empty"),
        "{v}"
    );
}
