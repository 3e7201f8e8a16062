//! Assignment of a request to an arm: a unit id (the sticky key) hashed with
//! the experiment into one of 10,000 buckets, and buckets cut into arms by
//! cumulative weight. The same key lands in the same arm across restarts and
//! replicas; changing the weights moves only the buckets between the old and
//! the new cut points.

/// Buckets per experiment: weights resolve to 0.01 %.
pub const BUCKETS: u32 = 10_000;

/// The bucket of `key` in `experiment`: FNV-1a over both (separated so that
/// ("ab","c") and ("a","bc") differ), then a 64-bit finaliser so that
/// similar keys spread evenly. Stable across processes and versions.
pub fn bucket(experiment: &str, key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in experiment
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(key.as_bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (mix(h) % BUCKETS as u64) as u32
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Cumulative upper bounds in [0, BUCKETS] for `weights`; None when they
/// are all zero. A zero-weight arm gets an empty range.
pub fn bounds(weights: &[f64]) -> Option<Vec<u32>> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut cumulative = 0.0;
    let mut out: Vec<u32> = weights
        .iter()
        .map(|w| {
            cumulative += w;
            ((cumulative / total) * BUCKETS as f64).round() as u32
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last = BUCKETS;
    }
    Some(out)
}

/// The arm whose range holds `bucket`.
pub fn pick(bounds: &[u32], bucket: u32) -> usize {
    bounds
        .iter()
        .position(|&b| bucket < b)
        .unwrap_or(bounds.len().saturating_sub(1))
}

/// A uniformly random bucket, for requests without a sticky key.
pub fn random_bucket() -> u32 {
    fastrand::u32(..BUCKETS)
}

/// A uniform number in [0, 1), for shadow sampling.
pub fn random_unit() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_salted() {
        // Fixed values: a change here reassigns every user of every experiment.
        assert_eq!(bucket("exp", "user-1"), bucket("exp", "user-1"));
        assert_ne!(bucket("exp", "user-1"), bucket("exp-2", "user-1"));
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
        let counts = (0..100_000).fold([0u32; 10], |mut c, i| {
            c[(bucket("exp", &format!("user-{i}")) / 1000) as usize] += 1;
            c
        });
        for c in counts {
            assert!((9_500..10_500).contains(&c), "uneven buckets: {counts:?}");
        }
    }

    #[test]
    fn bounds_follow_weights_and_skip_zero_arms() {
        assert_eq!(bounds(&[90.0, 10.0]).unwrap(), vec![9000, 10000]);
        assert_eq!(bounds(&[1.0, 0.0, 1.0]).unwrap(), vec![5000, 5000, 10000]);
        assert!(bounds(&[0.0, 0.0]).is_none());
        let b = bounds(&[90.0, 10.0]).unwrap();
        assert_eq!(
            (pick(&b, 0), pick(&b, 8999), pick(&b, 9000), pick(&b, 9999)),
            (0, 0, 1, 1)
        );
        let z = bounds(&[1.0, 0.0, 1.0]).unwrap();
        assert!(
            (0..BUCKETS).all(|b| pick(&z, b) != 1),
            "a zero-weight arm got traffic"
        );
    }

    #[test]
    fn changing_weights_moves_only_boundary_users() {
        let old = bounds(&[90.0, 10.0]).unwrap();
        let new = bounds(&[80.0, 20.0]).unwrap();
        for user in 0..20_000 {
            let b = bucket("exp", &format!("u{user}"));
            let (before, after) = (pick(&old, b), pick(&new, b));
            if before != after {
                assert!((8000..9000).contains(&b), "user in bucket {b} moved");
                assert_eq!((before, after), (0, 1));
            }
        }
    }

    #[test]
    fn random_numbers_are_in_range() {
        for _ in 0..10_000 {
            assert!(random_bucket() < BUCKETS);
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
