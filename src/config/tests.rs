use super::*;

fn aliases(model: &str) -> Lookup {
    match model {
        "fraud" => Lookup::Aliases(vec!["champion".into(), "challenger".into()]),
        "offline" => Lookup::Unreachable("MLflow is down".into()),
        _ => Lookup::Unknown,
    }
}

#[test]
fn a_full_endpoint_parses() {
    let text = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "exp-1"
sticky_key = { header = "X-User-Id" }
arms = [{ alias = "champion", weight = 90 }, { alias = "challenger", weight = 10 }]
shadow = { alias = "latest", fraction = 0.25 }
"#;
    let eps = parse(text, &aliases).unwrap().endpoints;
    assert_eq!(eps.len(), 1);
    let e = &eps[0];
    assert_eq!(
        (e.name.as_str(), e.model.as_str(), e.experiment.as_str()),
        ("fraud-ab", "fraud", "exp-1")
    );
    assert_eq!(e.sticky_key, Some(StickyKey::Header("x-user-id".into())));
    assert_eq!(e.arms.len(), 2);
    assert_eq!(e.shadow.as_ref().unwrap().max_in_flight, 16);
    assert_eq!(e.log, LogPolicy::default());
}

#[test]
fn an_unreachable_registry_skips_the_alias_check_but_not_the_rest() {
    let text = "[[endpoint]]\nname = \"e\"\nmodel = \"offline\"\narms = [{ alias = \"champion\", weight = 1 }, { alias = \"canary\", weight = 1 }]\n";
    let eps = parse(text, &aliases).unwrap().endpoints;
    assert_eq!(eps[0].model, "offline");
    assert_eq!(eps[0].arms.len(), 2);
    let bad = text.replace("weight = 1 }]", "weight = -1 }]");
    assert!(parse(&bad, &aliases)
        .unwrap_err()
        .contains("weights must be 0 or more"));
}

#[test]
fn a_readout_parses_with_its_defaults_and_strict_errors() {
    let ab = "[[endpoint]]\nname = \"e\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 1 }, { alias = \"challenger\", weight = 1 }]\n[endpoint.readout]\n";
    let config = parse(
        &format!("{ab}metric = \"accuracy\"\nprediction_output = \"label\"\n"),
        &aliases,
    )
    .unwrap();
    assert_eq!(
        config.readouts,
        vec![ReadoutConfig {
            endpoint: "e".into(),
            metric: crate::experiments::Metric::Accuracy,
            prediction_output: Some("label".into()),
            baseline: "champion".into(),
            min_samples: 200,
            alpha: 0.05,
        }]
    );
    let cases = [
        (
            "metric = \"accuracy\"",
            "line 1: endpoint \"e\": readout: metric \"accuracy\" needs prediction_output",
        ),
        (
            "metric = \"mean\"\nprediction_output = \"label\"",
            "prediction_output is only used by metric \"accuracy\"",
        ),
        (
            "metric = \"mean\"\nbaseline = \"prod\"",
            "baseline \"prod\" is not one of the endpoint's arms (champion, challenger)",
        ),
        (
            "metric = \"mean\"\nmin_samples = 1",
            "min_samples 1 is too small",
        ),
        (
            "metric = \"mean\"\nalpha = 0.5",
            "alpha 0.5 is not between 0 and 0.5",
        ),
        (
            "metric = \"ctr\"",
            "unknown variant `ctr`, expected one of `accuracy`, `conversion`, `mean`",
        ),
        (
            "metric = \"mean\"\nmin_sample = 5",
            "unknown field `min_sample`",
        ),
    ];
    for (body, want) in cases {
        let err = parse(&format!("{ab}{body}\n"), &aliases).unwrap_err();
        assert!(err.contains(want), "{err:?} does not contain {want:?}");
    }
}

#[test]
fn a_model_batching_section_parses_strictly() {
    let text = "[model.fraud.batching]\nmax_batch_size = 64\nmax_queue_delay_us = 200\npreferred_batch_sizes = [32, 8, 16, 64]\nmax_concurrent_batches = 2\n";
    let config = parse(text, &aliases).unwrap();
    let p = &config.batching["fraud"];
    assert_eq!(p.max_batch_size, 64);
    assert_eq!(p.max_queue_delay, std::time::Duration::from_micros(200));
    assert_eq!(p.preferred_batch_sizes, vec![8, 16, 32, 64]);
    assert_eq!(p.max_concurrent_batches, Some(2));
    let defaults = parse("[model.fraud.batching]\nmax_batch_size = 8\n", &aliases).unwrap();
    assert_eq!(
        defaults.batching["fraud"].max_queue_delay,
        std::time::Duration::ZERO
    );
    assert!(defaults.batching["fraud"].preferred_batch_sizes.is_empty());
    assert_eq!(defaults.batching["fraud"].max_concurrent_batches, None);
    let cases = [
            ("\n[model.nope.batching]\nmax_batch_size = 8\n", "line 2: [model.nope]: model \"nope\" is not in the registry"),
            ("[model.fraud.batching]\nmax_batch_size = 1\n", "line 1: [model.fraud.batching]: max_batch_size 1 is not between 2 and 4096"),
            ("[model.fraud.batching]\nmax_batch_size = 8\npreferred_batch_sizes = [16]\n", "preferred batch size 16 is not between 1 and max_batch_size 8"),
            ("[model.fraud.batching]\nmax_batch_size = 8\nmax_delay_us = 5\n", "unknown field `max_delay_us`, expected one of `max_batch_size`, `max_queue_delay_us`, `preferred_batch_sizes`, `max_concurrent_batches`"),
            ("[model.fraud.batching]\nmax_batch_size = 8\nmax_concurrent_batches = 0\n", "line 1: [model.fraud.batching]: max_concurrent_batches 0 is not between 1 and 1024"),
            ("[model.fraud.batching]\nmax_queue_delay_us = 5\n", "missing field `max_batch_size`"),
            ("[model.fraud]\nbatch = true\n", "unknown field `batch`"),
            ("[model.fraud.batching]\nmax_batch_size = -4\n", "max_batch_size"),
        ];
    for (text, want) in cases {
        let err = parse(text, &aliases).unwrap_err();
        assert!(err.contains(want), "{err:?} does not contain {want:?}");
    }
    // An unreachable registry: checked once it answers (at load).
    let offline = parse("[model.offline.batching]\nmax_batch_size = 8\n", &aliases).unwrap();
    assert!(offline.batching.contains_key("offline"));
}

