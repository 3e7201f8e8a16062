//! Generated endpoint files: random text, and TOML shaped like endpoints
//! with wrong types, unknown aliases and weights or fractions out of range
//! (NaN, infinities, negatives). See [`crate::fuzz`] for how long a run is
//! and how to reproduce one.

use proptest::prelude::*;

use super::{parse, Lookup};
use crate::fuzz;

fn aliases(model: &str) -> Lookup {
    match model {
        "fraud" => Lookup::Aliases(vec!["champion".into(), "challenger".into()]),
        "offline" => Lookup::Unreachable("MLflow is down".into()),
        _ => Lookup::Unknown,
    }
}

/// A TOML number or a wrong-typed value where a number belongs.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..200).prop_map(|v| v.to_string()),
        2 => any::<f64>().prop_map(|v| format!("{v:?}")),
        2 => proptest::sample::select(vec![
            "0", "-1", "0.5", "1.5", "nan", "inf", "-inf", "1e308", "-0.0", "\"10\"", "true", "[]",
        ]).prop_map(String::from),
    ]
}

fn string() -> impl Strategy<Value = String> {
    fuzz::name().prop_map(|s| toml::Value::String(s).to_string())
}

fn alias() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec!["champion", "challenger", "latest", "LATEST", "prod", "v3", "7", "bad alias", ""])
            .prop_map(|s| toml::Value::String(s.into()).to_string()),
        1 => string(),
    ]
}

/// One `[[endpoint]]` table, every field possibly missing or wrong.
fn endpoint() -> impl Strategy<Value = String> {
    (
        prop_oneof![3 => proptest::sample::select(vec!["e", "f"]).prop_map(|s| format!("\"{s}\"")), 1 => string()],
        proptest::sample::select(vec!["\"fraud\"", "\"offline\"", "\"nope\"", "3"]),
        proptest::collection::vec((alias(), number()), 0..4),
        proptest::option::weighted(0.3, (alias(), number(), proptest::option::of(number()))),
        proptest::option::weighted(0.3, number()),
        proptest::option::weighted(0.2, proptest::sample::select(vec![
            "sticky_key = { header = \"X-User\" }",
            "sticky_key = { cookie = \"uid\", header = \"x\" }",
            "sticky_key = \"uid\"",
            "log_payloads = \"no\"",
            "colour = \"red\"",
            "experiment = 7",
        ])),
    )
        .prop_map(|(name, model, arms, shadow, sample, extra)| {
            let arms: Vec<String> = arms
                .into_iter()
                .map(|(a, w)| format!("{{ alias = {a}, weight = {w} }}"))
                .collect();
            let mut text = format!(
                "[[endpoint]]\nname = {name}\nmodel = {model}\narms = [{}]\n",
                arms.join(", ")
            );
            if let Some((alias, fraction, max)) = shadow {
                let max = max.map(|m| format!(", max_in_flight = {m}")).unwrap_or_default();
                text.push_str(&format!("shadow = {{ alias = {alias}, fraction = {fraction}{max} }}\n"));
            }
            if let Some(sample) = sample {
                text.push_str(&format!("log_sample_fraction = {sample}\n"));
            }
            if let Some(extra) = extra {
                text.push_str(extra);
                text.push('\n');
            }
            text
        })
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    /// Any text: a configuration or an error that says where.
    #[test]
    fn random_text_is_answered(text in any::<String>()) {
        if let Err(e) = parse(&text, &aliases) {
            prop_assert!(!e.trim().is_empty());
        }
    }

    /// Endpoint tables with wrong fields: an error names the line (and the
    /// endpoint, once the table is read); what parses is a usable policy.
    #[test]
    fn endpoint_files_name_the_line(endpoints in proptest::collection::vec(endpoint(), 0..4), junk in prop_oneof![
        4 => Just(String::new()),
        1 => fuzz::bytes(12).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        let text = format!("{}{junk}", endpoints.join("\n"));
        match parse(&text, &aliases) {
            Err(e) => {
                prop_assert!(e.contains("line "), "{e:?} names no line\n{text}");
                if e.starts_with("line ") {
                    prop_assert!(e.contains("endpoint \""), "{e:?} names no endpoint\n{text}");
                }
            }
            Ok(parsed) => {
                let parsed = parsed.endpoints;
                for (i, e) in parsed.iter().enumerate() {
                    prop_assert!(!parsed[..i].iter().any(|o| o.name == e.name), "{} twice", e.name);
                    prop_assert!(e.arms.iter().all(|a| a.weight.is_finite() && a.weight >= 0.0));
                    prop_assert!(e.arms.iter().any(|a| a.weight > 0.0));
                    prop_assert!(e.shadow.as_ref().is_none_or(|s| (0.0..=1.0).contains(&s.fraction)));
                    prop_assert!((0.0..=1.0).contains(&e.log.sample_fraction));
                }
            }
        }
    }
}
