//! The readout end to end in memory: calls tracked, feedback joined, the
//! view's counts and decisions.

use std::time::Duration;

use super::*;

fn config(metric: Metric, min_samples: u64) -> ReadoutConfig {
    ReadoutConfig {
        endpoint: "fraud-ab".into(),
        metric,
        prediction_output: (metric == Metric::Accuracy).then(|| "label".into()),
        baseline: "champion".into(),
        min_samples,
        alpha: 0.05,
    }
}

fn policy(champion: f64, challenger: f64) -> Vec<ArmPolicy> {
    [("champion", champion, 1), ("challenger", challenger, 2)]
        .into_iter()
        .map(|(alias, weight, version)| ArmPolicy {
            alias: alias.into(),
            weight,
            version: Some(version),
            outputs: Some(vec!["label".into(), "probabilities".into()]),
        })
        .collect()
}

/// Tracks one answered call to `arm`; answers its request id.
fn call(e: &Experiments, arm: &str, client: Option<&str>, prediction: f64) -> String {
    let tracker = e.tracker("fraud-ab").unwrap();
    let id = tracker.request_id();
    tracker.record(CallRecord {
        client_request_id: client,
        arm,
        version: Some(if arm == "champion" { 1 } else { 2 }),
        ok: true,
        latency: Duration::from_millis(2),
        prediction: Some(Prediction::Number(prediction)),
    });
    id
}

fn label(id: &str, label: Label) -> FeedbackItem {
    FeedbackItem {
        key: Key::request_id(id),
        label,
    }
}

#[test]
fn feedback_joins_calls_and_counts_per_arm() {
    let e = Experiments::new(vec![config(Metric::Accuracy, 2)], 100).unwrap();
    assert!(e.tracker("other").is_none());
    let a = call(&e, "champion", None, 1.0);
    let b = call(&e, "champion", Some("order-2"), 0.0);
    let c = call(&e, "challenger", None, 1.0);
    let outcome = e
        .apply(&[
            label(&a, Label::Number(1.0)), // right
            FeedbackItem {
                key: Key::ClientRequestId("order-2".into()),
                label: Label::Bool(true), // wrong: predicted 0
            },
            label(&c, Label::Text("1".into())), // right
            label(&a, Label::Number(0.0)),      // duplicate: the first label stays
            label(&uuid::Uuid::nil().to_string(), Label::Number(1.0)),
            label("not-a-uuid", Label::Number(1.0)),
        ])
        .unwrap();
    assert_eq!(
        (outcome.matched, outcome.duplicates, outcome.unmatched),
        (3, 1, 2)
    );
    let b_id = uuid::Uuid::parse_str(&b).unwrap().as_u128();
    assert_eq!(outcome.request_ids[1], Some(b_id));
    let view = e
        .endpoint("fraud-ab")
        .unwrap()
        .view("exp", "fraud", &policy(50.0, 50.0));
    let arm = |alias: &str| view.arms.iter().find(|a| a.arm == alias).unwrap();
    assert_eq!((arm("champion").requests, arm("champion").feedback), (2, 2));
    assert_eq!(arm("champion").metric.value, Some(0.5));
    assert_eq!(arm("challenger").metric.value, Some(1.0));
    assert_eq!(view.comparisons.len(), 1);
    assert_eq!(view.comparisons[0].diff, Some(0.5));
    assert_eq!(view.comparisons[0].decision, Decision::InsufficientData); // 1 label < 2
}

#[test]
fn a_label_the_metric_cannot_count_refuses_the_whole_batch() {
    let e = Experiments::new(vec![config(Metric::Conversion, 2)], 100).unwrap();
    let a = call(&e, "champion", None, 0.0);
    let b = call(&e, "challenger", None, 0.0);
    let err = e
        .apply(&[label(&a, Label::Number(1.0)), label(&b, Label::Number(0.5))])
        .unwrap_err();
    assert_eq!(err.index, 1);
    assert!(err.why.contains("send 0, 1, true or false"), "{}", err.why);
    assert!(err.why.contains("endpoint \"fraud-ab\""), "{}", err.why);
    // Nothing was applied: the first item still joins as a first label.
    let again = e.apply(&[label(&a, Label::Number(1.0))]).unwrap();
    assert_eq!(again.matched, 1);
}

#[test]
fn decisions_wait_for_min_samples_then_follow_the_always_valid_p_value() {
    let e = Experiments::new(vec![config(Metric::Conversion, 50)], 10_000).unwrap();
    let mut items = Vec::new();
    for i in 0..200 {
        // Champion converts 20 %, challenger 60 %.
        let champion = call(&e, "champion", None, 0.0);
        items.push(label(&champion, Label::Bool(i % 5 == 0)));
        let challenger = call(&e, "challenger", None, 0.0);
        items.push(label(&challenger, Label::Bool(i % 5 < 3)));
    }
    let view = |e: &Experiments| {
        e.endpoint("fraud-ab")
            .unwrap()
            .view("x", "fraud", &policy(1.0, 1.0))
    };
    e.apply(&items[..40]).unwrap();
    assert_eq!(view(&e).comparisons[0].decision, Decision::InsufficientData);
    assert_eq!(view(&e).comparisons[0].always_valid_p_value, 1.0);
    e.apply(&items[40..]).unwrap();
    let v = view(&e);
    assert_eq!(v.comparisons[0].decision, Decision::Better, "{v:?}");
    assert!(v.comparisons[0].always_valid_p_value < 0.05);
    assert!(v.srm.ok);
    // The same data against a 90/10 split: the split is not trustworthy.
    let skewed = e
        .endpoint("fraud-ab")
        .unwrap()
        .view("x", "fraud", &policy(9.0, 1.0));
    assert!(!skewed.srm.ok);
    assert_eq!(skewed.comparisons[0].decision, Decision::SrmFailed);
}

#[test]
fn evictions_are_counted_and_failed_calls_never_join() {
    let e = Experiments::new(vec![config(Metric::Mean, 2)], 2).unwrap();
    let first = call(&e, "champion", None, 0.0);
    let tracker = e.tracker("fraud-ab").unwrap();
    let failed = tracker.request_id();
    tracker.record(CallRecord {
        client_request_id: None,
        arm: "challenger",
        version: None,
        ok: false,
        latency: Duration::from_millis(1),
        prediction: None,
    });
    call(&e, "champion", None, 0.0); // replaces `first`
    call(&e, "champion", None, 0.0);
    assert_eq!(e.ledger_usage(), (2, 2));
    let outcome = e
        .apply(&[
            label(&first, Label::Number(2.0)),
            label(&failed, Label::Number(2.0)),
        ])
        .unwrap();
    assert_eq!(outcome.unmatched, 2);
    let v = e
        .endpoint("fraud-ab")
        .unwrap()
        .view("x", "fraud", &policy(1.0, 1.0));
    let challenger = v.arms.iter().find(|a| a.arm == "challenger").unwrap();
    assert_eq!((challenger.requests, challenger.errors), (1, 1));
    assert_eq!(challenger.error_rate, Some(1.0));
}

#[test]
fn the_view_warns_about_a_missing_prediction_output() {
    let e = Experiments::new(vec![config(Metric::Accuracy, 2)], 10).unwrap();
    let mut p = policy(1.0, 1.0);
    p[1].outputs = Some(vec!["scores".into()]);
    let v = e.endpoint("fraud-ab").unwrap().view("x", "fraud", &p);
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    assert!(
        v.warnings[0].contains(
            "arm \"challenger\" (version 2) has no output \"label\" (its outputs: scores)"
        ),
        "{}",
        v.warnings[0]
    );
}
