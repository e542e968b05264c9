//! Picking an instance of an upstream. Pure functions over the instances' weights, their
//! outstanding requests and whether each may take traffic (`ok`: in rotation and not already
//! tried by this request):
//!
//! - **weighted round robin** walks a precomputed schedule (smooth weighted round robin, as in
//!   nginx: a heavy instance's turns are spread out, not bunched), skipping instances out of
//!   rotation;
//! - **least outstanding** is the power of two choices: two random eligible instances, the one
//!   with fewer requests in flight per unit of weight wins;
//! - **consistent hash** is weighted rendezvous hashing on a key (a header or the subject): a key
//!   stays on its instance while that instance is eligible, and when it is not, only the keys
//!   that were on it move.

/// What the balancer knows about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub weight: u32,
    pub outstanding: usize,
    /// A hash of the instance's address: its identity for consistent hashing.
    pub seed: u64,
}

/// Longest round-robin schedule; larger weight sums are scaled down to it.
const MAX_SCHEDULE: u64 = 4096;

/// The order weighted round robin visits instances in, one entry per turn.
pub fn schedule(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let gcd = weights
        .iter()
        .fold(0u64, |g, w| gcd(g, u64::from((*w).max(1))));
    let mut w: Vec<u64> = weights
        .iter()
        .map(|w| u64::from((*w).max(1)) / gcd.max(1))
        .collect();
    let mut total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE / total).max(1);
        }
        total = w.iter().sum();
    }
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The first eligible instance in the schedule from `cursor` on.
pub fn round_robin(schedule: &[u32], cursor: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let len = schedule.len();
    (0..len)
        .map(|k| schedule[(cursor.wrapping_add(k)) % len] as usize)
        .find(|&i| ok(i))
}

/// Power of two choices on outstanding requests per unit of weight. `random(n)` returns a
/// number below `n`.
pub fn least_outstanding(
    candidates: &[Candidate],
    ok: impl Fn(usize) -> bool,
    mut random: impl FnMut(usize) -> usize,
) -> Option<usize> {
    let eligible = (0..candidates.len()).filter(|&i| ok(i)).count();
    let nth = |n: usize| (0..candidates.len()).filter(|&i| ok(i)).nth(n);
    match eligible {
        0 => None,
        1 => nth(0),
        m => {
            let a = random(m);
            let mut b = random(m - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth(a)?, nth(b)?);
            let (ca, cb) = (&candidates[a], &candidates[b]);
            // (outstanding + 1) / weight, compared without division.
            let load_a = (ca.outstanding as u128 + 1) * u128::from(cb.weight.max(1));
            let load_b = (cb.outstanding as u128 + 1) * u128::from(ca.weight.max(1));
            Some(if load_b < load_a { b } else { a })
        }
    }
}

/// Weighted rendezvous hashing: the eligible instance with the highest score for `key`.
pub fn rendezvous(candidates: &[Candidate], key: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in candidates.iter().enumerate() {
        if !ok(i) {
            continue;
        }
        let h = mix(key ^ c.seed);
        // A uniform number in (0, 1); -weight / ln(u) is the weighted rendezvous score.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(c.weight.max(1)) / u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// FNV-1a, then mixed: the hash of a consistent-hash key or an instance address.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// The splitmix64 finalizer: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Candidate {
                weight: *w,
                outstanding: 0,
                seed: hash_bytes(format!("127.0.0.1:{}", 9000 + i).as_bytes()),
            })
            .collect()
    }

    #[test]
    fn the_schedule_spreads_a_heavy_instance_out() {
        assert_eq!(schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            schedule(&[2, 2]),
            [0, 1],
            "weights are reduced by their gcd"
        );
        assert_eq!(schedule(&[1]), [0]);
        let huge = schedule(&[1_000_000, 1]);
        assert!(huge.len() as u64 <= MAX_SCHEDULE + 1);
        assert!(
            huge.contains(&1),
            "a light instance keeps a turn after scaling"
        );
    }

    #[test]
    fn round_robin_follows_weights_and_skips_instances_out_of_rotation() {
        let s = schedule(&[3, 1]);
        let mut counts = [0; 2];
        for cursor in 0..400 {
            counts[round_robin(&s, cursor, |_| true).expect("pick")] += 1;
        }
        assert_eq!(counts, [300, 100]);
        let picks: Vec<usize> = (0..8)
            .map(|c| round_robin(&s, c, |i| i != 0).expect("pick"))
            .collect();
        assert!(picks.iter().all(|&i| i == 1));
        assert_eq!(round_robin(&s, 0, |_| false), None);
    }

    #[test]
    fn least_outstanding_prefers_the_idle_instance() {
        let mut c = candidates(&[1, 1, 1]);
        c[0].outstanding = 10;
        c[2].outstanding = 10;
        let mut seq = 0usize;
        let mut counts = [0; 3];
        for _ in 0..300 {
            let pick = least_outstanding(
                &c,
                |_| true,
                |n| {
                    seq = seq
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seq >> 33) % n
                },
            )
            .expect("pick");
            counts[pick] += 1;
        }
        // Instance 1 wins whenever it is one of the two drawn: about two thirds of the time.
        assert!(counts[1] > 150, "{counts:?}");
        // Weight counts: 10 in flight on weight 20 is lighter than 1 in flight on weight 1.
        let mut c = candidates(&[20, 1]);
        c[0].outstanding = 10;
        c[1].outstanding = 1;
        assert_eq!(least_outstanding(&c, |_| true, |_| 0), Some(0));
        assert_eq!(least_outstanding(&c, |i| i == 1, |_| 0), Some(1));
        assert_eq!(least_outstanding(&c, |_| false, |_| 0), None);
    }

    #[test]
    fn consistent_hash_keeps_keys_in_place_and_moves_only_the_lost_instances_keys() {
        let c = candidates(&[1, 1, 1, 1]);
        let keys: Vec<u64> = (0..2000)
            .map(|k| hash_bytes(format!("user-{k}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| rendezvous(&c, *k, |_| true).expect("pick"))
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|k| rendezvous(&c, *k, |_| true).expect("pick"))
            .collect();
        assert_eq!(before, again, "the same key, the same instance");
        let mut share = [0; 4];
        before.iter().for_each(|&i| share[i] += 1);
        assert!(share.iter().all(|&n| (350..650).contains(&n)), "{share:?}");
        let after: Vec<usize> = keys
            .iter()
            .map(|k| rendezvous(&c, *k, |i| i != 2).expect("pick"))
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(a, b, "only the keys on the lost instance move");
            } else {
                assert_ne!(*a, 2);
            }
        }
    }

    #[test]
    fn consistent_hash_respects_weights() {
        let c = candidates(&[3, 1]);
        let mut share = [0; 2];
        for k in 0..4000 {
            share[rendezvous(&c, hash_bytes(format!("k{k}").as_bytes()), |_| true)
                .expect("pick")] += 1;
        }
        assert!((2700..3300).contains(&share[0]), "{share:?}");
    }
}