#[test]
fn a_model_onnxruntime_section_parses_strictly() {
    use crate::runtime::options::{ExecutionProvider, GraphOptimization};
    let text = "[model.fraud.onnxruntime]\nintra_op_threads = 4\ngraph_optimization = \"extended\"\nexecution_providers = [\"cuda\", \"cpu\"]\n";
    let o = &parse(text, &aliases).unwrap().onnxruntime["fraud"];
    assert_eq!(o.intra_op_threads, Some(4));
    assert_eq!(o.graph_optimization, Some(GraphOptimization::Extended));
    assert_eq!(
        o.execution_providers,
        Some(vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu])
    );
    assert_eq!(
        (o.inter_op_threads, o.spinning, o.memory_arena),
        (None, None, None)
    );
    let cases = [
        (
            "[model.fraud.onnxruntime]\nspin = true\n",
            "unknown field `spin`",
        ),
        (
            "[model.fraud.onnxruntime]\nspinning = 1\n",
            "invalid type: integer `1`, expected a boolean",
        ),
        (
            "[model.fraud.onnxruntime]\ninter_op_threads = 5000\n",
            "line 1: [model.fraud.onnxruntime]: inter_op_threads 5000 is not between 1 and 1024",
        ),
        (
            "[model.nope.onnxruntime]\nspinning = true\n",
            "model \"nope\" is not in the registry",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text, &aliases).unwrap_err();
        assert!(err.contains(want), "{err:?} does not contain {want:?}");
    }
}

#[test]
fn a_model_backend_parses_and_tract_needs_its_feature() {
    let ort = parse("[model.fraud]\nbackend = \"ort\"\n", &aliases).unwrap();
    assert_eq!(ort.backends["fraud"], Backend::Ort);
    let err = parse("[model.fraud]\nbackend = \"onnx\"\n", &aliases).unwrap_err();
    assert!(
        err.contains("unknown variant `onnx`, expected `ort` or `tract`"),
        "{err}"
    );
    let tract = parse("\n[model.fraud]\nbackend = \"tract\"\n", &aliases);
    if cfg!(feature = "tract") {
        assert_eq!(tract.unwrap().backends["fraud"], Backend::Tract);
    } else {
        let err = tract.unwrap_err();
        assert!(
                err.contains("line 2: [model.fraud] backend: backend \"tract\" needs a Podium built with the tract feature (cargo build --features tract)"),
                "{err}"
            );
    }
}

#[test]
fn errors_name_the_line_and_the_fix() {
    let base = |body: &str| format!("\n[[endpoint]]\nname = \"e\"\nmodel = \"fraud\"\n{body}\n");
    let cases = [
            (base("arms = [{ alias = \"champion\", weight = 0 }]"), "line 2: endpoint \"e\": all arm weights are 0"),
            (base("arms = [{ alias = \"champion\", weight = -1 }]"), "weights must be 0 or more"),
            (base("arms = [{ alias = \"prod\", weight = 1 }]"), "model \"fraud\" has no alias \"prod\" (its aliases: champion, challenger); set it with `podium alias set fraud prod N`"),
            (base("arms = []"), "has no arms"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\nshadow = { alias = \"challenger\", fraction = 2 }"), "shadow fraction 2 is not between 0 and 1"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\nshadow = { alias = \"challenger\", fraction = 0.5, max_in_flight = 0 }"), "line 2: endpoint \"e\": shadow max_in_flight is 0, so no copy to \"challenger\" could ever be sent; allow at least 1 (the default is 16), or remove the shadow"),
            (base("arms = [{ alias = \"champion\", weight = 1 }, { alias = \"champion\", weight = 1 }]"), "listed twice"),
            ("[[endpoint]]\nname = \"e\"\nmodel = \"nope\"\narms = [{ alias = \"champion\", weight = 1 }]".into(), "model \"nope\" is not in the registry"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\ncolour = \"red\""), "unknown field `colour`"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\nlog_sample_fraction = 1.5"), "log_sample_fraction 1.5 is not between 0 and 1"),
            (format!("{}{}", base("arms = [{ alias = \"champion\", weight = 1 }]"), base("arms = [{ alias = \"champion\", weight = 1 }]")), "line 7: endpoint \"e\": the name is used twice"),
        ];
    for (text, want) in cases {
        let err = parse(&text, &aliases).unwrap_err();
        assert!(
            err.contains(want),
            "{err:?} does not contain {want:?}\n{text}"
        );
    }
}
