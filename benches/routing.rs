//! The cost of routing one request: hashing the sticky key into a bucket,
//! picking the arm, and the whole `RouteTable::route` call the core makes.
//!
//! ```text
//! cargo bench --bench routing
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use podium::routing::{split, Arm, Endpoint, RouteKeys, RouteTable, Shadow, StickyKey};

fn endpoint(sticky: bool, shadow: bool) -> Endpoint {
    Endpoint::new(
        "fraud-ab".into(),
        "fraud".into(),
        "fraud-2026-11".into(),
        vec![
            Arm {
                alias: "champion".into(),
                weight: 90.0,
            },
            Arm {
                alias: "challenger".into(),
                weight: 10.0,
            },
        ],
        sticky.then(|| StickyKey::Header("x-user-id".into())),
        shadow.then(|| Shadow {
            alias: "challenger".into(),
            fraction: 0.1,
            max_in_flight: 16,
        }),
    )
    .unwrap()
}

fn routing(c: &mut Criterion) {
    c.bench_function("split::bucket (experiment + 12-byte key)", |b| {
        b.iter(|| split::bucket(black_box("fraud-2026-11"), black_box("user-1234567")))
    });
    let bounds = split::bounds(&[90.0, 10.0]).unwrap();
    c.bench_function("split::pick (2 arms)", |b| {
        b.iter(|| split::pick(black_box(&bounds), black_box(9_321)))
    });

    let sticky = endpoint(true, false);
    let user = RouteKeys {
        arm_override: None,
        unit_id: Some("user-1234567"),
    };
    c.bench_function("Endpoint::route (sticky header, 90/10)", |b| {
        b.iter(|| sticky.route(black_box(None), black_box(user)))
    });
    let random = endpoint(false, true);
    c.bench_function("Endpoint::route (weighted random, 10% shadow)", |b| {
        b.iter(|| random.route(black_box(None), black_box(RouteKeys::default())))
    });
    let table = RouteTable::new(vec![endpoint(true, false)]);
    c.bench_function("RouteTable::route (configured endpoint, sticky)", |b| {
        b.iter(|| table.route(black_box("fraud-ab"), black_box(None), black_box(user)))
    });
    c.bench_function("RouteTable::route (plain model, champion)", |b| {
        b.iter(|| {
            table.route(
                black_box("mlp"),
                black_box(None),
                black_box(RouteKeys::default()),
            )
        })
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
